"""The ranking formula: the ONE place its numbers live (both index twins import them).

For an item *d* in share *s* and a query with terms t1..tn (all required)::

    c(t, d)  = the best field in which t matches d:
               NAME         t is a token of d's name (for a prefix term: a name token equals it)
               NAME_PREFIX  a prefix term that starts a (longer) name token
               TAG          t is (starts, for a prefix term) a token of one of d's tags
               TITLE        ... of the share's title
               DESCRIPTION  ... of the share's description
    raw(d)   = sum of c(t, d)  +  EXACT_NAME if d's name tokens are exactly t1..tn, in order
    score(d) = raw(d) * wq(s)      wq(s) = round(weight(s) * WEIGHT_SCALE), weight clamped to [0, MAX_WEIGHT]

Integers throughout, so the native and pure twins agree bit for bit. ``Hit.score`` is
``score / WEIGHT_SCALE``. Order: score descending, then the share id ascending, then the
item's rank inside its share (fewer name tokens first, then name, then content id) -- a total,
deterministic order, so pagination is stable while the index is unchanged.

Early termination (top-k without scoring every match): a share's items occupy one contiguous
doc-id run, so each posting list carries a *block table* (one entry per share run with the OR
of the field flags there). The upper bound of a share is ``(sum over terms of the best field
present in that share's blocks + EXACT_NAME if an exact-name item is in it) * wq(s)``. Shares
are visited in descending bound order (ties: share id ascending, matching the tie-break) and the
search stops once the k-th best score beats the next share's bound -- block-max in spirit, with a
share as the block. See docs/search.md for measurements.
"""

from __future__ import annotations

EXACT_NAME = 64
NAME = 8
NAME_PREFIX = 6
TAG = 4
TITLE = 3
DESCRIPTION = 2

WEIGHT_SCALE = 1000
MAX_WEIGHT = 1000.0

#: postings flags (block tables): the term occurs in a name / in a tag inside that block
FLAG_NAME = 1
FLAG_TAG = 2

#: strict-prefix posting lists are kept for prefixes of these lengths; other prefix
#: lengths are expanded through the sorted term dictionary
PREFIX_LIST_LENGTHS = (3, 4)


def quantize_weight(weight: float) -> int:
    """The integer share weight used in scores."""
    w = float(weight)
    if not w == w or w <= 0.0:  # NaN or non-positive
        return 0
    return int(round(min(w, MAX_WEIGHT) * WEIGHT_SCALE))


def field_points(flags: int, strict_prefix: bool) -> int:
    """The best contribution a block with these flags can give (for bounds)."""
    if flags & FLAG_NAME:
        return NAME_PREFIX if strict_prefix else NAME
    if flags & FLAG_TAG:
        return TAG
    return 0
