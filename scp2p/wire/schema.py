"""Field schemas: the one description of every v0.1 record that both codec twins interpret.

A record is a frozen slotted dataclass decorated with :func:`wire_record`, which
attaches its fields (in wire order, PROTOCOL.md section 2) as ``__wire_fields__``.
The codec twins (``_codec_py`` and the Cython ``_codec_c``) read these
descriptions; neither has per-record code, so a rule is written once.

Field kinds and their Python values:

========  ==============================================  =====================
kind      wire form                                       Python value
========  ==============================================  =====================
UINT      unsigned int, shortest form; ``size`` = max     ``int``
BOOL      ``true`` / ``false``                            ``bool``
TEXT      UTF-8 text                                      ``str``
FIXED     array of ``size`` uints 0..255 (a byte string   ``bytes``
          of that length is accepted when decoding)
BYTES     byte string, at most ``size`` bytes             ``bytes``
LIST      array of ``elem``, at most ``size`` (0: any)    ``tuple``
RECORD    map of the ``record`` class                     instance
ENUM      lowercase text, a value of ``enum``             enum member
IP        ``{"V4": [4 uints]}`` or ``{"V6": [16 uints]}`` ``ipaddress`` object
========  ==============================================  =====================

``nullable`` fields encode ``None`` as CBOR null; when decoding, a nullable key
that is absent also reads as ``None`` (as serde's ``Option`` does).

``repeats`` is a decoding hint, not part of the wire form: the field's TEXT values
come from a small set (mime types, tags), so the native decoder may hand out one
shared ``str`` for equal values instead of a new one each time (the values are
equal either way; the pure twin ignores the hint).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import EncodeError
from ..limits import U8_MAX, U16_MAX, U32_MAX, U64_MAX

UINT = 1
BOOL = 2
TEXT = 3
FIXED = 4
BYTES = 5
LIST = 6
RECORD = 7
ENUM = 8
IP = 9

KIND_NAMES = {
    UINT: "unsigned integer",
    BOOL: "bool",
    TEXT: "text",
    FIXED: "byte array",
    BYTES: "byte string",
    LIST: "array",
    RECORD: "map",
    ENUM: "enum text",
    IP: "IP address",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a record, in wire order."""

    name: str
    kind: int
    size: int = 0
    nullable: bool = False
    elem: "Field | None" = None
    record: type | None = None
    enum: type | None = None
    repeats: bool = False

    @property
    def key(self) -> bytes:
        return self.name.encode()


# ----------------------------------------------------------------------------- builders
def u8(name: str) -> Field:
    return Field(name, UINT, U8_MAX)


def u16(name: str) -> Field:
    return Field(name, UINT, U16_MAX)


def u32(name: str) -> Field:
    return Field(name, UINT, U32_MAX)


def u64(name: str) -> Field:
    return Field(name, UINT, U64_MAX)


def boolean(name: str) -> Field:
    return Field(name, BOOL)


def text(name: str) -> Field:
    return Field(name, TEXT)


def fixed(name: str, length: int) -> Field:
    return Field(name, FIXED, length)


def bytestr(name: str, max_len: int) -> Field:
    return Field(name, BYTES, max_len)


def list_of(name: str, elem: Field, max_count: int = 0) -> Field:
    return Field(name, LIST, max_count, elem=elem)


def record(name: str, cls: type) -> Field:
    return Field(name, RECORD, record=cls)


def enum_text(name: str, cls: type[enum.Enum]) -> Field:
    return Field(name, ENUM, enum=cls)


def ip(name: str) -> Field:
    return Field(name, IP)


def opt(f: Field) -> Field:
    return dataclasses.replace(f, nullable=True)


def repeating(f: Field) -> Field:
    """Mark a TEXT field whose values repeat often (see the module docstring)."""
    if f.kind != TEXT:
        raise TypeError(f"only text fields can be marked repeating, not {KIND_NAMES[f.kind]}")
    return dataclasses.replace(f, repeats=True)


# ----------------------------------------------------------------------------- records
def wire_record(*fields: Field, max_size: int) -> Callable[[type], type]:
    """Attach wire fields (and the default decode size limit) to a frozen slotted dataclass.

    The dataclass fields must be exactly the wire fields, in the same order.
    """

    def attach(cls: type) -> type:
        names = tuple(f.name for f in dataclasses.fields(cls))
        if names != tuple(f.name for f in fields):
            raise TypeError(f"{cls.__name__}: dataclass fields {names} differ from wire fields")
        cls.__wire_fields__ = tuple(fields)
        cls.__wire_max__ = max_size
        return cls

    return attach


def fields_of(cls: type) -> tuple[Field, ...]:
    try:
        return cls.__wire_fields__
    except AttributeError:
        raise TypeError(f"{cls!r} is not a wire record") from None


def is_record(obj: Any) -> bool:
    return hasattr(type(obj), "__wire_fields__")


_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def normalize(obj: Any) -> None:
    """Validate a freshly constructed record and normalise its values in place.

    Called from ``__post_init__``: lists become tuples, ``bytearray``/``memoryview``
    become ``bytes``, IP text becomes an ``ipaddress`` object, enum text becomes the
    member. Raises :class:`EncodeError` naming the field when a value cannot be sent.
    (The decoders build records without this step: they have already checked.)
    """
    cls = type(obj)
    for f in fields_of(cls):
        value = getattr(obj, f.name)
        new = _check(f, value, f"{cls.__name__}.{f.name}")
        if new is not value:
            object.__setattr__(obj, f.name, new)


def _check(f: Field, value: Any, where: str) -> Any:
    if value is None:
        if f.nullable:
            return None
        raise EncodeError(f"{where} must not be None")
    kind = f.kind
    if kind == UINT:
        if type(value) is bool or not isinstance(value, int):
            raise EncodeError(f"{where} must be an int, not {type(value).__name__}")
        if not 0 <= value <= f.size:
            raise EncodeError(f"{where}={value} is outside 0..{f.size}")
        return value
    if kind == BOOL:
        if not isinstance(value, bool):
            raise EncodeError(f"{where} must be a bool, not {type(value).__name__}")
        return value
    if kind == TEXT:
        if not isinstance(value, str):
            raise EncodeError(f"{where} must be str, not {type(value).__name__}")
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise EncodeError(f"{where} is not encodable as UTF-8: {exc}") from None
        return value
    if kind in (FIXED, BYTES):
        if isinstance(value, (bytearray, memoryview)):
            value = bytes(value)
        if not isinstance(value, bytes):
            raise EncodeError(f"{where} must be bytes, not {type(value).__name__}")
        if kind == FIXED and len(value) != f.size:
            raise EncodeError(f"{where} must be {f.size} bytes, got {len(value)}")
        if kind == BYTES and len(value) > f.size:
            raise EncodeError(f"{where} is {len(value)} bytes, limit {f.size}")
        return value
    if kind == LIST:
        if isinstance(value, (str, bytes, bytearray)) or not hasattr(value, "__iter__"):
            raise EncodeError(f"{where} must be a sequence, not {type(value).__name__}")
        items = tuple(value)
        if f.size and len(items) > f.size:
            raise EncodeError(f"{where} has {len(items)} entries, limit {f.size}")
        elem = f.elem
        if elem.kind == RECORD:
            for i, item in enumerate(items):
                if not isinstance(item, elem.record):
                    raise EncodeError(f"{where}[{i}] must be {elem.record.__name__}")
            return items  # ``tuple(t) is t`` for a tuple: unchanged values stay as they are
        return tuple(_check(elem, item, f"{where}[{i}]") for i, item in enumerate(items))
    if kind == RECORD:
        if not isinstance(value, f.record):
            raise EncodeError(f"{where} must be {f.record.__name__}, not {type(value).__name__}")
        return value
    if kind == ENUM:
        if isinstance(value, f.enum):
            return value
        try:
            return f.enum(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in f.enum)
            raise EncodeError(f"{where}={value!r} is not one of {allowed}") from None
    if kind == IP:
        if isinstance(value, _IP_TYPES):
            return value
        try:
            return ipaddress.ip_address(value)
        except ValueError as exc:
            raise EncodeError(f"{where}: {exc}") from None
    raise TypeError(f"unknown field kind {kind}")  # a schema bug, not input
