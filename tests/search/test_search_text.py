"""Tokenizer and query parser."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from scp2p.errors import QueryError
from scp2p.search.query import MAX_TERMS, Term, parse_query
from scp2p.search.text import extension, normalize, token_spans, tokenize as pure_tokenize


def test_tokenizer_cases(twin):
    tok = twin.tokenize
    assert tok("Ünïcödé-File_v2.TAR.gz") == ["unicode", "file", "v2", "tar", "gz"]
    assert tok("ﬁle Ⅻ straße") == ["file", "xii", "strasse"]
    assert tok("libssl.so.3") == ["libssl", "so", "3"]
    assert tok("") == [] and tok("--..") == []
    assert tok("x" * 100) == ["x" * 64]
    assert len(tok(" ".join(["a"] * 100))) == 64
    assert tok("日本語のファイル.txt") == ["日本語のファイル", "txt"]


def test_normalisation_matches_unicode61_style():
    assert normalize("ÜNÏCÖDÉ") == "unicode"
    assert pure_tokenize("Ünïcödé") == pure_tokenize("unicode")
    assert extension("a.tar.GZ") == "gz" and extension("README") == "" and extension("x.") == ""
    assert token_spans("Ünï cöd") == [(0, 3, "uni"), (4, 7, "cod")]


@given(st.text(max_size=80))
def test_tokenizer_twins_agree(twin, text):
    assert twin.tokenize(text) == pure_tokenize(text)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=200))
def test_tokenizer_twins_agree_ascii(twin, text):
    assert twin.tokenize(text) == pure_tokenize(text)


def test_parse_features():
    q = parse_query('libssl.so.3 -debug "foo bar" tag:Docs ext:ISO size:>10M lib* share:0A')
    assert [t.text for t in q.terms] == ["libssl", "so", "3", "foo", "bar", "lib"]
    assert q.terms[-1] == Term("lib", True)
    assert q.phrases == ((0, 3), (3, 5))
    assert q.excludes == (("debug",),) and q.tags == (("docs",),) and q.exts == ("iso",)
    assert q.size_min == 10 * 2**20 + 1 and q.size_max is None and q.shares == ("0a",)
    assert parse_query("size:<=1k size:>=10").size_max == 1024
    assert parse_query("size:=5").size_min == 5 == parse_query("size:5").size_max


def test_typing_makes_last_word_a_prefix():
    assert parse_query("pyth", typing=True).terms == (Term("pyth", True),)
    assert parse_query("pyth ", typing=True).terms == (Term("pyth", False),)
    assert parse_query("py", typing=True).terms == (Term("py", False),)
    assert parse_query("pyth", typing=False).terms == (Term("pyth", False),)
    assert parse_query('"pyth"', typing=True).terms == (Term("pyth", False),)


@pytest.mark.parametrize("q,pos", [('a "b', 2), ("size:>x", 5), ("size:", 5), ("share:zz", 6),
                                    ("-tag:x", 0), ('ab"c', 2), ("x" * 2000, 1024), ("tag:--", 4)])
def test_query_errors_have_positions(q, pos):
    with pytest.raises(QueryError) as ei:
        parse_query(q)
    assert ei.value.position == pos
    assert isinstance(ei.value, ValueError)


def test_too_many_terms():
    with pytest.raises(QueryError):
        parse_query(" ".join(f"t{i}" for i in range(MAX_TERMS + 1)))


def test_unknown_field_is_text_and_junk_is_ignored():
    assert [t.text for t in parse_query("c:foo").terms] == ["c", "foo"]
    assert parse_query("-- * !!").empty


def test_native_search_twin_is_live():
    from scp2p import _accel
    from scp2p.search import IMPLEMENTATION

    expected = "scp2p.search._index_py" if _accel.NO_EXTENSIONS else "scp2p.search._index_c"
    assert IMPLEMENTATION == expected
