"""JSON forms of records, as used by the conformance vectors and ``--json`` output.

Fixed-size byte values are lists of ints (their CBOR shape), byte strings are
``{"$bytes": hex}``, IP addresses ``{"V4": [...]}`` / ``{"V6": [...]}``, enums their text.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..errors import EncodeError
from .schema import BOOL, BYTES, ENUM, FIXED, IP, LIST, RECORD, TEXT, UINT, Field, fields_of


def to_json(obj: Any) -> dict:
    """A record as its JSON form."""
    return {f.name: _to(f, getattr(obj, f.name)) for f in fields_of(type(obj))}


def _to(f: Field, v: Any) -> Any:
    if v is None:
        return None
    k = f.kind
    if k == FIXED:
        return list(v)
    if k == BYTES:
        return {"$bytes": bytes(v).hex()}
    if k == LIST:
        return [_to(f.elem, x) for x in v]
    if k == RECORD:
        return to_json(v)
    if k == ENUM:
        return v.value
    if k == IP:
        return {"V4" if v.version == 4 else "V6": list(v.packed)}
    return v


def from_json(cls: type, data: dict) -> Any:
    """Build a record from its JSON form (validating it); unknown keys are an error here."""
    if not isinstance(data, dict):
        raise EncodeError(f"{cls.__name__} JSON form must be an object")
    fields = fields_of(cls)
    extra = set(data) - {f.name for f in fields}
    if extra:
        raise EncodeError(f"unknown keys {sorted(extra)}", path=cls.__name__)
    kwargs = {}
    for f in fields:
        if f.name not in data and not f.nullable:
            raise EncodeError("missing", path=f"{cls.__name__}.{f.name}")
        kwargs[f.name] = _from(f, data.get(f.name))
    return cls(**kwargs)


def _from(f: Field, v: Any) -> Any:
    if v is None:
        return None
    k = f.kind
    try:
        if k == FIXED:
            if isinstance(v, str):
                return bytes.fromhex(v)
            return bytes(v)
        if k == BYTES:
            return bytes.fromhex(v["$bytes"]) if isinstance(v, dict) else bytes.fromhex(v)
        if k == LIST:
            return tuple(_from(f.elem, x) for x in v)
        if k == RECORD:
            return from_json(f.record, v)
        if k == ENUM:
            return f.enum(v)
        if k == IP:
            (fam, raw), = v.items()
            return ipaddress.ip_address(bytes(raw)) if fam in ("V4", "V6") else _bad(f, v)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        if isinstance(exc, EncodeError):
            raise
        raise EncodeError(f"bad JSON value {v!r}: {exc}", path=f.name) from None
    if k in (UINT, BOOL, TEXT):
        return v
    raise TypeError(f"unknown field kind {k}")  # pragma: no cover


def _bad(f: Field, v: Any):
    raise EncodeError(f"bad JSON value {v!r}", path=f.name)
