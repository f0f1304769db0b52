"""Native and pure twins return identical pages on random corpora and queries; early
termination returns exactly what exhaustive scoring returns."""

from __future__ import annotations

import pytest
from helpers import twin_names
from hypothesis import given, settings, strategies as st
from search_helpers import index_module, item, sid

from scp2p.search import _index_py
from scp2p.search._base import DEFAULT_TRUST, Blocklist
from scp2p.search.query import parse_query

WORDS = ["lib", "libc", "libssl", "so", "gz", "bash", "python3", "py", "doc", "usr", "share", "Ünï", "uni",
         "x86", "64", "linux", "gnu", "readme", "md", "a", "ab", "abc", "abcd", "abcde"]
SEPS = [".", "-", "_", " ", "/"]

word = st.sampled_from(WORDS)
name = st.builds(lambda ws, seps: "".join(w + s for w, s in zip(ws, seps))[:-1] or "x",
                 st.lists(word, min_size=1, max_size=4), st.lists(st.sampled_from(SEPS), min_size=4, max_size=4))
an_item = st.tuples(name, st.lists(st.sampled_from(["usr", "lib", "share doc", "bin", "x86_64-linux-gnu"]),
                                   max_size=3), st.integers(0, 5000), st.integers(0, 40))
share = st.tuples(st.integers(1, 6), st.lists(an_item, max_size=25),
                  st.one_of(st.none(), st.lists(word, max_size=3).map(" ".join)),
                  st.one_of(st.none(), st.lists(word, max_size=3).map(" ".join)),
                  st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0]), st.sampled_from(["trusted", "normal", "untrusted"]))
ops = st.lists(st.one_of(share, st.integers(1, 6)), min_size=1, max_size=10)

clause = st.one_of(
    word, word.map(lambda w: w + "*"), word.map(lambda w: "-" + w),
    st.tuples(word, word).map(lambda p: f'"{p[0]} {p[1]}"'), st.tuples(word, word).map(lambda p: f"{p[0]}.{p[1]}"),
    st.sampled_from(["tag:usr", "tag:lib", 'tag:"share doc"', "ext:so", "ext:gz", "size:>2000", "size:<=100",
                     "share:01", "share:0202", "-tag:bin"]).filter(lambda c: not c.startswith("-tag")),
)
query = st.lists(clause, min_size=1, max_size=4).map(" ".join)


def build(mod, operations, merges=()):
    """Apply the operations; after op i, fold the posting deltas in when merges[i] (exercises both layouts)."""
    return build_into(mod.Index(), operations, merges)


def build_into(ix, operations, merges=()):
    for i, op in enumerate(operations):
        if i < len(merges) and merges[i]:
            ix._maybe_merge(force=True)
        if isinstance(op, int):
            ix.remove_share(sid(op))
        else:
            n, items, title, desc, weight, trust = op
            ix.replace_share(sid(n), [item(nm, tags, size=sz, key=f"{nm}{k}") for nm, tags, sz, k in items],
                             title=title, description=desc, weight=weight, trust=trust)
    return ix


def random_ops(seed: int, count: int, p_remove: float, max_items: int, tags: list[str]):
    """``count`` random share updates and removals over shares 1-8, and where to merge before each."""
    import random

    rng = random.Random(seed)
    ops_ = []
    for _ in range(count):
        n = rng.randrange(1, 9)
        if rng.random() < p_remove:
            ops_.append(n)
            continue
        its = [(rng.choice(WORDS) + rng.choice(SEPS) + rng.choice(WORDS), rng.sample(tags, 2), rng.randrange(5000), k)
               for k in range(rng.randrange(0, max_items))]
        ops_.append((n, its, rng.choice([None, "abc doc"]), None, 1.0, "normal"))
    return ops_, [rng.random() < 0.05 for _ in ops_]


class lazy_posts:
    """With ``on``, the native twin reads every on-disk posting list a share run at a time (as it
    does for long lists) instead of whole (short lists): both paths are compared with the pure twin."""

    def __init__(self, on: bool):
        self.on, self.old = on, None

    def __enter__(self):
        if self.on and "native" in twin_names():
            self.old = index_module("native").set_eager_posts(0)

    def __exit__(self, *exc):
        if self.old is not None:
            index_module("native").set_eager_posts(self.old)


def in_memory(plan):
    """The plan with the native twin's on-disk merged lists read into arrays (for the pure kernel)."""
    from array import array

    def seg(post, p0, p1, blk, b0, b1, strict):
        if isinstance(post, array):
            return post, p0, p1, blk, b0, b1, strict
        post, blk = post.read_all()
        return post, p0, p1, blk, b0, b1, strict

    plan.terms = [t[:3] + ([seg(*x) for x in t[3]],) + t[4:] for t in plan.terms]
    return plan


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
@settings(max_examples=300, deadline=None)
@given(ops, st.lists(query, min_size=1, max_size=6), st.integers(0, 6), st.integers(0, 5), st.booleans(),
       st.lists(st.booleans(), max_size=10), st.booleans())
def test_twins_identical(operations, queries, limit, offset, typing, merges, lazy):
    native, pure = build(index_module("native"), operations, merges), build(index_module("pure"), operations, merges)
    with lazy_posts(lazy):
        for q in queries:
            for kw in ({}, {"trust_levels": ["untrusted", "trusted"]}, {"scope": [sid(1), sid(3)]},
                       {"blocklist": [sid(2)]}):
                assert native.search(q, limit=limit, offset=offset, typing=typing, **kw) == \
                    pure.search(q, limit=limit, offset=offset, typing=typing, **kw), (q, kw)
        assert native.to_bytes() == pure.to_bytes()  # merges both; the images are identical
        for q in queries:
            assert native.search(q, limit=limit) == pure.search(q, limit=limit)


@settings(max_examples=300, deadline=None)
@given(ops, st.lists(query, min_size=1, max_size=6), st.integers(1, 8), st.lists(st.booleans(), max_size=10),
       st.booleans())
def test_early_termination_is_exact(twin_name_list, operations, queries, k, merges, lazy):
    for name in twin_name_list:
        ix = build(index_module(name), operations, merges)
        ix.flush()  # (search() does it; the kernels are called directly here)
        ix._ranks()
        for name_ in ("doc_share", "doc_ext"):  # the native twin derives them; the pure kernel reads arrays
            if not hasattr(ix._st, name_):
                setattr(ix._st, name_, ix._st.section(name_))
        for q in queries:
            plan = ix._plan(parse_query(q), None, DEFAULT_TRUST, Blocklist(), k)
            if plan is None:
                continue
            with lazy_posts(lazy):
                fast, total, est = ix._k.run(ix._st, plan)
            plan2 = in_memory(ix._plan(parse_query(q), None, DEFAULT_TRUST, Blocklist(), k))
            slow, total2, est2 = _index_py.run(ix._st, plan2, exhaustive=True)
            assert fast == slow, q
            assert not est2
            if not est:
                assert total == total2
            else:
                assert total >= total2 >= len(fast)


@pytest.fixture(scope="module")
def twin_name_list():
    return twin_names()


def test_compaction_is_invisible(twin):
    ops_ = [(s, [(f"f{i}.so", ["usr"], i, i) for i in range(20)], "t", None, 1.0, "normal") for s in (1, 2, 3)]
    ix = build(twin, ops_ + ops_)
    before = [ix.search(q, limit=10, offset=2) for q in ("f1*", "so usr", "t", "ext:so size:>5")]
    ix.compact()
    assert [ix.search(q, limit=10, offset=2) for q in ("f1*", "so usr", "t", "ext:so size:>5")] == before


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
def test_twins_identical_on_edge_names():
    """Names the random corpora do not reach: more than 64 tokens, tokens over 64 characters,
    empty and separator-only names, mixed ASCII and non-ASCII shares, equal names (content id
    breaks the tie), upper case and digits; the native build scans ASCII names in C."""
    long_tok = "Ab" * 40
    names = ["", "...", "a", "A", "a.b", "b.a", "x" * 70 + ".TXT", ".".join(["w"] * 70), "-".join(["t%d" % i for i in range(80)]),
             long_tok + "." + long_tok, "same.so", "same.so", "README", "readme.md", "Ünïcödé.txt", "ünï-x.gz",
             "tail.", "a..b", "9lives.tar.GZ", "x.y.z.abc", "q" * 64 + "r.s"]
    shares = [[item(nm, ("usr", "share doc"), size=i, key=f"{nm}/{i}") for i, nm in enumerate(names)],
              [item(nm, ("lib",), size=i, key=f"{nm}/{i}") for i, nm in enumerate(names) if nm.isascii()],
              [item(nm, tg, size=i, key=f"{nm}/{i}/t") for i, (nm, tg) in enumerate(zip(names, [
                  (), ("",), ("a\x00b", "c"), ("\x01x",), ("USR", "Share_Doc"), ("Ünï", "usr"), ("-".join(["k"] * 70),),
                  tuple("t%d-u%d" % (j, j) for j in range(40)), ("usr", "usr"), ("x" * 70,), ("...",)] * 2))]]
    ixs = []
    for mod in (index_module("native"), index_module("pure")):
        ix = mod.Index()
        for n, its in enumerate(shares, 1):
            ix.replace_share(sid(n), its)
            ix.replace_share(sid(n + 2), list(reversed(its)))
        ixs.append(ix)
    native, pure = ixs
    for q in ("a", "w", "t7", long_tok[:64].lower(), "same", "same.so", "readme", "unicode", "x*", "ext:gz", "ext:txt",
              "9lives", "qqq*", "usr", '"a b"', "tail", "tag:usr", "tag:k", "t39", "t30*", "share", "doc"):
        assert native.search(q, limit=50) == pure.search(q, limit=50), q
    assert native.to_bytes() == pure.to_bytes()


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
def test_twins_identical_after_load_and_compact():
    """Terms added after a load or a compaction (the native twin's term hash is rebuilt from the
    loaded terms) get the same ids in both twins."""
    first = [item(f"old{i}.so", ("usr", f"dir{i % 3}"), size=i) for i in range(30)]
    later = [item(f"old{i}.so.{i}" if i % 2 else f"new{i}-x.Tar", (f"dir{i % 5}", "new tag"), size=i) for i in range(30)]
    images = []
    for mod in (index_module("native"), index_module("pure")):
        ix = mod.Index()
        ix.replace_share(sid(1), first)
        ix.replace_share(sid(2), first[:10])
        ix = mod.Index.from_bytes(ix.to_bytes())
        ix.replace_share(sid(3), later)
        ix.replace_share(sid(1), later[5:])
        ix.compact()
        ix.replace_share(sid(4), first + later)
        images.append((ix.to_bytes(), [ix.search(q, limit=50) for q in ("old1*", "new", "tar", "usr", "dir2", "so")]))
    assert images[0] == images[1]


def test_items_of_any_type(twin):
    """Items are read by attribute: ItemV1, other slotted classes, plain objects and a subclass
    that overrides a field with a property all index the same (the native twin reads known
    slot layouts directly)."""
    from types import SimpleNamespace

    from scp2p.wire.records import ItemV1

    class Renamed:  # slotted, but "name" is a property
        __slots__ = ("content_id", "size", "mime", "tags")
        name = property(lambda self: "renamed.txt")

        def __init__(self, it):
            self.content_id, self.size, self.mime, self.tags = it.content_id, it.size, it.mime, it.tags

    class Sub(ItemV1):
        __slots__ = ()

    base = [item(f"f{i}.so", ("usr",), size=i) for i in range(5)]
    plain = [SimpleNamespace(content_id=it.content_id, size=it.size, name=it.name, mime=it.mime, tags=it.tags)
             for it in base]
    images = []
    subs = [Sub(content_id=it.content_id, size=it.size, name=it.name, tags=it.tags) for it in base]
    for items in (base, plain, base[:2] + plain[2:], subs, plain[:1] + base[1:3] + subs[3:]):
        ix = twin.Index()
        ix.replace_share(sid(1), items)
        images.append(ix.to_bytes())
    assert all(im == images[0] for im in images)
    ix = twin.Index()
    ix.replace_share(sid(1), [Renamed(it) for it in base])
    assert [h.name for h in ix.search("renamed").hits] == ["renamed.txt"] * 5
    ix = twin.Index()  # a rejected layout leaves the cached one intact
    ix.replace_share(sid(1), base)
    assert ix.to_bytes() == images[0]


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
@pytest.mark.parametrize("lazy", [False, True])
def test_twins_identical_over_many_updates(lazy):
    """Enough share updates that the native twin folds its per-update delta Segs (every 16)
    and merges them, with shares replaced and removed in between (dead runs dropped by folds
    and merges; a merge copies a merged part whole only when no share died since)."""
    with lazy_posts(lazy):
        ops_, merges = random_ops(7, 70, 0.15, 30, ["usr", "lib", "share doc", "bin"])
        native, pure = build(index_module("native"), ops_, merges), build(index_module("pure"), ops_, merges)
        for rnd in range(3):
            for q in ("usr", "lib*", "abc*", "so", "doc", '"share doc"', "x86*", "readme md", "-gz py*", "ext:so", "a*"):
                for limit in (3, 50):
                    assert native.search(q, limit=limit) == pure.search(q, limit=limit), q
            assert native.to_bytes() == pure.to_bytes()  # merges both
            for ix in (native, pure):  # new shares only: no share dies before the next merge
                for n in range(10 + 5 * rnd, 15 + 5 * rnd):
                    ix.replace_share(sid(n), [item(f"{w}.so", ["lib"], size=n, key=f"{n}/{w}") for w in WORDS[n % 7:]])


class background:
    """The native twin's share updates finish their C part on a build thread (``on``, the default)
    or inline when flushed."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        index_module("native").set_background(self.on)

    def __exit__(self, *exc):
        index_module("native").set_background(True)


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
def test_background_build_matches_inline_and_the_pure_twin():
    """Share updates whose postings and exact names are finished on the build thread give the
    same pages, totals and images as finishing them inline and as the pure twin, with reads,
    removals, merges and saves interleaved (each flushes the pending update first)."""
    ops_, merges = random_ops(11, 60, 0.1, 40, ["usr", "lib", "share doc"])
    queries = ("usr", "lib*", "abc*", "so", '"share doc"', "readme md", "-gz py*", "ext:so", "a*", "libc.so")
    pure = build(index_module("pure"), ops_, merges)
    images = []
    for on in (True, False):
        with background(on):
            native = build(index_module("native"), ops_, merges)
            for q in queries:
                assert native.search(q, limit=9) == pure.search(q, limit=9), (on, q)
            native.replace_share(sid(20), [item("zzz.so", ["lib"])])  # pending, then read
            assert [h.name for h in native.search("zzz").hits] == ["zzz.so"]
            native.replace_share(sid(21), [item("yyy.so", ["lib"])])  # pending, then saved
            images.append(native.to_bytes())
            native.replace_share(sid(22), [item("xxx.so", ["lib"])])
            del native  # dropped with an update pending: the build thread is waited for
    pure.replace_share(sid(20), [item("zzz.so", ["lib"])])
    pure.search("zzz")  # (a search after a new share ranks the share ids: slot_rank is in the image)
    pure.replace_share(sid(21), [item("yyy.so", ["lib"])])
    pure.flush()  # the pure twin has nothing pending
    assert images[0] == images[1] == pure.to_bytes()


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
@pytest.mark.parametrize("merge_min", [40, 600])
def test_background_merges_and_folds_interleaved(monkeypatch, merge_min):
    """With a tiny merge threshold the native twin starts a merge on the build thread every few
    updates, while later updates go on and their Segs are folded (also on the thread): pages
    along the way and the final image equal the pure twin's."""
    from scp2p.search import _base

    monkeypatch.setattr(_base, "MERGE_MIN", merge_min)
    ops_, _ = random_ops(5, 150, 0.1, 30, ["usr", "lib", "share doc", "bin"])
    native, pure = index_module("native").Index(), index_module("pure").Index()
    for i in range(0, len(ops_), 30):
        for ix in (native, pure):
            build_into(ix, ops_[i:i + 30])
        for q in ("usr", "lib*", "so", '"share doc"', "-gz py*", "ext:so", "a*"):
            assert native.search(q, limit=20) == pure.search(q, limit=20), (i, q)
    assert native.to_bytes() == pure.to_bytes()


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
@pytest.mark.parametrize("on", [True, False])
def test_full_disk_during_merge_leaves_the_index_unchanged(tmp_path, on):
    """A postings-file write that fails during a merge (ENOSPC injected) raises
    SearchIndexIOError (an OSError with its errno) from the call that finishes the merge; the
    index is unchanged (same pages) and usable: the next merge succeeds and the image equals the
    pure twin's."""
    import errno

    from scp2p.errors import SearchIndexIOError, SearchError

    native_mod = index_module("native")
    queries = ("usr", "lib*", "so", '"share doc"', "readme md", "ext:so", "a*")

    def fill(ix, lo, hi):
        for n in range(lo, hi):
            ix.replace_share(sid(n), [item(f"{w}{n}.so", ["usr", "share doc"], key=f"{n}/{w}") for w in WORDS])

    with background(on):
        native, pure = native_mod.Index(doc_dir=tmp_path), index_module("pure").Index()
        for ix in (native, pure):
            fill(ix, 1, 6)
            ix._maybe_merge(force=True)  # a merged part on disk
            fill(ix, 6, 9)
        before = [native.search(q, limit=30) for q in queries]
        assert before == [pure.search(q, limit=30) for q in queries]  # (a search ranks the share ids)
        for after in (0, 1):  # the first write, and one later (a partly written file)
            native_mod.set_write_failure(after)
            try:
                with pytest.raises(SearchIndexIOError) as info:
                    native._maybe_merge(force=True)
            finally:
                native_mod.set_write_failure(-1)
            assert info.value.errno == errno.ENOSPC and isinstance(info.value, (OSError, SearchError))
            assert [native.search(q, limit=30) for q in queries] == before
            assert native._st.lists[0].ndelta > 0 and native._st.lists[0].merging is None
        for ix in (native, pure):
            fill(ix, 9, 11)
        assert native.to_bytes() == pure.to_bytes()  # the merge goes through now
        for q in queries:
            assert native.search(q, limit=30) == pure.search(q, limit=30), q


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
@pytest.mark.parametrize("on", [True, False])
def test_full_disk_in_document_store_removes_the_share(tmp_path, on):
    """A document-store write that fails in replace_share (ENOSPC injected; only the native twin
    has a document-store file) raises SearchIndexIOError and leaves the share removed -- the
    index then equals the pure twin's after replace_share + remove_share (pages, image), no
    half-indexed document is ever returned, and later updates (of that share too) work."""
    import errno

    from scp2p.errors import SearchError, SearchIndexIOError

    native_mod = index_module("native")
    queries = ("usr", "lib*", "so", '"share doc"', "readme md", "ext:so", "a*", "zzfail*", "bash3")

    def items(n, tag="usr"):
        return [item(f"{w}{n}.so", [tag, "share doc"], key=f"{n}/{w}") for w in WORDS]

    with background(on):
        native, pure = native_mod.Index(doc_dir=tmp_path), index_module("pure").Index()
        for ix in (native, pure):
            for n in range(1, 6):
                ix.replace_share(sid(n), items(n), title=f"share {n}")
            ix._maybe_merge(force=True)
        # an existing share's update and a new share's first content fail
        for n, new in ((3, [item(f"zzfail{w}.so", ["usr"], key=f"f/{w}") for w in WORDS]), (7, items(7))):
            native_mod.set_doc_write_failure(0)
            try:
                with pytest.raises(SearchIndexIOError) as info:
                    native.replace_share(sid(n), new, title="failed")
            finally:
                native_mod.set_doc_write_failure(-1)
            assert info.value.errno == errno.ENOSPC and isinstance(info.value, (OSError, SearchError))
            pure.replace_share(sid(n), new, title="failed")
            assert pure.remove_share(sid(n))
            for q in queries:
                assert native.search(q, limit=30) == pure.search(q, limit=30), (n, q)
            assert native.to_bytes() == pure.to_bytes()
            assert native.search("zzfail*").total == 0 and native.search("usr").total == pure.search("usr").total
        assert not native.remove_share(sid(3))  # already removed
        for ix in (native, pure):
            ix.replace_share(sid(3), items(3, "bin"))
            ix.replace_share(sid(8), items(8))
            ix._maybe_merge(force=True)
        for q in queries + ("bin",):
            assert native.search(q, limit=30) == pure.search(q, limit=30), q
        assert native.search("bash3").total == 1
        assert native.to_bytes() == pure.to_bytes()
        native.compact()
        pure.compact()
        assert native.to_bytes() == pure.to_bytes()


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
def test_twins_agree_on_estimate_with_tied_exact_names():
    """Items named exactly as the query with equal scores (weight 0): whether the total is an
    estimate depends on the order the exact-name items are visited in, which both twins share
    (newest first; hypothesis found the pure twin visiting oldest first)."""
    its = [item("lib", [], size=0, key="lib0"), item("lib", [], size=0, key="lib1"), item("lib", ["usr"], key="lib2")]
    pages = []
    for mod in (index_module("native"), index_module("pure")):
        for nshares in (1, 2):
            ix = mod.Index()
            ix.replace_share(sid(1), its[:2], description="lib", weight=0.0, trust="trusted")
            if nshares == 2:
                ix.replace_share(sid(2), its, weight=1.0)
            pages.append([ix.search(q, limit=lim, offset=off) for q in ("lib", "lib usr")
                          for lim, off in ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (5, 0))])
    assert pages[:2] == pages[2:]
    assert pages[0][1].total_is_estimate is False  # (the pure twin said True)


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
def test_twins_rank_order_on_close_names():
    """The native rank sort compares a 64-bit prefix key (token count, first 7 name bytes) before
    the full key: names equal in their first 7 bytes, NULs and prefixes of each other must still
    come out in str order."""
    names = ["ab", "ab\x00", "ab\x00c", "ab\x01", "ab\x00\x00", "abcdefgh1", "abcdefgh0", "abcdefg", "abcdefg\x00",
             "abcdef", "a b", "a\x00b", "zz", "z\x00z", "abcdefghij.so", "abcdefghii.so", "ABCDEFGH1"]
    its = [item(nm, ("t",), size=i, key=f"{nm}/{k}") for i, nm in enumerate(names) for k in range(2)]
    images = []
    for mod in (index_module("native"), index_module("pure")):
        ix = mod.Index()
        ix.replace_share(sid(9), its)
        ix.replace_share(sid(10), list(reversed(its)))
        images.append((ix.to_bytes(), ix.search("t", limit=100), ix.search("ab*", limit=100)))
    assert images[0] == images[1]


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
def test_twins_agree_on_damaged_images():
    """Randomly damaged images: both twins reject the same ones (IndexImageError, never a
    crash) and answer the same on the ones they accept (the native twin validates its C
    dictionaries as the pure twin validates its dicts)."""
    import random

    from scp2p.errors import IndexImageError

    its = [item(f"alpha{i} beta.txt", ["usr", f"doc{i % 3}", "Ünï"]) for i in range(12)]
    images = set()
    for mod in (index_module("native"), index_module("pure")):
        ix = mod.Index()
        ix.replace_share(sid(1), its)
        ix.replace_share(sid(2), [item(f"gamma{i}.so.{i}", ["lib"]) for i in range(6)])
        images.add(ix.to_bytes())
    (data,) = images
    rng = random.Random(5)
    for _ in range(1500):
        b = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out = []
        for mod in (index_module("native"), index_module("pure")):
            try:
                ix = mod.Index.from_bytes(bytes(b))
            except IndexImageError:
                out.append(None)
                continue
            res = []
            for q in ("alpha*", "usr", "gamma1", "so", "unï", "d*"):
                try:
                    res.append(ix.search(q, limit=5))
                except UnicodeDecodeError:  # a damaged name (names are decoded for hits only)
                    res.append("undecodable")
            out.append(res)
        assert out[0] == out[1]


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
@pytest.mark.parametrize("lazy", [False, True])
def test_on_disk_postings_survive_replacement_and_round_trip(tmp_path, lazy):
    """The native twin's merged postings live in a PostFile (post / blk on disk, read with pread):
    after merges, share replacements and removals (dead runs in the merged part), a save / load
    round trip of an image that still holds dead runs, and replacements after the load, every
    page equals the pure twin's and the images stay byte-identical."""
    queries = ["lib", "lib*", "so", "usr", "gnu*", "doc", "bash -gz", '"libc so"', "tag:usr ext:so", "x86*", "ab*",
               "libc*", "bas*"]

    def shares(round_):
        return [(n, [item(f"{w}{i % 7}.{'so' if i % 3 else 'gz'}", tags, key=f"{round_}.{n}.{i}")
                     for i, (w, tags) in enumerate([("lib", ["usr", "lib"]), ("libc", ["usr"]), ("bash", ["bin"]),
                                                    ("gnu", ["x86_64-linux-gnu"]), ("doc", ["share doc"])] * 6)])
                for n in range(1, 9)]

    def fill(ix, round_, only=None):
        for n, items in shares(round_):
            if only is None or n in only:
                ix.replace_share(sid(n), items, title=f"t{n}")

    twins = {}
    with lazy_posts(lazy):
        for name in ("native", "pure"):
            ix = index_module(name).Index(doc_dir=tmp_path) if name == "native" else index_module(name).Index()
            fill(ix, 0)
            ix._maybe_merge(force=True)  # merged part on disk
            fill(ix, 1, only={2, 5})  # replaced after the merge: their merged runs are dead
            ix.remove_share(sid(7))
            twins[name] = ix
        native, pure = twins["native"], twins["pure"]
        assert native._st.lists[0].disk is not None and len(native._st.lists[0].post) == 0
        for q in queries:
            assert native.search(q, limit=7) == pure.search(q, limit=7), q
        short = [item(f"ab{i}.so", key=f"short{i}") for i in range(5)]  # no token longer than 3: no prefix postings
        for ix in (native, pure):
            ix._maybe_merge(force=True)
            ix.remove_share(sid(3))  # no delta: the saved image keeps the dead runs of share 3
            ix.replace_share(sid(6), short)  # no prefix delta: share 6's old prefix runs stay, dead, in a live slot
            assert ix._st.lists[1].ndelta == 0
        image = native.to_bytes()
        assert image == pure.to_bytes()
        back = index_module("native").Index.from_bytes(image, doc_dir=tmp_path)
        pback = index_module("pure").Index.from_bytes(image)
        assert back._st.lists[0].disk is not None and back._st.lists[1].disk.ndead > 0  # share 6's dead runs
        assert back.to_bytes() == image
        for q in queries:
            assert back.search(q, limit=7) == pback.search(q, limit=7) == pure.search(q, limit=7), q
        for ix in (back, pback):
            fill(ix, 2, only={1, 4, 8})
            ix._maybe_merge(force=True)  # reads the file back, folds, rewrites it
            fill(ix, 3, only={4})
        for q in queries:
            assert back.search(q, limit=7) == pback.search(q, limit=7), q
        assert back.to_bytes() == pback.to_bytes()


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
def test_twins_identical_on_derived_doc_columns():
    """The native twin derives doc_share (share runs) and doc_ext (2-bit codes: none / the name's
    last token / an exception list): a name of more than 64 tokens (its extension is not its last
    indexed token), names without or ending in a dot, a non-ASCII extension, and the same share
    replaced twice in a row (one run) give the pure twin's pages and image, also after a load."""
    long_name = " ".join(f"w{i}" for i in range(70)) + ".iso"
    names = [long_name, "plain", "trailing.", ".hidden", "a.b c", "Ünï.Ünï", "x.tar.gz", "y.ISO", "z.b c.iso"]
    its = [item(nm, ("t",), size=i, key=nm) for i, nm in enumerate(names)]
    images = []
    for name in ("native", "pure"):
        ix = index_module(name).Index()
        ix.replace_share(sid(1), its)
        ix.replace_share(sid(2), its[:4])
        ix.replace_share(sid(2), its[4:])  # the same slot twice in a row
        ix.replace_share(sid(3), its[::2])
        ix.remove_share(sid(1))
        pages = [ix.search(q, limit=50) for q in ("ext:iso", "ext:gz", "ext:b", "ext:ünï", "w5", "plain", "t")]
        image = ix.to_bytes()
        back = index_module(name).Index.from_bytes(image)
        assert [back.search(q, limit=50) for q in ("ext:iso", "ext:gz", "ext:b", "ext:ünï", "w5", "plain", "t")] == pages
        assert back.to_bytes() == image
        images.append((image, pages))
    assert images[0] == images[1]
    assert any(h.name == long_name for h in images[0][1][0].hits)


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
def test_twins_identical_on_size_filter_bounds():
    """The native twin keeps a 16-bit size class per doc (exact below 2048, then 1,024 classes
    per power of two) and reads the exact size from the record at a bound's own class: filters
    at and around class edges, 4 GiB and the largest sizes give the pure twin's pages."""
    edges = [0, 1, 2047, 2048, 2049, 3071, 3072, 4095, 4096, 10 * 2**20 - 1, 10 * 2**20, 10 * 2**20 + 1,
             10 * 2**20 + 2**13, 2**32 - 1, 2**32, 2**32 + 1, 2**40 + 12345, 2**63 - 1, 2**63, 2**64 - 1]
    its = [item(f"f{i}.bin", ("t",), size=sz, key=f"s{i}") for i, sz in enumerate(edges)]
    bounds = ["0", "1", "2047", "2048", "2049", "4096", "10M", "10485761", "10493952", "4G", "4294967295",
              "4294967297", "9223372036854775808", "18446744073709551615"]
    queries = [f"f* size:{op}{b}" for op in (">", ">=", "<", "<=", "=") for b in bounds] + ["f*"]
    pages = {}
    for name in ("native", "pure"):
        ix = index_module(name).Index()
        ix.replace_share(sid(1), its)
        back = index_module(name).Index.from_bytes(ix.to_bytes())
        pages[name] = [(q, ix.search(q, limit=50), back.search(q, limit=50)) for q in queries]
    assert pages["native"] == pages["pure"]
    assert all(p == b for _, p, b in pages["native"])


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
def test_twins_identical_with_long_records(tmp_path):
    """The native document store locates records by a start per 64 docs plus one length byte
    per doc (records over 1,020 bytes -- long names -- in a side table): pages, images, a load
    and a compaction over groups mixing short and long names match the pure twin."""
    its = [item(("n%03d " % i) + ("x" * (1500 + 37 * i) if i % 9 == 0 else "short") + ".txt", ("t",), size=i,
                key=f"L{i}") for i in range(150)]
    out = []
    for name in ("native", "pure"):
        mod = index_module(name)
        ix = mod.Index(doc_dir=tmp_path) if name == "native" else mod.Index()
        ix.replace_share(sid(1), its)
        ix.replace_share(sid(2), its[::3])
        ix.remove_share(sid(1))
        ix.replace_share(sid(3), its[1::2])
        pages = [ix.search(q, limit=100) for q in ("txt", "short", "n009", "t", "n0*")]
        image = ix.to_bytes()
        back = mod.Index.from_bytes(image, doc_dir=tmp_path) if name == "native" else mod.Index.from_bytes(image)
        ix.compact()
        out.append((image, pages, [back.search(q, limit=100) for q in ("txt", "n009")],
                    [ix.search(q, limit=100) for q in ("txt", "n009")], ix.to_bytes()))
    assert out[0] == out[1]


@pytest.mark.skipif(twin_names() == ["pure"], reason="native twin not built (SCP2P_NO_EXTENSIONS)")
@pytest.mark.parametrize("lazy", [False, True])
def test_twins_identical_on_sparse_terms_in_large_shares(lazy):
    """A term (or prefix) with a few matches in shares of hundreds of items: the native twin
    walks the sorted union of its lists' postings there instead of marking every doc of the
    share -- same hits, order, totals and estimates as the pure twin, with the term's lists in
    the merged part and in delta Segs, and a doc in several of them (prefix expansion)."""
    rare = ["zebra.so", "zebras crossing.txt", "zebra zebrafish.png", "Zebu notes.txt", "zebrafish.dat"]

    def share(n):
        items = [item(f"filler{n} {i}.dat", ["usr", f"d{i % 7}"], size=i, key=f"{n}/{i}") for i in range(300)]
        for j, name in enumerate(rare[n % 2::2 if n % 3 else 1]):
            items.insert(37 * (j + 1) + n, item(name, ["usr", "zoo"], size=j, key=f"{n}/r{j}"))
        return items

    with lazy_posts(lazy):
        ixs = []
        for mod in (index_module("native"), index_module("pure")):
            ix = mod.Index()
            for n in range(1, 4):
                ix.replace_share(sid(n), share(n))
                if n == 1:
                    ix._maybe_merge(force=True)  # share 1 in the merged part, 2 and 3 in Segs
            ixs.append(ix)
        native, pure = ixs
        for q in ("zebra", "zeb*", "zebra*", "zebr", "zeb* -crossing", "zebra so", "zebrafish", "tag:zoo zeb*"):
            for limit, offset in ((1, 0), (2, 1), (50, 0)):
                for typing in (False, True):
                    assert native.search(q, limit=limit, offset=offset, typing=typing) == \
                        pure.search(q, limit=limit, offset=offset, typing=typing), (q, limit, offset, typing)
        assert native.search("zeb*", limit=50).total == pure.search("zeb*", limit=50).total > 3
