"""Query language (parsed in Python for both twins; the parse is tiny next to the search).

    word           required term (all terms are ANDed); matched in name, tags, title, description
    word*          prefix term
    "two words"    phrase: the tokens must be consecutive (in the name, one tag, the title or description)
    a.b.c          a word that normalises to several tokens is a phrase of them
    -word, -"a b"  exclusion
    tag:x          the item has the tag (token sequence) x
    ext:iso        the item's extension (several ext: filters mean any of them)
    share:0a1b     the share id starts with this hex prefix (several: any of them)
    size:>10M      size filter, operators > >= < <= =, units k M G T (powers of 1024)

``typing=True`` makes the last plain word a prefix term (search-as-you-type) when it has at
least ``MIN_TYPING_PREFIX`` characters and the query does not end in a space.
Malformed input raises :class:`~scp2p.errors.QueryError` with the character position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import QueryError
from .text import tokenize

MAX_QUERY_CHARS = 1024
MAX_TERMS = 16
MIN_TYPING_PREFIX = 3

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^(>=|<=|>|<|=)?(\d+(?:\.\d+)?)([kKmMgGtTbB]?)(?:i?[bB])?$")
_FIELDS = ("tag", "ext", "share", "size")


@dataclass(frozen=True, slots=True)
class Term:
    text: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    terms: tuple[Term, ...] = ()
    #: (first, last+1) index ranges into ``terms`` that must be consecutive
    phrases: tuple[tuple[int, int], ...] = ()
    excludes: tuple[tuple[str, ...], ...] = ()
    tags: tuple[tuple[str, ...], ...] = ()
    exts: tuple[str, ...] = ()
    shares: tuple[str, ...] = ()
    size_min: int | None = None
    size_max: int | None = None

    @property
    def empty(self) -> bool:
        return not (self.terms or self.tags or self.exts or self.shares or self.size_min is not None
                    or self.size_max is not None)


def _parse_size(value: str, pos: int) -> tuple[int | None, int | None]:
    m = _SIZE_RE.match(value)
    if not m:
        raise QueryError(f"bad size filter {value!r} (try size:>10M)", pos)
    op, num, unit = m.group(1) or "=", m.group(2), m.group(3).lower()
    n = int(float(num) * _UNITS[unit])
    return {">": (n + 1, None), ">=": (n, None), "<": (None, n - 1), "<=": (None, n), "=": (n, n)}[op]


def _lex(q: str):
    """(position, negated, quoted, text) per clause."""
    i, n = 0, len(q)
    while i < n:
        if q[i].isspace():
            i += 1
            continue
        start = i
        neg = False
        if q[i] == "-" and i + 1 < n and not q[i + 1].isspace():
            neg = True
            i += 1
        if q[i] == '"':
            end = q.find('"', i + 1)
            if end < 0:
                raise QueryError("unterminated quote", i)
            yield start, neg, True, q[i + 1 : end], end + 1
            i = end + 1
            continue
        j = i
        while j < n and not q[j].isspace():
            if q[j] == '"':
                if j == i or q[j - 1] != ":":
                    raise QueryError("quote inside a word", j)
                end = q.find('"', j + 1)  # field:"quoted value"
                if end < 0:
                    raise QueryError("unterminated quote", j)
                j = end
            j += 1
        yield start, neg, False, q[i:j], j
        i = j


def parse_query(q: str, *, typing: bool = False) -> Query:
    if not isinstance(q, str):
        raise QueryError("query must be a string", 0)
    if len(q) > MAX_QUERY_CHARS:
        raise QueryError(f"query longer than {MAX_QUERY_CHARS} characters", MAX_QUERY_CHARS)
    terms: list[Term] = []
    phrases: list[tuple[int, int]] = []
    excludes, tags, exts, shares = [], [], [], []
    smin: int | None = None
    smax: int | None = None
    clauses = list(_lex(q))
    last_plain = None
    for idx, (pos, neg, quoted, text, end) in enumerate(clauses):
        if not quoted and ":" in text and text.split(":", 1)[0].lower() in _FIELDS:
            field, value = text.split(":", 1)
            field = field.lower()
            vpos = pos + len(field) + 1 + (1 if neg else 0)
            if neg:
                raise QueryError(f"'-' cannot negate a {field}: filter", pos)
            if not value:
                raise QueryError(f"empty {field}: filter", vpos)
            if field == "size":
                lo, hi = _parse_size(value, vpos)
                if lo is not None:
                    smin = lo if smin is None else max(smin, lo)
                if hi is not None:
                    smax = hi if smax is None else min(smax, hi)
            elif field == "share":
                v = value.lower()
                if not re.fullmatch(r"[0-9a-f]{1,64}", v):
                    raise QueryError("share: takes a hex share id (prefix)", vpos)
                shares.append(v)
            else:
                toks = tokenize(value.strip('"'))
                if not toks:
                    raise QueryError(f"{field}: filter has no searchable characters", vpos)
                if field == "ext":
                    exts.append(toks[-1])
                else:
                    tags.append(tuple(toks))
            continue
        star = not quoted and text.endswith("*")
        toks = tokenize(text)
        if not toks:
            continue
        if neg:
            excludes.append(tuple(toks))
            continue
        first = len(terms)
        for k, t in enumerate(toks):
            terms.append(Term(t, prefix=star and k == len(toks) - 1))
        if len(toks) > 1:
            phrases.append((first, len(terms)))
        if not quoted and not star and idx == len(clauses) - 1 and end == len(q):
            last_plain = len(terms) - 1
        if len(terms) > MAX_TERMS:
            raise QueryError(f"more than {MAX_TERMS} search terms", pos)
    if typing and last_plain is not None and len(terms[last_plain].text) >= MIN_TYPING_PREFIX:
        terms[last_plain] = Term(terms[last_plain].text, prefix=True)
    return Query(tuple(terms), tuple(phrases), tuple(excludes), tuple(tags), tuple(exts), tuple(shares), smin, smax)
