"""Property tests over every record: round trips, twin agreement, decoders that only raise Scp2pError."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scp2p.errors import Scp2pError
from scp2p.wire import codec as selected

from helpers import FUZZ_EXAMPLES, SEEDED_MUTATIONS, TWIN_MODULES, load_twin, twin_names
from strategies import RECORD_CLASSES, mutated, random_mutation, random_record, record_strategy

TWINS = [load_twin(name) for name in twin_names()]
NAMES = [c.__name__ for c in RECORD_CLASSES]


def _outcome(twin, cls, data):
    """What a twin makes of ``data``: ("ok", record) or ("error", class, path). Anything else fails the test."""
    try:
        return ("ok", twin.decode(cls, data))
    except Scp2pError as exc:
        return ("error", type(exc), getattr(exc, "path", None))


def _agree(cls, data):
    outcomes = [_outcome(t, cls, data) for t in TWINS]
    assert all(o == outcomes[0] for o in outcomes), f"twins disagree on {data.hex()}: {outcomes}"
    return outcomes[0]


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=NAMES)
def test_roundtrip_and_twins_identical(cls):
    @given(record_strategy(cls))
    def check(rec):
        encoded = [t.encode(rec) for t in TWINS]
        assert all(e == encoded[0] for e in encoded), "twins encode differently"
        for t in TWINS:
            assert t.decode(cls, encoded[0], 1 << 30) == rec
        # signing forms agree too
        n = len(cls.__wire_fields__)
        forms = [t.encode_signing(rec, n, True) for t in TWINS] + [t.encode_signing(rec, n, False) for t in TWINS]
        assert all(f == forms[0] for f in forms[: len(TWINS)])
        assert all(f == forms[len(TWINS)] for f in forms[len(TWINS) :])

    check()


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=NAMES)
def test_random_bytes_only_raise_scp2p_errors(cls):
    @settings(max_examples=FUZZ_EXAMPLES)
    @given(st.binary(max_size=200))
    def check(data):
        _agree(cls, data)

    check()


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=NAMES)
def test_mutated_encodings_only_raise_scp2p_errors(cls):
    @given(st.data())
    def check(data):
        rec = data.draw(record_strategy(cls))
        damaged = data.draw(mutated(selected.encode(rec)))
        outcome = _agree(cls, damaged)
        if outcome[0] == "ok":  # whatever decodes must re-encode to a form that decodes the same
            for t in TWINS:
                assert t.decode(cls, t.encode(outcome[1]), 1 << 30) == outcome[1]

    check()


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=NAMES)
def test_seeded_mutations_only_raise_scp2p_errors(cls):
    """SEEDED_MUTATIONS damaged encodings per decoder from a seeded generator (fast; hypothesis adds ~1 ms each)."""
    rng = random.Random(f"scp2p-{cls.__name__}")
    corpus = [selected.encode(random_record(cls, rng)) for _ in range(64)]
    decoded = 0
    for _ in range(SEEDED_MUTATIONS):
        outcome = _agree(cls, random_mutation(rng.choice(corpus), rng))
        decoded += outcome[0] == "ok"
    assert decoded < SEEDED_MUTATIONS  # the mutations do produce rejections


def test_twin_modules_listed():
    assert set(twin_names()) <= set(TWIN_MODULES)
