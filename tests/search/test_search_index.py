"""Index behaviour: ranking order, every query feature, share replacement, persistence."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from search_helpers import cid, item, sid

from scp2p.errors import IndexImageError, QueryError, SearchError
from scp2p.search import Blocklist, Index, SearchPage, parse_query
from scp2p.search import _index_py
from scp2p.store import Store
from scp2p.store.records import TrustLevel
from scp2p.wire.records import ItemV1


def names(page: SearchPage) -> list[str]:
    return [h.name for h in page.hits]


@pytest.fixture
def ix(twin):
    ix = twin.Index()
    ix.replace_share(sid(1), [
        item("bash", ["usr", "bin"], size=1_200_000, mime="application/x-executable"),
        item("bash-completion.sh", ["etc", "profile.d"]),
        item("bashrc.example", ["usr", "share", "doc", "bash"]),
        item("libssl.so.3", ["usr", "lib", "x86_64-linux-gnu"], size=600_000),
        item("Ünïcödé Notes.txt", ["home"]),
        item("debian-12-amd64.iso", ["isos"], size=700 * 2**20, mime="application/x-iso9660-image"),
    ], title="Debian base system", description="core files of a bash-based install")
    ix.replace_share(sid(2), [
        item("zsh", ["usr", "bin"], key="zsh2"),
        item("bash", ["bin"], key="bash2"),
        item("bashtop", ["usr", "bin"]),
        item("ubuntu-24.04-desktop.iso", ["isos"], size=5 * 2**30),
    ], title="Ubuntu extras", weight=0.5)
    return ix


def test_ranking_order_fixed_corpus(ix):
    page = ix.search("bash", limit=50)
    # exact name first (weight 1 beats weight 0.5 for the same exact match), then name tokens, then
    # tags, then description only; ties by share id then in-share rank
    assert names(page) == ["bash", "bash", "bash-completion.sh", "bashrc.example", "libssl.so.3",
                           "Ünïcödé Notes.txt", "debian-12-amd64.iso"]
    s = [h.score for h in page.hits]
    assert s[0] == 72.0 and s[1] == 36.0 and s[2] == 8.0 and s[3] == 4.0 and s[4] == 2.0
    assert page.total == 7 and not page.total_is_estimate
    assert page.hits[0].share_id == sid(1) and page.hits[1].share_id == sid(2)


def test_field_hierarchy(twin):
    ix = twin.Index()
    ix.replace_share(sid(3), [item("alpha"), item("alpha beta"), item("alphabet"), item("x", ["alpha"])],
                     title="alpha things")
    ix.replace_share(sid(4), [item("y")], title="x", description="alpha")
    page = ix.search("alpha*", limit=10)
    assert names(page) == ["alpha", "alpha beta", "alphabet", "x", "y"]
    assert [h.score for h in page.hits] == [72.0, 8.0, 6.0, 4.0, 2.0]
    assert names(ix.search("alpha", limit=10)) == ["alpha", "alpha beta", "x", "alphabet", "y"]


def test_and_prefix_phrase_exclusion(ix):
    # "bash" is in share 1's description, so every item there matches it (DESCRIPTION points)
    assert set(names(ix.search("bash usr"))) == {"bash", "bashrc.example", "libssl.so.3"}
    assert set(names(ix.search("bash usr -example"))) == {"bash", "libssl.so.3"}
    assert names(ix.search("libssl.so.3")) == ["libssl.so.3"]
    assert ix.search("libssl.so.3").hits[0].score == 8 * 3 + 64
    assert set(names(ix.search("bas*"))) >= {"bash", "bashtop", "bash-completion.sh"}
    assert names(ix.search('"so 3"')) == ["libssl.so.3"]
    assert names(ix.search('"3 so"')) == []
    assert "bash-completion.sh" not in names(ix.search("bash -completion", limit=50))
    assert "bash-completion.sh" not in names(ix.search('bash -"bash completion"', limit=50))
    assert "bash" in names(ix.search('bash -"usr bin"', limit=50))  # two tags, not one phrase
    assert names(ix.search("unicode")) == ["Ünïcödé Notes.txt"]
    assert names(ix.search("ÜNICODE notes")) == ["Ünïcödé Notes.txt"]
    assert ix.search("nosuchthing").total == 0
    assert names(ix.search("bashto", typing=True)) == ["bashtop"]


def test_filters(ix):
    assert set(names(ix.search("ext:iso"))) == {"debian-12-amd64.iso", "ubuntu-24.04-desktop.iso"}
    assert names(ix.search("ext:iso size:>1G")) == ["ubuntu-24.04-desktop.iso"]
    assert names(ix.search("ext:iso size:<1G")) == ["debian-12-amd64.iso"]
    assert set(names(ix.search("tag:bin"))) == {"bash", "zsh", "bash", "bashtop"}
    assert set(names(ix.search("bash tag:usr"))) == {"bash", "bashrc.example", "libssl.so.3", "bashtop"} - {"bashtop"}
    assert names(ix.search("tag:x86_64-linux-gnu")) == ["libssl.so.3"]
    assert names(ix.search("tag:nope")) == []
    assert all(h.share_id == sid(2) for h in ix.search("bash share:" + sid(2).hex()[:6]).hits)
    assert ix.search("ext:doesnotexist").total == 0


def test_scope_trust_blocklist(ix):
    assert {h.share_id for h in ix.search("bash", scope=[sid(2)]).hits} == {sid(2)}
    ix.set_share_meta(sid(2), trust=TrustLevel.UNTRUSTED)
    assert {h.share_id for h in ix.search("bash").hits} == {sid(1)}
    assert sid(2) in {h.share_id for h in ix.search("bash", trust_levels=["untrusted"]).hits}
    ix.set_share_meta(sid(2), trust="normal")
    assert {h.share_id for h in ix.search("bash", blocklist=Blocklist(share_ids=frozenset([sid(1)]))).hits} == {sid(2)}
    page = ix.search("bash", blocklist=[cid("bash")], limit=50)
    assert cid("bash") not in {h.content_id for h in page.hits} and page.total == 6
    with pytest.raises(ValueError):
        ix.search("bash", trust_levels=["bogus"])


def test_weights_change_order(ix):
    ix.set_share_meta(sid(2), weight=3.0)
    assert ix.search("bash").hits[0].share_id == sid(2)


def test_pagination_stable_and_complete(ix):
    full = ix.search("usr* OR bin*".replace(" OR ", " "), limit=100)
    everything = ix.search("bash", limit=100).hits
    pages = [ix.search("bash", limit=2, offset=o).hits for o in range(0, 8, 2)]
    assert [h for p in pages for h in p] == list(everything)
    assert full.total == len(full.hits)
    with pytest.raises(ValueError):
        ix.search("bash", limit=20_000)


def test_snippets_highlight(ix):
    h = ix.search("libssl.so.3").hits[0]
    assert h.snippet == "[libssl].[so].[3]"
    h = ix.search("unicode").hits[0]
    assert h.snippet == "[Ünïcödé] Notes.txt"
    h = ix.search("x86*", highlight=("<b>", "</b>")).hits[0]
    assert h.snippet == "libssl.so.3 | <b>x86</b>_64-linux-gnu"
    assert h.mime is None and h.size == 600_000 and h.tags == ("usr", "lib", "x86_64-linux-gnu")


def test_replace_share_leaves_others_untouched(ix):
    before = ix.search("zsh OR bashtop".replace(" OR ", " ")).hits, ix.search("bashtop").hits, ix.search("zsh").hits
    other_before = [ix.search(q, limit=50) for q in ("bash", "iso", "usr*")]
    ix.replace_share(sid(1), [item("fish", ["usr", "bin"])], title="Debian base system")
    assert names(ix.search("fish")) == ["fish"]
    assert len(ix) == 5
    for q, pb in zip(("bash", "iso", "usr*"), other_before):
        after = ix.search(q, limit=50)
        assert [h for h in after.hits if h.share_id == sid(2)] == [h for h in pb.hits if h.share_id == sid(2)]
        assert all(h.share_id == sid(2) or h.name == "fish" for h in after.hits)
    assert ix.search("bashtop").hits == before[1] and ix.search("zsh").hits == before[2]
    assert ix.remove_share(sid(1)) and not ix.remove_share(sid(1))
    assert ix.search("fish").total == 0 and len(ix) == 4
    assert ix.share_ids() == [sid(2)]


def test_duplicates_and_bad_input(twin):
    ix = twin.Index()
    ix.replace_share(sid(5), [item("a"), item("a", key="a"), item("b")])
    assert len(ix) == 2
    with pytest.raises(SearchError):
        ix.replace_share(b"short", [])
    with pytest.raises(QueryError):
        ix.search('"open')


def test_duplicate_content_ids_first_wins_in_a_large_share(twin):
    """The first item of each content id is kept, in shares large enough that the native twin's
    duplicate table grows several times; content ids given as bytearray / memoryview count as
    the same bytes."""
    ix = twin.Index()
    items = [ItemV1(content_id=cid(f"k{i % 1700}"), size=i, name=f"n{i} file.txt", mime=None, tags=("d",))
             for i in range(3000)]
    items[2500] = ItemV1(content_id=bytearray(cid("k9")), size=1, name="late copy.txt", mime=None, tags=())
    items[2600] = ItemV1(content_id=memoryview(cid("fresh")), size=1, name="fresh one.txt", mime=None, tags=())
    ix.replace_share(sid(7), items)
    assert len(ix) == 1701
    assert ix.search("n1699").total == 1 and ix.search("n1700").total == 0
    assert ix.search("late").total == 0 and [h.name for h in ix.search("fresh").hits] == ["fresh one.txt"]
    assert [h.size for h in ix.search("n9").hits] == [9]


def test_compaction_keeps_results(twin):
    ix = twin.Index()
    for rnd in range(3):
        for s in range(4):
            ix.replace_share(sid(10 + s), [item(f"f{i} r{rnd} s{s}.txt", [f"d{i % 3}"], key=f"{i}{s}") for i in range(30)],
                             title=f"share {s}", weight=1 + s)
    queries = ["txt", "r2", "d1 f1*", "f2* -d2", "share 3"]
    before = [ix.search(q, limit=30) for q in queries]
    assert ix._st.ndead == 240
    ix.compact()
    assert ix._st.ndead == 0 and len(ix) == 120
    assert [ix.search(q, limit=30) for q in queries] == before


def test_persistence_round_trip(ix, twin, tmp_path):
    store = Store.open(tmp_path / "s.db")
    try:
        assert type(ix).load(store) is None
        gen = ix.save(store)
        assert gen > 0
        queries = ["bash", "iso", "usr*", "unicode", "ext:iso size:>1G", "bas*", '"so 3"']
        for cls in (twin.Index, _index_py.Index, Index):
            back = cls.load(store)
            assert len(back) == len(ix)
            for q in queries:
                assert back.search(q, limit=50) == ix.search(q, limit=50), q
            back.replace_share(sid(2), [item("zsh")])
            assert names(back.search("zsh")) == ["zsh"]
        assert ix.to_bytes() == twin.Index.from_bytes(ix.to_bytes()).to_bytes()
    finally:
        store.close()


@pytest.mark.parametrize("damage", [b"", b"nonsense", b"SCP2PIX1\xff\xff\xff\xff", "truncate", "flip"])
def test_damaged_image(twin, ix, damage):
    data = ix.to_bytes()
    if damage == "truncate":
        data = data[:-7]
    elif damage == "flip":
        data = data[:12] + b"[" + data[13:]
    else:
        data = damage
    with pytest.raises(IndexImageError):
        twin.Index.from_bytes(data)


def test_query_objects_accepted(ix):
    assert ix.search(parse_query("bash")) == ix.search("bash")


def test_early_stop_reports_estimate(twin):
    ix = twin.Index()
    for s in range(20):
        ix.replace_share(sid(30 + s), [item(f"pkg{s}-{i}.so", ["usr", "lib"], key=f"{s}/{i}") for i in range(50)])
    page = ix.search("usr", limit=5)
    assert len(page.hits) == 5 and page.total_is_estimate and page.total >= 1000
    assert [h.share_id for h in page.hits] == [sid(30)] * 5  # ties: smallest share id, then in-share rank
    full = ix.search("usr", limit=0)
    assert full.total == 1000 and not full.total_is_estimate and full.hits == ()


def test_automatic_merge_and_compaction(twin, monkeypatch):
    from scp2p.search import _base

    monkeypatch.setattr(_base, "MERGE_MIN", 10)
    monkeypatch.setattr(_base, "_COMPACT_MIN_DEAD", 10)
    ix = twin.Index()
    for rnd in range(4):
        for s in range(3):
            ix.replace_share(sid(60 + s), [item(f"r{rnd} f{i}.txt", ["d"], key=f"{s}.{i}") for i in range(8)])
    st = ix._st
    assert st.lists[0].ndelta < 200 and st.lists[0].poff[-1] > 0  # merged along the way
    assert st.ndead <= st.ndocs - st.ndead  # compacted along the way
    assert len(ix) == 24
    assert ix.search("r3", limit=50).total == 24 and ix.search("r0").total == 0


def test_tags_with_odd_characters_round_trip(twin):
    ix = twin.Index()
    odd = [("",), ("a\x00b",), ("\x01x", "y"), ("one",), ("two", "tags"), ()]
    ix.replace_share(sid(70), [item(f"f{i}", t, key=str(i)) for i, t in enumerate(odd)])
    back = twin.Index.from_bytes(ix.to_bytes())
    for i, t in enumerate(odd):
        assert back.search(f"f{i}").hits[0].tags == t


def _merged(L):
    """A posting set's merged part in memory (the native twin keeps post / blk on disk)."""
    if getattr(L, "disk", None) is not None:
        L.post, L.blk = L.disk.read_all()
        L.disk = None
    return L


def _doc_share(st):
    """doc_share as an array the image is written from (the native twin keeps it as share runs)."""
    if "doc_share" not in vars(st):
        st.doc_share = st.section("doc_share")
    return st.doc_share


@pytest.mark.parametrize("mutate", [
    lambda st: _merged(st.lists[0]).post.__setitem__(0, 10**6),
    lambda st: st.fwd.__setitem__(0, 10**6),
    lambda st: _doc_share(st).__setitem__(0, 99),
    lambda st: _merged(st.lists[0]).blk.__setitem__(1, 7),
    lambda st: st.fwd_off.__setitem__(1, 10**6),
    lambda st: st.ts_toks.__setitem__(0, 10**6),
])
def test_out_of_range_ids_rejected_on_load(twin, mutate):
    ix = twin.Index()
    ix.replace_share(sid(80), [item("alpha beta.txt", ["usr", "doc"]), item("gamma", ["x"])])
    ix._maybe_merge(force=True)
    mutate(ix._st)
    data = b"".join(bytes(p) for p in __import__("scp2p.search._base", fromlist=["_image"])._image(ix._st))
    with pytest.raises(IndexImageError):
        twin.Index.from_bytes(data)


def test_doc_dir_round_trip_and_compaction(twin, tmp_path, monkeypatch):
    """The native twin keeps content ids, names and mimes in an on-disk document store in
    ``doc_dir``; hits, blocklists, images and compaction read them back."""
    from scp2p.search import _base

    monkeypatch.setattr(_base, "_COMPACT_MIN_DEAD", 10)
    ix = twin.Index(doc_dir=tmp_path)
    ix.replace_share(sid(90), [item("Ünïcödé notes.txt", ["doc"], mime="text/plain"), item("beta.bin", ["x"])])
    ix.replace_share(sid(91), [item(f"gamma {i}.so", ["lib"], key=f"g{i}") for i in range(30)])
    page = ix.search("unicode")
    assert [(h.name, h.mime, h.content_id) for h in page.hits] == [("Ünïcödé notes.txt", "text/plain", cid("Ünïcödé notes.txt"))]
    assert ix.search("beta", blocklist=[cid("beta.bin")]).hits == ()
    back = twin.Index.from_bytes(ix.to_bytes(), doc_dir=tmp_path)
    assert back.to_bytes() == ix.to_bytes() and back.search("gamma", limit=50) == ix.search("gamma", limit=50)
    for rnd in range(2):  # dead items outnumber live ones: compacted, the store rebuilt
        back.replace_share(sid(91), [item(f"gamma {i}.so", ["lib"], key=f"r{rnd}.{i}") for i in range(30)])
    assert back._st.ndead == 0 and [h.name for h in back.search("notes").hits] == ["Ünïcödé notes.txt"]
    big = [item("big.iso", size=5 << 30), item("edge.iso", size=(1 << 32) - 1), item("small.iso", size=3 << 30)]
    back.replace_share(sid(93), big)  # sizes of 4 GiB and more: exact in hits and in size filters
    assert {h.name: h.size for h in back.search("iso", limit=5).hits} == {"big.iso": 5 << 30, "edge.iso": (1 << 32) - 1,
                                                                          "small.iso": 3 << 30}
    assert [h.name for h in back.search("iso size:>4G").hits] == ["big.iso"]
    assert sorted(h.name for h in back.search("iso size:<4G").hits) == ["edge.iso", "small.iso"]
    assert [h.name for h in back.search(f"iso size:={(1 << 32) - 1}").hits] == ["edge.iso"]
    again = twin.Index.from_bytes(back.to_bytes())
    assert again.to_bytes() == back.to_bytes() and again.search("iso size:>4G").hits[0].size == 5 << 30
    with pytest.raises(SearchError):
        ix.replace_share(sid(92), [SimpleNamespace(content_id=b"short", size=1, name="x", mime=None, tags=())])


def test_hit_records_read_in_runs_match_the_pure_twin(twin, tmp_path):
    """A page's hit records are read a run of nearby records at a time (native): hits spread
    over shares far apart in the document store and hits side by side in one share come back
    with their own names, content ids, sizes and mimes, the same as the pure twin's."""
    ref = _index_py.Index()
    ix = twin.Index(doc_dir=tmp_path)
    for s in range(12):  # ~300 records a share: shares lie tens of KiB apart in the store
        items = [item(f"{'needle' if i % 97 == s else 'hay'} {s}-{i} {'x' * (i % 40)}.dat", ["t"],
                      size=s * 1000 + i, mime=f"a/{i % 3}") for i in range(300)]
        for target in (ix, ref):
            target.replace_share(sid(s + 1), items)
    for q, limit in (("needle", 50), ("hay 3", 200), ("dat", 500)):
        got, want = ix.search(q, limit=limit), ref.search(q, limit=limit)
        assert len(got.hits) > 1
        assert [(h.name, h.content_id, h.size, h.mime) for h in got.hits] == \
            [(h.name, h.content_id, h.size, h.mime) for h in want.hits]


def test_node_puts_the_document_store_beside_the_database(tmp_path):
    from scp2p.node.indexing import index_doc_dir, load_index

    with Store.open(tmp_path / "node.db") as store:
        assert index_doc_dir(store) == str(tmp_path)
        index, seqs, changed = load_index(store)
        assert len(index) == 0 and seqs == {} and not changed
    assert index_doc_dir(object()) is None
