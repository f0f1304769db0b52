"""What both index twins share: the state layout, the public API, query planning,
persistence and snippets. A twin module supplies only the hot kernels (``tokenize``,
``prepare``, ``add_share``, ``merge``, ``run``, ``ExactNames``) over this same layout, so a
persisted image is read by either twin.

State layout (item data lives in flat typed arrays; no per-item Python objects):

* docs (append-only ids; a share's items are one contiguous id run, in the share's rank order):
  ``doc_share``, ``doc_size``, ``doc_mime``, ``doc_ext``, ``doc_tagset`` (arrays), ``names``
  (UTF-8, ``name_off``), ``cids`` (32 bytes each), ``fwd``/``fwd_off`` (the name's term ids);
* terms: ``term_ids`` (str -> id, id 0 reserved), ``terms``, ``term_blob``/``term_off`` (UTF-8),
  ``term_pfx`` (the ids of each term's strict prefixes of the listed lengths);
* ``lists[0]`` (per term) and ``lists[1]`` (per strict prefix, lengths in
  ``ranking.PREFIX_LIST_LENGTHS``): :class:`Postings` -- sorted doc ids and block tables
  ``(slot << 2 | flags, start)``, one pair per share run, as CSR arrays plus deltas;
* tagsets: interned tag tuples with their tokens and prefix ids, flat with offsets;
* shares (slots): ``slot_lo``/``slot_hi`` (the live doc run), ``slot_wq``, ``slot_trust``,
  ``slot_alive``, ``slot_rank`` (rank of the share id, for the tie-break).

Replacing a share appends its new run and moves the slot's range (the old run is dead at once:
readers check the range); merges drop dead runs from the postings, and
:meth:`IndexBase.compact` reclaims dead doc storage once dead items outnumber live ones
(amortised; never on a single small update).
"""

from __future__ import annotations

import bisect
import json
import struct
import sys
from array import array
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import IndexImageError, SearchError, SearchIndexIOError
from . import ranking
from .query import Query, parse_query
from .text import token_spans, tokenize as _pure_tokenize

TRUST_CODES = {"trusted": 0, "normal": 1, "untrusted": 2}
TRUST_NAMES = {v: k for k, v in TRUST_CODES.items()}
DEFAULT_TRUST = ("trusted", "normal")
MAX_RESULTS = 10_000  #: offset + limit cap
BLOB_NAME = "search/index"
_MAGIC = b"SCP2PIX1"
_COMPACT_MIN_DEAD = 50_000
_QUERY_CACHE = 512  #: parsed queries kept (the cache is emptied when full)
#: deltas are merged into the CSR postings when larger than this or 1/MERGE_FRACTION of them
MERGE_MIN = 1 << 18
MERGE_FRACTION = 8
#: tag tokens indexed per item (all tags together)
MAX_TAG_TOKENS = 64


class _NoBlocks:
    """What ``Blocklist.of(None)`` gives, without importing scp2p.catalog (which pulls in the
    manifest codec, identity and wire modules: ~10 MB of a process that only searches)."""

    __slots__ = ()
    share_ids = content_ids = frozenset()


_NO_BLOCKS = _NoBlocks()


def _blocklist_of(ids):
    if ids is None:
        return _NO_BLOCKS
    from ..catalog.blocklist import Blocklist

    return Blocklist.of(ids)


def __getattr__(name):  # ``from scp2p.search._base import Blocklist`` (imported on first use)
    if name == "Blocklist":
        from ..catalog.blocklist import Blocklist

        return Blocklist
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _trust_code(t) -> int:
    v = getattr(t, "value", t)
    try:
        return TRUST_CODES[str(v).lower()]
    except KeyError:
        raise ValueError(f"unknown trust level {t!r}") from None


@dataclass(frozen=True, slots=True)
class Hit:
    share_id: bytes
    content_id: bytes
    name: str
    size: int
    mime: str | None
    tags: tuple[str, ...]
    score: float
    _query: object = field(default=None, repr=False, compare=False)
    _highlight: tuple = field(default=("[", "]"), repr=False, compare=False)

    @property
    def snippet(self) -> str:
        """The name with the matched tokens highlighted (computed on first use, not per search)."""
        return snippet(self.name, self.tags, self._query, self._highlight) if self._query else self.name


@dataclass(frozen=True, slots=True)
class SearchPage:
    total: int
    total_is_estimate: bool
    hits: tuple[Hit, ...] = ()


@dataclass(slots=True)
class Plan:
    """A compiled query, in the form the kernels take."""

    terms: list = field(default_factory=list)  #: per term: (exact_id, prefix_str|None, prefix_bytes|None, lists, sd)
    phrases: list = field(default_factory=list)  #: (a, b, share_mask)
    excludes: list = field(default_factory=list)  #: (ids tuple | None, share_mask)
    tags: list = field(default_factory=list)  #: ids tuples
    exts: object = None  #: array('I') of ext term ids, or None
    size_min: int = 0
    size_max: int = (1 << 64) - 1
    mask: bytearray = field(default_factory=bytearray)
    exact_ids: object = None  #: array('I') or None
    k: int = 20
    blocked: object = None  #: frozenset of content ids, or None


class State:
    """The index data (see the module docstring). ``doc_dir`` is for a twin that keeps cold
    per-document data on disk (the native twin's document store); this layout keeps it all in
    memory and ignores it."""

    def __init__(self, doc_dir=None) -> None:
        self.term_ids: dict[str, int] = {"": 0}
        self.terms: list[str] = [""]
        self.term_blob = bytearray()
        self.term_off = array("Q", [0, 0])
        #: per term: (id + 1 of its strict prefix of each length in PREFIX_LIST_LENGTHS, or 0)
        self.term_pfx = array("I", [0] * len(ranking.PREFIX_LIST_LENGTHS))
        self.pfx_ids: dict[str, int] = {}
        self.pfx_list: list[str] = []
        # postings: [term postings, prefix postings], each a merged CSR part + a delta part
        self.lists = [Postings(), Postings()]
        self.sorted_terms: list[str] = []
        self.pending_terms: list[str] = []
        self.doc_share = array("I")
        self.doc_size = array("Q")
        self.doc_mime = array("I")
        self.doc_ext = array("I")
        self.doc_tagset = array("I")
        self.fwd = array("I")
        self.fwd_off = array("I", [0])
        self.names = bytearray()
        self.name_off = array("Q", [0])
        self.cids = bytearray()
        self.mimes: list[str] = [""]
        self.mime_ids: dict[str, int] = {"": 0}
        #: tagsets: key string per tagset (see _tags_key), their tag tokens (0 between tags) and
        #: strict-prefix ids, flat with offsets
        self.tagset_keys: list[str] = [""]
        self.tagset_ids: dict[str, int] = {"": 0}
        self.ts_toks = array("I")
        self.ts_toff = array("Q", [0, 0])
        self.ts_pfx = array("I")
        self.ts_poff = array("Q", [0, 0])
        #: tagset id -> tags tuple, filled as hits need them (tagsets are never renumbered in place)
        self.tag_tuples: dict[int, tuple[str, ...]] = {}
        self.slot_ids: list[bytes] = []
        self.slot_of: dict[bytes, int] = {}
        self.slot_lo = array("I")
        self.slot_hi = array("I")
        self.slot_wq = array("I")
        self.slot_trust = array("B")
        self.slot_alive = array("B")
        self.slot_rank = array("I")
        self.slot_title: list[str] = []
        self.slot_desc: list[str] = []
        self.title_index: dict[str, set[int]] = {}
        self.desc_index: dict[str, set[int]] = {}
        self.ndead = 0
        self.kills = 0  #: shares replaced or removed so far (a twin's merge may skip liveness checks)
        self.exact = None  # the twin's ExactNames
        #: the twin's untrack(list): takes a list that can only hold atomic objects (str, int,
        #: array, None) out of the cyclic GC, so collections do not walk millions of entries
        self.untrack = _keep

    def untrack_lists(self) -> None:
        """Untrack the big lists of strings / arrays (they can never be part of a cycle)."""
        for lst in (self.terms, self.pending_terms, self.sorted_terms, self.pfx_list, self.tagset_keys,
                    self.mimes, *(x for L in self.lists for x in (L.dpost, L.dblk))):
            self.untrack(lst)

    @property
    def ndocs(self) -> int:
        return len(self.doc_share)

    # helpers used by both kernels (not per item hot paths)
    def new_term(self, tok: str) -> int:
        tid = len(self.terms)
        self.term_ids[tok] = tid
        self.terms.append(tok)
        self.term_blob += tok.encode()
        self.term_off.append(len(self.term_blob))
        for n in ranking.PREFIX_LIST_LENGTHS:
            self.term_pfx.append(self.pfx_id(tok[:n]) + 1 if len(tok) > n else 0)
        self.pending_terms.append(tok)
        return tid

    def pfx_id(self, p: str) -> int:
        pid = self.pfx_ids.get(p)
        if pid is None:
            pid = self.pfx_ids[p] = len(self.pfx_list)
            self.pfx_list.append(p)
        return pid

    def term_id(self, tok: str) -> int:
        tid = self.term_ids.get(tok)
        return self.new_term(tok) if tid is None else tid

    def mime_id(self, mime) -> int:
        m = mime or ""
        i = self.mime_ids.get(m)
        if i is None:
            i = self.mime_ids[m] = len(self.mimes)
            self.mimes.append(m)
        return i

    def tagset_id(self, tags: tuple, tokenize) -> int:
        key = _tags_key(tags)
        i = self.tagset_ids.get(key)
        if i is None:
            i = self.tagset_ids[key] = len(self.tagset_keys)
            self.tagset_keys.append(key)
            toks = self.ts_toks
            start = len(toks)
            pf: list[int] = []
            ntok = 0
            for tag in tags:
                tt = tokenize(tag)[:MAX_TAG_TOKENS - ntok]
                if not tt:
                    continue
                ntok += len(tt)
                if len(toks) > start:
                    toks.append(0)
                for t in tt:
                    tid = self.term_id(t)
                    toks.append(tid)
                    for j in range(len(ranking.PREFIX_LIST_LENGTHS)):
                        p = self.term_pfx[len(ranking.PREFIX_LIST_LENGTHS) * tid + j]
                        if p and p - 1 not in pf:
                            pf.append(p - 1)
            self.ts_toff.append(len(toks))
            self.ts_pfx.extend(pf)
            self.ts_poff.append(len(self.ts_pfx))
        return i

    # cold per-document data (content id, name, mime): in memory here; a twin may keep it elsewhere
    def doc_items(self, lo: int, hi: int) -> list[tuple[bytes, str, str | None, int]]:
        """(content id, name, mime, size) of docs lo..hi-1."""
        c, nb, no, mimes, dm = self.cids, self.names, self.name_off, self.mimes, self.doc_mime
        return [(bytes(c[32 * d:32 * d + 32]), nb[no[d]:no[d + 1]].decode(), mimes[dm[d]] or None, self.doc_size[d])
                for d in range(lo, hi)]

    def section(self, name: str):
        """An image section's data: an array, a bytes-like object or a :class:`LazySection`."""
        return getattr(self, name)

    def adopt_docs(self) -> None:
        """Called once a loaded image is validated (a twin may move its cold document data out)."""

    def tags_of(self, ts: int) -> tuple[str, ...]:
        t = self.tag_tuples.get(ts)
        if t is None:
            t = self.tag_tuples[ts] = _tags_from_key(self.tagset_keys[ts])
        return t

    def tag_tokens(self, ts: int) -> array:
        return self.ts_toks[self.ts_toff[ts]:self.ts_toff[ts + 1]]

    def sorted_dictionary(self) -> list[str]:
        if self.pending_terms:
            self.sorted_terms = self.untrack(sorted(self.sorted_terms + self.pending_terms))
            self.pending_terms = self.untrack([])
        return self.sorted_terms

    # the dictionary interface the planner, persistence and kernels use (the native twin keeps
    # the dictionaries in C behind the same methods)
    @property
    def nterms(self) -> int:
        return len(self.terms)

    @property
    def npfx(self) -> int:
        return len(self.pfx_list)

    @property
    def ntagsets(self) -> int:
        return len(self.tagset_keys)

    def term_lookup(self, tok: str) -> int:
        """The term's id, -1 if unknown."""
        return self.term_ids.get(tok, -1)

    def pfx_lookup(self, p: str):
        """The strict-prefix list id of ``p``, None if no term has it."""
        return self.pfx_ids.get(p)

    def prefix_terms(self, tok: str) -> list[int]:
        """Ids of the terms longer than ``tok`` that start with it, in term order."""
        d = self.sorted_dictionary()
        i = bisect.bisect_left(d, tok)
        out = []
        while i < len(d) and d[i].startswith(tok):
            if d[i] != tok:
                out.append(self.term_ids[d[i]])
            i += 1
        return out

    def term_str(self, t: int) -> str:
        return self.terms[t]

    def text_section(self, name: str) -> tuple:
        """(UTF-8 blob, offsets) of a text table of the image (pfx_list, tagset_keys, mimes)."""
        return _text_blob(getattr(self, name))

    def load_dicts(self, raw: dict) -> None:
        """Rebuild the dictionaries from an image's sections (term_blob/term_off already set)."""
        tb, to = self.term_blob, self.term_off
        if len(to) < 2 or to[1] != 0:
            raise IndexImageError("bad dictionary entry 0")
        self.terms = [""] + [tb[to[i]:to[i + 1]].decode() for i in range(1, len(to) - 1)]
        self.term_ids = {t: i for i, t in enumerate(self.terms)}
        self.sorted_terms, self.pending_terms = [], self.terms[1:]
        self.pfx_list = _texts(raw, "pfx_list")
        self.pfx_ids = {p: i for i, p in enumerate(self.pfx_list)}
        self.mimes = _texts(raw, "mimes")
        self.mime_ids = {m: i for i, m in enumerate(self.mimes)}
        self.tagset_keys = _texts(raw, "tagset_keys")
        self.tagset_ids = {t: i for i, t in enumerate(self.tagset_keys)}
        if (len(self.term_ids) != len(self.terms) or len(self.pfx_ids) != len(self.pfx_list)
                or len(self.tagset_ids) != len(self.tagset_keys) or not self.tagset_keys or self.tagset_keys[0]
                or "" in self.pfx_ids):
            raise IndexImageError("duplicate entries in a search index dictionary")

    def segments(self, which: int, t: int, strict: int = 0):
        """The posting segments of term (which=0) or prefix (which=1) ``t``:
        (post, p0, p1, blk, b0, b1, strict) with block starts relative to p0."""
        return self.lists[which].segments(t, strict)


class Postings:
    """Sorted doc-id lists with block tables: a merged CSR part and a per-list delta part.

    ``post[poff[t]:poff[t+1]]`` are list t's merged postings; ``blk[boff[t]:boff[t+1]]`` its
    block table, pairs ``(slot << 2 | flags, start relative to poff[t])``. New postings go to
    ``dpost[t]`` / ``dblk[t]`` (their doc ids are all larger, so main + delta stays sorted);
    ``merge`` folds the deltas in (and drops dead share runs) once they grow past a fraction
    of the merged part, so an update costs its own size plus an amortised share of a merge.
    """

    def __init__(self) -> None:
        self.post = array("I")
        self.poff = array("Q", [0])
        self.blk = array("I")
        self.boff = array("Q", [0])
        self.dpost: list = []  #: list id -> array or None
        self.dblk: list = []
        self.ndelta = 0

    def section(self, name: str):
        """The merged part's array ``name`` (post, poff, blk, boff) for the image (a twin may keep
        some of them elsewhere and give a LazySection)."""
        return getattr(self, name)

    def segments(self, t: int, strict: int = 0) -> list:
        """List t's segments (post, p0, p1, blk, b0, b1, strict): the merged part, then the delta."""
        out = []
        if t + 1 < len(self.poff) and self.poff[t] < self.poff[t + 1]:
            out.append((self.post, self.poff[t], self.poff[t + 1], self.blk, self.boff[t], self.boff[t + 1], strict))
        d = self.dpost[t] if t < len(self.dpost) else None
        if d is not None:
            b = self.dblk[t]
            out.append((d, 0, len(d), b, 0, len(b), strict))
        return out


def _keep(lst: list) -> list:
    return lst


class LazySection:
    """An image section produced in chunks (arrays or bytes) when the image is written."""

    __slots__ = ("typecode", "nbytes", "chunks")

    def __init__(self, typecode: str, nbytes: int, chunks) -> None:
        self.typecode, self.nbytes, self.chunks = typecode, nbytes, chunks


def _tags_key(tags: tuple) -> str:
    """A string that identifies a tag tuple (NUL-joined; JSON when that would be ambiguous)."""
    if not tags:
        return ""
    for t in tags:
        if not t or "\x00" in t or t[0] == "\x01":
            return "\x01" + json.dumps(list(tags), ensure_ascii=False)
    return "\x00".join(tags) if len(tags) > 1 else tags[0] + "\x00"


def _tags_from_key(key: str) -> tuple[str, ...]:
    if not key:
        return ()
    if key[0] == "\x01":
        return tuple(json.loads(key[1:]))
    if key[-1] == "\x00":
        return (key[:-1],)
    return tuple(key.split("\x00"))


def _prepare_items(items, tokenize) -> list[tuple]:
    """Items as (ntok-sort key...) tuples in the share's rank order, duplicates (by content id) dropped."""
    seen: set[bytes] = set()
    rows = []
    for it in items:
        cid = bytes(it.content_id)
        if len(cid) != 32:
            raise SearchError("content ids must be 32 bytes")
        if cid in seen:
            continue
        seen.add(cid)
        name = it.name
        toks = tokenize(name)
        rows.append((len(toks), name, cid, toks, int(it.size), it.mime, tuple(it.tags)))
    rows.sort()  # (ntok, name, content id): content ids are unique, so the rest is never compared
    return rows


class IndexBase:
    """The search index. Subclasses (the twins) set ``_k`` to their kernel module."""

    _k = None  # kernel module: tokenize, add_share(state, slot, rows), run(state, plan), ExactNames

    def __init__(self, *, doc_dir=None) -> None:
        """``doc_dir``: the directory of the native twin's on-disk document store (an unlinked
        temporary file holding content ids, names and mimes); None = the system temp directory.
        The pure twin keeps everything in memory and ignores it."""
        self._doc_dir = doc_dir
        self._st = getattr(self._k, "State", State)(doc_dir)  # a twin may keep its own in-memory layout
        self._st.exact = self._k.ExactNames()
        self._st.untrack = getattr(self._k, "untrack", _keep)
        self._st.untrack_lists()
        self._ranks_dirty = False
        self._queries: dict = {}  # parsed query cache (independent of the index contents)
        self._cache: dict = {}  # per-query helpers derived from share-level data; cleared on any share change

    # ------------------------------------------------------------------ updates
    def replace_share(self, share_id: bytes, items: Iterable, *, title: str | None = None,
                      description: str | None = None, weight: float = 1.0, trust="normal") -> None:
        """Index ``items`` (ItemV1) as the whole content of share ``share_id``, replacing what it had."""
        st = self._st
        share_id = bytes(share_id)
        if len(share_id) != 32:
            raise SearchError("share_id must be 32 bytes")
        tcode = _trust_code(trust)
        rows = self._k.prepare(items)
        slot = st.slot_of.get(share_id)
        if slot is None:
            slot = len(st.slot_ids)
            st.slot_of[share_id] = slot
            st.slot_ids.append(share_id)
            for arr in (st.slot_lo, st.slot_hi, st.slot_wq, st.slot_rank):
                arr.append(0)
            st.slot_trust.append(0)
            st.slot_alive.append(0)
            st.slot_title.append("")
            st.slot_desc.append("")
            self._ranks_dirty = True
        else:
            self._kill(slot)
        self._set_share_meta(slot, title or "", description or "")
        self._cache.clear()
        st.slot_wq[slot] = ranking.quantize_weight(weight)
        st.slot_trust[slot] = tcode
        lo = st.ndocs
        st.slot_lo[slot] = lo
        try:
            self._k.add_share(st, slot, rows)
        except SearchIndexIOError:
            # the native twin's document store could not be written (disk full, I/O error): the
            # docs were appended with their postings; the share is removed (old and new content
            # dead, as replace_share then remove_share would leave it), later updates work
            st.slot_hi[slot] = st.ndocs
            self._kill(slot)
            st.slot_alive[slot] = 0
            self._set_share_meta(slot, "", "")
            raise
        st.slot_hi[slot] = st.ndocs
        st.slot_alive[slot] = 1
        self._maybe_merge()
        self._maybe_compact()

    def set_share_meta(self, share_id: bytes, *, weight: float | None = None, trust=None) -> None:
        """Change a share's weight or trust level without reindexing its items."""
        slot = self._st.slot_of.get(bytes(share_id))
        if slot is None or not self._st.slot_alive[slot]:
            raise KeyError(share_id)
        if weight is not None:
            self._st.slot_wq[slot] = ranking.quantize_weight(weight)
        if trust is not None:
            self._st.slot_trust[slot] = _trust_code(trust)
        self._cache.clear()

    def flush(self) -> None:
        """Finish pending indexing work. The native twin groups a share update's postings and adds
        its names to the exact-name table on a build thread after ``replace_share`` returns; every
        read and update of the index does this first, so callers never need it (a benchmark
        timing a build calls it to count that work)."""
        self._k.flush(self._st)

    def _settle(self) -> None:
        """Before a read or an update: the pending share update finished (a merge still running on
        the build thread is left to run: the parts it started from stay readable)."""
        self._k.flush(self._st, False)

    def remove_share(self, share_id: bytes) -> bool:
        self._settle()
        st = self._st
        slot = st.slot_of.get(bytes(share_id))
        if slot is None or not st.slot_alive[slot]:
            return False
        self._kill(slot)
        st.slot_alive[slot] = 0
        self._set_share_meta(slot, "", "")
        self._cache.clear()
        self._maybe_compact()
        return True

    def _kill(self, slot: int) -> None:
        st = self._st
        st.ndead += st.slot_hi[slot] - st.slot_lo[slot]
        st.slot_lo[slot] = st.slot_hi[slot] = 0
        st.kills += 1

    def _set_share_meta(self, slot: int, title: str, desc: str) -> None:
        st = self._st
        for idx, old in ((st.title_index, st.slot_title[slot]), (st.desc_index, st.slot_desc[slot])):
            for t in set(self._k.tokenize(old)):
                s = idx.get(t)
                if s is not None:
                    s.discard(slot)
                    if not s:
                        del idx[t]
        st.slot_title[slot] = title
        st.slot_desc[slot] = desc
        for idx, text in ((st.title_index, title), (st.desc_index, desc)):
            for t in set(self._k.tokenize(text)):
                idx.setdefault(t, set()).add(slot)

    def _maybe_merge(self, force: bool = False) -> None:
        st = self._st
        if force:
            self.flush()
        frac = getattr(self._k, "MERGE_FRACTION", MERGE_FRACTION)  # a twin's deltas may be cheaper to hold
        for L in st.lists:
            if L.ndelta and (force or L.ndelta > max(MERGE_MIN, L.poff[-1] // frac)):
                self._k.merge(st, L)  # the native twin's runs on its build thread
        if force:
            self.flush()

    def _maybe_compact(self) -> None:
        st = self._st
        if st.ndead >= _COMPACT_MIN_DEAD and st.ndead > st.ndocs - st.ndead:
            self.compact()

    def compact(self) -> None:
        """Drop dead items and removed shares (renumbers internal ids; results are unchanged)."""
        self.flush()
        old = self._st
        new = type(self)(doc_dir=self._doc_dir)
        live = [s for s in range(len(old.slot_ids)) if old.slot_alive[s]]
        for s in live:
            new.replace_share(old.slot_ids[s], list(_Items(old, s)), title=old.slot_title[s],
                              description=old.slot_desc[s], weight=1.0, trust=TRUST_NAMES[old.slot_trust[s]])
            new._st.slot_wq[new._st.slot_of[old.slot_ids[s]]] = old.slot_wq[s]
        self._st = new._st
        self._ranks_dirty = True

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self._st.ndocs - self._st.ndead

    def share_ids(self) -> list[bytes]:
        st = self._st
        return [st.slot_ids[s] for s in range(len(st.slot_ids)) if st.slot_alive[s]]

    def _ranks(self) -> None:
        if self._ranks_dirty:
            self._cache.clear()
            st = self._st
            for r, s in enumerate(sorted(range(len(st.slot_ids)), key=st.slot_ids.__getitem__)):
                st.slot_rank[s] = r
            self._ranks_dirty = False

    def search(self, query: str | Query, *, scope: Iterable[bytes] | None = None,
               trust_levels: Iterable = DEFAULT_TRUST, blocklist=None, limit: int = 20, offset: int = 0,
               typing: bool = False, highlight: tuple[str, str] = ("[", "]")) -> SearchPage:
        """Top ``limit`` hits after ``offset`` (see scp2p.search.ranking for the order)."""
        q = query if isinstance(query, Query) else self._parse(query, typing)
        self._settle()
        if limit < 0 or offset < 0 or offset + limit > MAX_RESULTS:
            raise ValueError(f"0 <= offset, limit and offset + limit <= {MAX_RESULTS}")
        self._ranks()
        plan = self._plan(q, scope, trust_levels, _blocklist_of(blocklist), offset + limit)
        if plan is None:
            return SearchPage(0, False, ())
        found, total, estimate = self._k.run(self._st, plan)
        hits = self._k.make_hits(self._st, found[offset:offset + limit], q, highlight, Hit)
        return SearchPage(total, estimate, hits)

    def _parse(self, text: str, typing: bool) -> Query:
        """parse_query with a small cache (a Query is immutable; users retype and page)."""
        key = (text, typing)
        q = self._queries.get(key)
        if q is None:
            q = parse_query(text, typing=typing)
            if len(self._queries) >= _QUERY_CACHE:
                self._queries.clear()
            self._queries[key] = q
        return q

    # ------------------------------------------------------------------ planning
    def _share_level(self, idx: dict, tok: str, prefix: bool) -> set[int]:
        if not prefix:
            return idx.get(tok, set())
        keys = self._cache.get(id(idx))
        if keys is None:
            keys = self._cache[id(idx)] = sorted(idx)
        out: set[int] = set()
        i = bisect.bisect_left(keys, tok)
        while i < len(keys) and keys[i].startswith(tok):
            out |= idx[keys[i]]
            i += 1
        return out

    def _eligible(self, tmask: int) -> bytes:
        """Slots alive and of an accepted trust level (cached per trust mask)."""
        m = self._cache.get(("trust", tmask))
        if m is None:
            st = self._st
            table = bytes(1 if (tmask >> i) & 1 else 0 for i in range(256))
            tr = bytes(st.slot_trust).translate(table)
            n = len(tr)
            m = (int.from_bytes(tr, "little") & int.from_bytes(bytes(st.slot_alive), "little")).to_bytes(n, "little")
            self._cache[("trust", tmask)] = m
        return m

    def _share_seq_mask(self, toks: tuple[str, ...], nslots: int) -> bytearray:
        """Slots whose title or description contains the token sequence."""
        st = self._st
        mask = bytearray(nslots)
        cand = set.intersection(*(st.title_index.get(t, set()) | st.desc_index.get(t, set()) for t in toks))
        for s in cand:
            for text in (st.slot_title[s], st.slot_desc[s]):
                tt = self._k.tokenize(text)
                n = len(toks)
                if any(tuple(tt[i:i + n]) == toks for i in range(len(tt) - n + 1)):
                    mask[s] = 1
        return mask

    def _plan(self, q: Query, scope, trust_levels, bl, k: int) -> Plan | None:
        st = self._st
        n = len(st.slot_ids)
        p = Plan(k=k)
        # eligible shares
        tmask = 0
        for t in trust_levels:
            tmask |= 1 << _trust_code(t)
        elig = self._eligible(tmask)
        if scope is not None:
            mask = bytearray(n)
            for sid in scope:
                s = st.slot_of.get(bytes(sid))
                if s is not None:
                    mask[s] = elig[s]
        else:
            mask = bytearray(elig)
        if bl.share_ids:
            for sid in bl.share_ids:
                s = st.slot_of.get(sid)
                if s is not None:
                    mask[s] = 0
        if q.shares:
            for s in range(n):
                if mask[s] and not any(st.slot_ids[s].hex().startswith(h) for h in q.shares):
                    mask[s] = 0
        p.mask = mask
        p.blocked = bl.content_ids or None
        # terms
        plens = ranking.PREFIX_LIST_LENGTHS
        for term in q.terms:
            tok = term.text
            exact = st.term_lookup(tok)
            lists = []
            if exact > 0:
                lists += st.segments(0, exact, 0)
            if term.prefix:
                if len(tok) in plens:
                    pid = st.pfx_lookup(tok)
                    if pid is not None:
                        lists += st.segments(1, pid, 1)
                else:
                    for t in st.prefix_terms(tok):
                        lists += st.segments(0, t, 1)
            sd = bytearray(n)
            for s in self._share_level(st.desc_index, tok, term.prefix):
                sd[s] = ranking.DESCRIPTION
            for s in self._share_level(st.title_index, tok, term.prefix):
                sd[s] = ranking.TITLE
            pre = tok if term.prefix else None
            # for prefixes of a listed length: (column in term_pfx, prefix id + 1, or -1 if no term has it)
            pcode = (0, 0)
            if pre and len(pre) in plens:
                pid = st.pfx_lookup(pre)
                pcode = (plens.index(len(pre)), -1 if pid is None else pid + 1)
            p.terms.append((exact, pre, pre.encode() if pre else None, lists, bytes(sd), pcode))
        for a, b in q.phrases:
            p.phrases.append((a, b, bytes(self._share_seq_mask(tuple(t.text for t in q.terms[a:b]), n))))
        for toks in q.excludes:
            ids = [st.term_lookup(t) for t in toks]
            p.excludes.append((None if -1 in ids else array("I", ids), bytes(self._share_seq_mask(toks, n))))
        for toks in q.tags:
            ids = [st.term_lookup(t) for t in toks]
            if -1 in ids:
                return None
            p.tags.append(array("I", ids))
        if q.exts:
            ids = [i for i in map(st.term_lookup, q.exts) if i >= 0]
            if not ids:
                return None
            p.exts = array("I", ids)
        if q.size_min is not None:
            if q.size_min > (1 << 64) - 1:  # no size is that large
                return None
            p.size_min = max(0, q.size_min)
        if q.size_max is not None:
            if q.size_max < 0:
                return None
            p.size_max = min(q.size_max, (1 << 64) - 1)
        # exact names (run scores those items first)
        if q.terms and all(t[0] > 0 for t in p.terms):
            p.exact_ids = array("I", [t[0] for t in p.terms])
        return p


def _matches(tok: str, q: Query) -> bool:
    return any(tok == t.text or (t.prefix and tok.startswith(t.text)) for t in q.terms)


def _mark(text: str, q: Query, highlight) -> tuple[str, bool]:
    pre, post = highlight
    out, last, hit = [], 0, False
    for a, b, tok in token_spans(text):
        if _matches(tok, q):
            out += [text[last:a], pre, text[a:b], post]
            last, hit = b, True
    out.append(text[last:])
    return "".join(out), hit


def snippet(name: str, tags: tuple[str, ...], q: Query, highlight=("[", "]")) -> str:
    """The name with matched tokens wrapped in ``highlight``; matched tags follow after ' | '."""
    text, _ = _mark(name, q, highlight)
    extra = [m for m, hit in (_mark(t, q, highlight) for t in tags) if hit]
    return text + (" | " + ", ".join(extra) if extra else "")


class _ItemRow:
    __slots__ = ("content_id", "size", "name", "mime", "tags")

    def __init__(self, content_id, size, name, mime, tags):
        self.content_id, self.size, self.name, self.mime, self.tags = content_id, size, name, mime, tags


def _Items(st: State, slot: int):
    lo = st.slot_lo[slot]
    for d, (cid, name, mime, size) in enumerate(st.doc_items(lo, st.slot_hi[slot]), lo):
        yield _ItemRow(cid, size, name, mime, st.tags_of(st.doc_tagset[d]))


# ---------------------------------------------------------------------- persistence
_ARRAYS = ("doc_share", "doc_size", "doc_mime", "doc_ext", "doc_tagset", "fwd", "fwd_off", "name_off",
           "term_off", "term_pfx", "ts_toks", "ts_toff", "ts_pfx", "ts_poff",
           "slot_lo", "slot_hi", "slot_wq", "slot_trust", "slot_alive", "slot_rank")
_BYTES = ("names", "cids", "term_blob")
_LIST_ARRAYS = ("post", "poff", "blk", "boff")
_TEXTS = ("pfx_list", "tagset_keys", "mimes")


def _le(a: array):
    if sys.byteorder == "big" and a.itemsize > 1:
        a = array(a.typecode, a)
        a.byteswap()
    return memoryview(a).cast("B")


def _text_blob(strings: list[str]) -> tuple[bytes, array]:
    off = array("Q", [0])
    parts = []
    n = 0
    for x in strings:
        b = x.encode("utf-8", "surrogatepass")
        parts.append(b)
        n += len(b)
        off.append(n)
    return b"".join(parts), off


def _image(st: State):
    """An iterator of the image's pieces (the index is merged first, so there are no deltas)."""
    sections = []
    for name in _ARRAYS + _BYTES:
        sections.append((name, st.section(name)))
    for i, L in enumerate(st.lists):
        for name in _LIST_ARRAYS:
            sections.append((f"{name}{i}", L.section(name)))
    for name in _TEXTS:
        blob, off = st.text_section(name)
        sections += [(name, blob), (name + "#", off)]
    meta = {
        "version": 2, "ndead": st.ndead,
        "sections": [[n, a.typecode, a.nbytes] if isinstance(a, LazySection) else
                     [n, a.typecode if isinstance(a, array) else "B", len(a) * (a.itemsize if isinstance(a, array) else 1)]
                     for n, a in sections],
        "slot_ids": [x.hex() for x in st.slot_ids], "titles": st.slot_title, "descs": st.slot_desc,
        "plens": list(ranking.PREFIX_LIST_LENGTHS),
    }
    mj = json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode()

    def body():
        yield _MAGIC + struct.pack("<I", len(mj)) + mj
        for _, a in sections:
            for c in (a.chunks() if isinstance(a, LazySection) else (a,)):
                yield _le(c) if isinstance(c, array) else bytes(c)

    return body()


def _validate(st: State, k) -> None:
    """Every id and offset the kernels follow is in range (a damaged image must not crash them)."""
    n, nterms, npfx, nts, nslots = len(st.doc_share), st.nterms, st.npfx, st.ntagsets, len(st.slot_ids)
    npl = len(ranking.PREFIX_LIST_LENGTHS)

    def offsets(off, total, count):
        return len(off) == count + 1 and off[0] == 0 and off[-1] == total and k.is_monotonic(off)

    ok = (all(len(a) == n for a in (st.doc_size, st.doc_mime, st.doc_ext, st.doc_tagset))
          and offsets(st.fwd_off, len(st.fwd), n) and offsets(st.name_off, len(st.names), n) and len(st.cids) == 32 * n
          and offsets(st.term_off, len(st.term_blob), nterms) and offsets(st.ts_toff, len(st.ts_toks), nts)
          and offsets(st.ts_poff, len(st.ts_pfx), nts) and len(st.term_pfx) == npl * nterms
          and k.max_of(st.fwd) < nterms and k.max_of(st.ts_toks) < nterms and k.max_of(st.doc_ext) < nterms
          and k.max_of(st.doc_tagset) < nts and k.max_of(st.doc_share) < nslots and k.max_of(st.doc_mime) < len(st.mimes)
          and k.max_of(st.term_pfx) <= npfx and k.max_of(st.ts_pfx) < npfx and k.max_of(st.slot_trust) < 3
          and all(len(a) == nslots for a in (st.slot_lo, st.slot_hi, st.slot_wq, st.slot_trust, st.slot_alive, st.slot_rank))
          and all(st.slot_lo[x] <= st.slot_hi[x] <= n for x in range(nslots)))
    # the tagsets' prefix ids are a function of their tokens (the native twin derives them)
    ok = ok and (st.ts_pfx, st.ts_poff) == k.derive_ts_pfx(st)
    for L, nl in zip(st.lists, (nterms, npfx)):
        ok = ok and (len(L.poff) <= nl + 1 and len(L.boff) == len(L.poff)
                     and offsets(L.poff, len(L.post), len(L.poff) - 1) and offsets(L.boff, len(L.blk), len(L.poff) - 1)
                     and k.max_of(L.post) < n and k.check_blocks(L.poff, L.blk, L.boff, nslots))
    if not ok:
        raise IndexImageError("inconsistent search index image")


def _texts(raw, name) -> list[str]:
    blob, off = bytes(raw[name]), raw[name + "#"]
    if not off or off[0] != 0 or off[-1] != len(blob) or any(a > b for a, b in zip(off, off[1:])):
        raise IndexImageError("bad dictionary offsets")
    return [blob[off[i]:off[i + 1]].decode("utf-8", "surrogatepass") for i in range(len(off) - 1)]


def _read_image(cls, data: bytes, doc_dir=None):
    mv = memoryview(data)
    try:
        if bytes(mv[:8]) != _MAGIC:
            raise IndexImageError("not a search index image (bad magic)")
        (mlen,) = struct.unpack_from("<I", mv, 8)
        meta = json.loads(bytes(mv[12:12 + mlen]))
        if meta.get("version") != 2 or meta.get("plens") != list(ranking.PREFIX_LIST_LENGTHS):
            raise IndexImageError(f"unknown search index image version {meta.get('version')!r}")
        pos = 12 + mlen
        raw = {}
        for name, tc, nbytes in meta["sections"]:
            if pos + nbytes > len(mv):
                raise IndexImageError("truncated search index image")
            a = array(tc)
            a.frombytes(mv[pos:pos + nbytes])
            if sys.byteorder == "big" and a.itemsize > 1:
                a.byteswap()
            raw[name] = a
            pos += nbytes
        if pos != len(mv):
            raise IndexImageError("trailing bytes after the search index image")
        ix = cls(doc_dir=doc_dir)
        st = ix._st
        for name in _ARRAYS:
            setattr(st, name, raw[name])
        for name in _BYTES:
            setattr(st, name, bytearray(raw[name]))
        for i, L in enumerate(st.lists):
            for name in _LIST_ARRAYS:
                setattr(L, name, raw[f"{name}{i}"])
            if (L.poff[-1] != len(L.post) or L.boff[-1] != len(L.blk) or len(L.poff) != len(L.boff)
                    or any(L.poff[j] > L.poff[j + 1] for j in range(len(L.poff) - 1))):
                raise IndexImageError("bad posting offsets")
        st.load_dicts(raw)
        st.slot_ids = [bytes.fromhex(h) for h in meta["slot_ids"]]
        st.slot_of = {x: i for i, x in enumerate(st.slot_ids)}
        st.slot_title, st.slot_desc = [], []
        for x in range(len(st.slot_ids)):
            st.slot_title.append("")
            st.slot_desc.append("")
            ix._set_share_meta(x, meta["titles"][x], meta["descs"][x])
        st.ndead = meta["ndead"]
        st.untrack_lists()
        ix._ranks_dirty = True
        _validate(st, ix._k)
        st.adopt_docs()
        for x in range(len(st.slot_ids)):
            if st.slot_alive[x]:
                st.exact.add_range(st, st.slot_lo[x], st.slot_hi[x])
        return ix
    except IndexImageError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, struct.error, UnicodeDecodeError, OverflowError) as exc:
        raise IndexImageError(f"damaged search index image ({exc})") from exc


def _save(self, store, name: str = BLOB_NAME) -> int:
    """Write the index to the store's blob area; returns the blob generation."""
    self.flush()
    self._maybe_merge(force=True)
    return store.put_blob(name, _image(self._st))


def _load(cls, store, name: str = BLOB_NAME, *, doc_dir=None):
    """The index saved under ``name``, or None if there is none (IndexImageError if damaged)."""
    blob = store.blob(name)
    return None if blob is None else _read_image(cls, blob.data, doc_dir)


IndexBase.save = _save
IndexBase.load = classmethod(_load)
IndexBase.from_bytes = classmethod(lambda cls, data, *, doc_dir=None: _read_image(cls, data, doc_dir))


def _to_bytes(self) -> bytes:
    self.flush()
    self._maybe_merge(force=True)
    return b"".join(bytes(p) for p in _image(self._st))


IndexBase.to_bytes = _to_bytes
