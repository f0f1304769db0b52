"""Text normalisation shared by items and queries (the pure reference; the native
twin in ``_native/search.pyx`` takes an ASCII fast path and calls back here otherwise).

``normalize(s)``: NFKC, case folding, diacritics removed (NFD, drop combining marks),
so ``unicode`` matches ``Ünïcödé`` as SQLite's unicode61 does. ``tokenize(s)`` splits the
normalised text on every character that is not alphanumeric; a file extension is therefore
its own token (``Foo.TAR.gz`` -> ``foo``, ``tar``, ``gz``).
"""

from __future__ import annotations

import re
import unicodedata

_ASCII_TOKEN = re.compile(r"[A-Za-z0-9]+")

#: tokens longer than this are cut (a pathological name must not bloat the dictionary)
MAX_TOKEN_CHARS = 64
#: at most this many tokens are indexed per field value
MAX_TOKENS_PER_FIELD = 64


def normalize(text: str) -> str:
    """NFKC + casefold + diacritics removed (the result is NFC)."""
    if text.isascii():
        return text.lower()
    s = unicodedata.normalize("NFKC", text).casefold()
    s = unicodedata.normalize("NFD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", s)


def tokenize(text: str) -> list[str]:
    """Normalised tokens of ``text`` (split on non-alphanumerics, capped in length and number)."""
    out: list[str] = []
    cur: list[str] = []
    for c in normalize(text):
        if c.isalnum():
            cur.append(c)
        elif cur:
            out.append("".join(cur)[:MAX_TOKEN_CHARS])
            cur = []
            if len(out) >= MAX_TOKENS_PER_FIELD:
                return out
    if cur and len(out) < MAX_TOKENS_PER_FIELD:
        out.append("".join(cur)[:MAX_TOKEN_CHARS])
    return out


def extension(name: str) -> str:
    """The normalised file extension (the last token after a final '.'), or ``""``."""
    dot = name.rfind(".")
    if dot <= 0 or dot == len(name) - 1:
        return ""
    toks = tokenize(name[dot + 1 :])
    return toks[0] if len(toks) == 1 else ""


def token_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, token) for each token, with offsets into the *original* ``text`` (for highlighting)."""
    if text.isascii():
        return [(m.start(), m.end(), m.group().lower()[:MAX_TOKEN_CHARS]) for m in _ASCII_TOKEN.finditer(text)]
    spans: list[tuple[int, int, str]] = []
    start = -1
    buf: list[str] = []
    for i, ch in enumerate(text):
        norm = normalize(ch)
        if norm and all(c.isalnum() for c in norm):
            if start < 0:
                start = i
            buf.append(norm)
        elif start >= 0:
            spans.append((start, i, "".join(buf)[:MAX_TOKEN_CHARS]))
            start, buf = -1, []
    if start >= 0:
        spans.append((start, len(text), "".join(buf)[:MAX_TOKEN_CHARS]))
    return spans
