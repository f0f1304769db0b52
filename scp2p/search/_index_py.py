"""Pure-Python twin of the search kernels (the reference; ``_native/search.pyx`` is the fast one).

Kernels over :class:`scp2p.search._base.State`: ``tokenize``, ``add_share``, ``run`` and
``ExactNames``. The algorithm of ``run`` (share-blocks visited in bound order, early stop) is
documented in :mod:`scp2p.search.ranking`; the native twin follows it step by step.
"""

from __future__ import annotations

import bisect
from array import array

from . import ranking
from ._base import IndexBase, State, _prepare_items
from .text import tokenize

__all__ = ["Index", "tokenize", "prepare", "make_hits", "add_share", "merge", "run", "ExactNames", "max_of", "is_monotonic",
           "check_blocks", "derive_ts_pfx"]


def make_hits(st: State, found, q, highlight, Hit) -> tuple:
    """Hit records for (score, doc) pairs."""
    out = []
    for score, doc in found:
        name = st.names[st.name_off[doc]:st.name_off[doc + 1]].decode()
        out.append(Hit(st.slot_ids[st.doc_share[doc]], bytes(st.cids[32 * doc:32 * doc + 32]), name,
                       st.doc_size[doc], st.mimes[st.doc_mime[doc]] or None, st.tags_of(st.doc_tagset[doc]),
                       score / ranking.WEIGHT_SCALE, q, highlight))
    return tuple(out)


def max_of(a) -> int:
    """The largest value of an array, -1 if it is empty."""
    return max(a, default=-1)


def derive_ts_pfx(st: State) -> tuple[array, array]:
    """(ts_pfx, ts_poff) from the tagsets' tokens: per tagset, the strict-prefix ids of its tag
    tokens in token order, each once (what State.tagset_id stores; the native twin keeps only
    this derivation, and a loaded image must agree with it)."""
    npl = len(ranking.PREFIX_LIST_LENGTHS)
    toks, toff, tp = st.ts_toks, st.ts_toff, st.term_pfx
    pfx, poff = array("I"), array("Q", [0])
    for ts in range(len(toff) - 1):
        seen: list[int] = []
        for t in toks[toff[ts]:toff[ts + 1]]:
            if t:
                for j in range(npl):
                    p = tp[npl * t + j]
                    if p and p - 1 not in seen:
                        seen.append(p - 1)
        pfx.extend(seen)
        poff.append(len(pfx))
    return pfx, poff


def is_monotonic(a) -> bool:
    return all(a[i] <= a[i + 1] for i in range(len(a) - 1))


def check_blocks(poff, blk, boff, nslots: int) -> bool:
    """Each list's block table: even length, starts strictly increasing from 0 inside the list, slots in range."""
    for t in range(len(poff) - 1):
        b0, b1, size = boff[t], boff[t + 1], poff[t + 1] - poff[t]
        if (b1 - b0) % 2 or (size and b1 == b0):
            return False
        prev = -1
        for r in range(b0, b1, 2):
            start = blk[r + 1]
            if (blk[r] >> 2) >= nslots or start <= prev or start >= size or (prev < 0 and start != 0):
                return False
            prev = start
    return True


def prepare(items) -> list:
    """Rows (ntok, name, content id, tokens, size, mime, tags) in rank order, duplicate content ids dropped."""
    return _prepare_items(items, tokenize)

_NAME, _PFX, _TAG = ranking.NAME, ranking.NAME_PREFIX, ranking.TAG
_FN, _FT = ranking.FLAG_NAME, ranking.FLAG_TAG
_PLENS = ranking.PREFIX_LIST_LENGTHS


class ExactNames:
    """Exact-name lookup: the name's term-id sequence -> doc ids (dead ones filtered by callers)."""

    def __init__(self) -> None:
        self._map: dict[tuple, list[int]] = {}

    def add_range(self, st: State, lo: int, hi: int) -> None:
        fwd, off = st.fwd, st.fwd_off
        for d in range(lo, hi):
            self._map.setdefault(tuple(fwd[off[d]:off[d + 1]]), []).append(d)

    def lookup(self, st: State, ids) -> list[int]:
        return self._map.get(tuple(ids), [])


def _append(L, t: int, d: int, flags: int, slot: int, lo: int) -> None:
    """Append doc d to list t's delta (a new block run unless it continues this share's run)."""
    if t >= len(L.dpost):
        grow = max(t + 1 - len(L.dpost), len(L.dpost) // 2)
        L.dpost.extend([None] * grow)
        L.dblk.extend([None] * grow)
    post = L.dpost[t]
    if post is None:
        post = L.dpost[t] = array("I")
        blk = L.dblk[t] = array("I")
    else:
        blk = L.dblk[t]
    nb = len(blk)
    if nb and (blk[nb - 2] >> 2) == slot and post[blk[nb - 1]] >= lo:
        blk[nb - 2] |= flags
    else:
        blk.append(slot << 2 | flags)
        blk.append(len(post))
    post.append(d)
    L.ndelta += 1


def add_share(st: State, slot: int, rows: list) -> None:
    """Append one share's items (``rows`` from ``_prepare_items``, in rank order) as docs."""
    lo = st.ndocs
    npl = len(_PLENS)
    terms, prefixes = st.lists
    for ntok, name, cid, toks, size, mime, tags in rows:
        d = st.ndocs
        ts = st.tagset_id(tags, tokenize)
        st.doc_share.append(slot)
        st.doc_size.append(size)
        st.doc_mime.append(st.mime_id(mime))
        st.doc_tagset.append(ts)
        ids = [st.term_id(t) for t in toks]
        dot = name.rfind(".")
        ext = 0
        if 0 < dot < len(name) - 1:
            et = tokenize(name[dot + 1:])
            if len(et) == 1:
                ext = st.term_id(et[0])
        st.doc_ext.append(ext)
        st.fwd.extend(ids)
        st.fwd_off.append(len(st.fwd))
        st.names += name.encode()
        st.name_off.append(len(st.names))
        st.cids += cid
        flags: dict[int, int] = {}
        for t in ids:
            flags[t] = _FN
        for t in st.tag_tokens(ts):
            if t:
                flags[t] = flags.get(t, 0) | _FT
        for t, f in flags.items():
            _append(terms, t, d, f, slot, lo)
        pf: dict[int, int] = {p: _FT for p in st.ts_pfx[st.ts_poff[ts]:st.ts_poff[ts + 1]]}
        for t in ids:
            for j in range(npl):
                p = st.term_pfx[npl * t + j]
                if p:
                    pf[p - 1] = pf.get(p - 1, 0) | _FN
        for p, f in pf.items():
            _append(prefixes, p, d, f, slot, lo)
    st.exact.add_range(st, lo, st.ndocs)


def flush(st: State, wait: bool = True) -> None:
    """Nothing pending: the pure twin does all of a share update inside ``replace_share``."""


def merge(st: State, L) -> None:
    """Fold L's deltas into its CSR arrays, dropping block runs of dead shares."""
    lo_, hi_ = st.slot_lo, st.slot_hi
    post, poff, blk, boff = array("I"), array("Q", [0]), array("I"), array("Q", [0])
    last = max((t for t, a in enumerate(L.dpost) if a is not None), default=-1)
    nlists = max(len(L.poff) - 1, last + 1)
    for t in range(nlists):
        segs = []
        if t + 1 < len(L.poff):
            segs.append((L.post, L.poff[t], L.poff[t + 1], L.blk, L.boff[t], L.boff[t + 1]))
        if t <= last and L.dpost[t] is not None:
            segs.append((L.dpost[t], 0, len(L.dpost[t]), L.dblk[t], 0, len(L.dblk[t])))
        base = len(post)
        for P, p0, p1, B, b0, b1 in segs:
            nb = (b1 - b0) // 2
            for r in range(nb):
                key, start = B[b0 + 2 * r], p0 + B[b0 + 2 * r + 1]
                end = p0 + B[b0 + 2 * r + 3] if r + 1 < nb else p1
                s = key >> 2
                if lo_[s] <= P[start] < hi_[s]:
                    blk.append(key)
                    blk.append(len(post) - base)
                    post.extend(P[start:end])
        poff.append(len(post))
        boff.append(len(blk))
    L.post, L.poff, L.blk, L.boff = post, poff, blk, boff
    L.dpost, L.dblk, L.ndelta = [], [], 0


# ---------------------------------------------------------------------- query kernel
def _tmatch(st: State, term, tok: int) -> int:
    """Points for one name token (0 if it does not match)."""
    if tok == term[0]:
        return _NAME
    if term[1] is not None and st.term_str(tok).startswith(term[1]):
        return _PFX
    return 0


def _seq_at(st, terms, a, b, seq, i) -> bool:
    for j in range(b - a):
        if not _tmatch(st, terms[a + j], seq[i + j]):
            return False
    return True


def _has_seq(seq, ids) -> bool:
    n = len(ids)
    ids = list(ids)
    for i in range(len(seq) - n + 1):
        if list(seq[i:i + n]) == ids:
            return True
    return False


def _score(st: State, plan, d: int, slot: int, skip_exact: bool = False) -> int:
    """raw(d) * wq, or -1 if d does not match (see scp2p.search.ranking) or is an exact-name
    item and ``skip_exact`` (run scores those first)."""
    name = st.fwd[st.fwd_off[d]:st.fwd_off[d + 1]]
    if skip_exact and plan.exact_ids is not None and name == plan.exact_ids:
        return -1
    tags = st.tag_tokens(st.doc_tagset[d])
    raw = 0
    for term in plan.terms:
        c = term[4][slot]
        for tok in name:
            m = _tmatch(st, term, tok)
            if m > c:
                c = m
                if c == _NAME:
                    break
        if c < _TAG:
            for tok in tags:
                if tok and _tmatch(st, term, tok):
                    c = _TAG
                    break
        if not c:
            return -1
        raw += c
    if plan.exts is not None and st.doc_ext[d] not in plan.exts:
        return -1
    size = st.doc_size[d]
    if size < plan.size_min or size > plan.size_max:
        return -1
    for a, b, smask in plan.phrases:
        if smask[slot]:
            continue
        ok = any(_seq_at(st, plan.terms, a, b, name, i) for i in range(len(name) - (b - a) + 1))
        if not ok:
            ok = any(_seq_at(st, plan.terms, a, b, seg, i)
                     for seg in _segments(tags) for i in range(len(seg) - (b - a) + 1))
        if not ok:
            return -1
    for ids, smask in plan.excludes:
        if smask[slot]:
            return -1
        if ids is not None and (_has_seq(name, ids) or any(_has_seq(seg, ids) for seg in _segments(tags))):
            return -1
    for ids in plan.tags:
        if not any(_has_seq(seg, ids) for seg in _segments(tags)):
            return -1
    if plan.exact_ids is not None and len(name) == len(plan.exact_ids) and name == plan.exact_ids:
        raw += ranking.EXACT_NAME
    return raw * st.slot_wq[slot]


def _segments(tags):
    seg = []
    for t in tags:
        if t:
            seg.append(t)
        else:
            yield seg
            seg = []
    if seg:
        yield seg


def run(st: State, plan, exhaustive: bool = False):
    """[(score, doc)] best first (at most plan.k), total, total_is_estimate."""
    nslots = len(st.slot_ids)
    nt = len(plan.terms)
    lo_, hi_ = st.slot_lo, st.slot_hi
    maxc = [bytearray(nslots) for _ in range(nt)]
    cnt = [[0] * nslots for _ in range(nt)]
    for ti, term in enumerate(plan.terms):
        mc, ct = maxc[ti], cnt[ti]
        for post, p0, p1, blk, b0, b1, strict in term[3]:
            nb = (b1 - b0) // 2
            for r in range(nb):
                key, start = blk[b0 + 2 * r], p0 + blk[b0 + 2 * r + 1]
                s = key >> 2
                if not plan.mask[s] or not lo_[s] <= post[start] < hi_[s]:
                    continue
                end = p0 + blk[b0 + 2 * r + 3] if r + 1 < nb else p1
                c = (_PFX if strict else _NAME) if key & _FN else _TAG
                if c > mc[s]:
                    mc[s] = c
                ct[s] += end - start
        sd = term[4]
        for s in range(nslots):
            if sd[s] > mc[s]:
                mc[s] = sd[s]
    order = []
    for s in range(nslots):
        if not plan.mask[s] or lo_[s] == hi_[s]:
            continue
        b = 0
        for ti in range(nt):
            if not maxc[ti][s]:
                break
            b += maxc[ti][s]
        else:
            order.append((-(b * st.slot_wq[s]), st.slot_rank[s], s))
    order.sort()
    top: list[tuple] = []  # (-score, rank, doc)
    k = plan.k
    matched = 0
    skipped = False

    def consider(d, s, rank, skip_exact=True):
        nonlocal matched
        sc = _score(st, plan, d, s, skip_exact)
        if sc < 0:
            return
        if plan.blocked is not None and bytes(st.cids[32 * d:32 * d + 32]) in plan.blocked:
            return
        matched += 1
        key = (-sc, rank, d)
        if k and (len(top) < k or key < top[-1]):
            bisect.insort(top, key)
            if len(top) > k:
                top.pop()

    # the items named exactly as the query first (their EXACT_NAME bonus is not in the share
    # bounds); the share loop then skips them (_score with skip_exact)
    if plan.exact_ids is not None:
        # newest first, as the native twin walks its exact-name chains: which of them are
        # skipped (and so whether the total is an estimate) depends on the order
        for d in reversed(st.exact.lookup(st, plan.exact_ids)):
            s = st.doc_share[d]
            if plan.mask[s] and lo_[s] <= d < hi_[s]:
                eb = (nt * _NAME + ranking.EXACT_NAME) * st.slot_wq[s]  # an exact-name item's best score
                if not exhaustive and k and len(top) >= k and not (-eb, st.slot_rank[s], d) < top[k - 1]:
                    matched += 1  # cannot enter the top k even unfiltered: counted, as an estimate
                    skipped = True
                else:
                    consider(d, s, st.slot_rank[s], False)

    for oi, (nb_, rank, s) in enumerate(order):
        bound = -nb_
        if not exhaustive and k and len(top) >= k:
            kth = top[k - 1]
            if -kth[0] > bound or (-kth[0] == bound and kth[1] < rank):
                rest = sum(_driver(plan, cnt, nt, s2, lo_, hi_)[0] for _, _, s2 in order[oi:])
                return [(-t[0], t[2]) for t in top], matched + rest, True
        lo, hi = lo_[s], hi_[s]
        _, bt = _driver(plan, cnt, nt, s, lo_, hi_)
        pt = -1 if bt >= 0 or exhaustive or not k else _priority(plan, cnt, nt, s)
        if pt < 0:
            cands = _candidates(st, plan, cnt, nt, s, bt)
            for i, d in enumerate(cands):
                if not exhaustive and k and len(top) >= k and not (-bound, rank, d) < top[k - 1]:
                    # no later candidate here (nor in a later share: bounds only fall, ranks only
                    # grow) can enter the top k: count the rest as an estimate
                    rest = len(cands) - i + sum(_driver(plan, cnt, nt, s2, lo_, hi_)[0] for _, _, s2 in order[oi + 1:])
                    return [(-t[0], t[2]) for t in top], matched + rest, True
                consider(d, s, rank)
            continue
        # every term matches this share's title/description: items in the postings of the priority
        # term first; the others get only its title/description points, so they are skipped when
        # the k-th best already beats that bound
        first = _union(plan.terms[pt][3], lo, hi)
        for d in first:
            consider(d, s, rank)
        b2 = (sum(maxc[ti][s] for ti in range(nt)) - maxc[pt][s] + plan.terms[pt][4][s]) * st.slot_wq[s]
        if len(top) >= k and -top[k - 1][0] > b2:
            matched += (hi - lo) - len(first)
            skipped = True
            continue
        firstset = set(first)
        for d in range(lo, hi):
            if d not in firstset:
                consider(d, s, rank)
    return [(-t[0], t[2]) for t in top], matched, skipped


def _priority(plan, cnt, nt, s) -> int:
    """The term (matching the share's title/description) with the fewest postings there, or -1."""
    best, pt = 0, -1
    for ti in range(nt):
        c = cnt[ti][s]
        if plan.terms[ti][4][s] and c and (pt < 0 or c < best):
            best, pt = c, ti
    return pt


def _union(lists, lo, hi) -> list[int]:
    out = []
    for post, p0, p1, _blk, _b0, _b1, _strict in lists:
        i = bisect.bisect_left(post, lo, p0, p1)
        j = bisect.bisect_left(post, hi, i, p1)
        out.extend(post[i:j])
    return sorted(set(out)) if len(lists) > 1 else out


def _driver(plan, cnt, nt, s, lo_, hi_):
    """(count, term index) of the most selective term's postings in share s (-1: scan the share).

    A term that matches the share's title or description matches every item there, so it
    never drives."""
    best, bt = hi_[s] - lo_[s], -1
    for ti in range(nt):
        if plan.terms[ti][4][s]:
            continue
        c = cnt[ti][s]
        if 0 < c < best or (c and bt < 0 and c <= best):
            best, bt = c, ti
    return best, bt


def _candidates(st, plan, cnt, nt, s, bt):
    lo, hi = st.slot_lo[s], st.slot_hi[s]
    if bt < 0:
        return range(lo, hi)
    return _union(plan.terms[bt][3], lo, hi)


class Index(IndexBase):
    """The search index (pure-Python twin)."""

    _k = __import__(__name__, fromlist=["run"])
