"""Pure-Python CBOR codec twin: the reference for ``_native/codec.pyx``.

API (identical in both twins)::

    encode(obj) -> bytes                                  # record -> wire map
    decode(cls, data, max_size=None) -> obj               # whole input; None = cls default limit
    encode_signing(obj, nfields, nested_arrays) -> bytes  # positional-array signing forms

Decoding rules, in the order both twins apply them (so both raise the same error
type for the same bytes):

1. ``len(data) > max_size`` -> LimitExceeded, before anything is read.
2. Heads: info 28-30 -> MalformedCbor; info 31 (indefinite length / break) ->
   MalformedCbor; a head running past the end -> TruncatedInput. Integers in
   non-shortest form are accepted.
3. A record is a map (else WrongType); ``count * 2 > remaining`` -> TruncatedInput.
   Each key must be text (else WrongType) and fit (else TruncatedInput). A known
   key seen twice -> DuplicateKey; unknown keys are skipped (any well-formed
   definite-length item, nesting at most MAX_NESTING, else LimitExceeded), a
   repeated unknown key -> DuplicateKey. After the map, the first absent
   non-nullable field in schema order -> MissingField; absent nullable -> None.
4. Field values: a nullable field takes ``null`` (0xf6) as None, then by kind:
   UINT: major 0 else (major 1 -> IntOutOfRange, other -> WrongType); above max -> IntOutOfRange.
   BOOL: 0xf4 / 0xf5 else WrongType.
   TEXT: major 3 else WrongType; length past end -> TruncatedInput; bad UTF-8 -> MalformedCbor.
   FIXED: array: count != size -> WrongLength, then each element a UINT <= 255;
          byte string: length != size -> WrongLength, past end -> TruncatedInput; else WrongType.
   BYTES: major 2 else WrongType; length > size -> LimitExceeded; past end -> TruncatedInput.
   LIST: major 4 else WrongType; count > size (when size) -> LimitExceeded;
         count > remaining -> TruncatedInput; then the elements.
   RECORD: as 3.   ENUM: text (as TEXT), not a known value -> InvalidValue.
   IP: a map (else WrongType) of exactly one entry (else InvalidValue) whose key is
       "V4" or "V6" (else InvalidValue; non-text key -> WrongType), value FIXED(4 / 16).
5. Bytes after the record -> TrailingBytes.
Errors carry the byte offset and the field path (``ManifestV1.items[3].chunks[0]``).
"""

from __future__ import annotations

import ipaddress

from ..errors import (
    DecodeError,
    DuplicateKey,
    EncodeError,
    IntOutOfRange,
    InvalidValue,
    LimitExceeded,
    MalformedCbor,
    MissingField,
    TrailingBytes,
    TruncatedInput,
    WrongLength,
    WrongType,
)
from ..limits import MAX_NESTING
from .schema import BOOL, BYTES, ENUM, FIXED, IP, LIST, RECORD, TEXT, UINT, fields_of

_IPV4 = ipaddress.IPv4Address
_IPV6 = ipaddress.IPv6Address
_KEY_V4 = b"V4"
_KEY_V6 = b"V6"

# --------------------------------------------------------------------------- compiled schemas
# A compiled field: (name, kind, size, nullable, elem, sub, enum, key_head)
#   elem: compiled element field (LIST); sub: compiled record (RECORD); key_head: encoded key text


class _Compiled:
    __slots__ = ("cls", "fields", "index", "names")

    def __init__(self, cls):
        self.cls = cls
        self.fields = tuple(_compile_field(f) for f in fields_of(cls))
        self.index = {f[7][_head_len(f[7]) :]: i for i, f in enumerate(self.fields)}
        self.names = cls.__name__


_cache: dict[type, _Compiled] = {}


def _schema(cls) -> _Compiled:
    c = _cache.get(cls)
    if c is None:
        c = _cache[cls] = _Compiled(cls)
    return c


def _compile_field(f):
    elem = _compile_field(f.elem) if f.elem is not None else None
    sub = _schema(f.record) if f.kind == RECORD else None
    enum_map = None
    if f.kind == ENUM:
        enum_map = {m.value.encode(): m for m in f.enum}
    key = f.name.encode()
    return (f.name, f.kind, f.size, f.nullable, elem, sub, enum_map, _head(3, len(key)) + key)


def _head_len(encoded: bytes) -> int:
    info = encoded[0] & 31
    return 1 if info < 24 else 1 + (1 << (info - 24))


# --------------------------------------------------------------------------- encoding
def _head(major: int, value: int) -> bytes:
    m = major << 5
    if value < 24:
        return bytes((m | value,))
    if value < 0x100:
        return bytes((m | 24, value))
    if value < 0x10000:
        return bytes((m | 25,)) + value.to_bytes(2, "big")
    if value < 0x1_0000_0000:
        return bytes((m | 26,)) + value.to_bytes(4, "big")
    return bytes((m | 27,)) + value.to_bytes(8, "big")


_BYTE_AS_UINT = [bytes((b,)) if b < 24 else bytes((24, b)) for b in range(256)]
_byte_as_uint = _BYTE_AS_UINT.__getitem__
_NULL = b"\xf6"


def encode(obj) -> bytes:
    """Encode a record as its v0.1 wire map."""
    c = _schema_for(obj)
    out = bytearray()
    try:
        _write_record(out, obj, c, False)
    except EncodeError as exc:
        exc.add_context(c.names)
        raise
    return bytes(out)


def encode_signing(obj, nfields: int, nested_arrays: bool) -> bytes:
    """Encode the first ``nfields`` fields of a record as a positional CBOR array.

    With ``nested_arrays`` nested records are positional arrays too (manifest signing
    bytes); otherwise they stay maps (Hello signing bytes, ManifestId preimage).
    """
    c = _schema_for(obj)
    if not 0 <= nfields <= len(c.fields):
        raise EncodeError(f"has {len(c.fields)} fields, cannot sign {nfields}", path=c.names)
    out = bytearray(_head(4, nfields))
    try:
        for f in c.fields[:nfields]:
            _write_named(out, f, getattr(obj, f[0]), nested_arrays)
    except EncodeError as exc:
        exc.add_context(c.names)
        raise
    return bytes(out)


def _schema_for(obj) -> _Compiled:
    cls = type(obj)
    c = _cache.get(cls)
    if c is None:
        if not hasattr(cls, "__wire_fields__"):
            raise EncodeError(f"{cls.__name__} is not a wire record")
        c = _schema(cls)
    return c


def _write_record(out: bytearray, obj, c: _Compiled, as_array: bool) -> None:
    fields = c.fields
    if as_array:
        out += _head(4, len(fields))
        for f in fields:
            _write_named(out, f, getattr(obj, f[0]), True)
    else:
        out += _head(5, len(fields))
        for f in fields:
            out += f[7]
            _write_named(out, f, getattr(obj, f[0]), False)


def _write_named(out: bytearray, f, value, nested_arrays: bool) -> None:
    try:
        _write_field(out, f, value, nested_arrays)
    except EncodeError as exc:
        exc.add_context(f[0])
        raise


def _write_field(out: bytearray, f, value, nested_arrays: bool) -> None:
    """Write one value; errors name the problem, callers add the path."""
    name, kind, size, nullable, elem, sub, enum_map, _ = f
    if value is None:
        if not nullable:
            raise EncodeError("must not be None")
        out += _NULL
        return
    if kind == FIXED:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise EncodeError(f"must be bytes, not {type(value).__name__}")
        if len(value) != size:
            raise EncodeError(f"must be {size} bytes, got {len(value)}")
        out += _head(4, size)
        out += b"".join(map(_byte_as_uint, bytes(value)))
    elif kind == UINT:
        if type(value) is bool or not isinstance(value, int) or not 0 <= value <= size:
            raise EncodeError(f"{value!r} is not an integer in 0..{size}")
        out += _head(0, value)
    elif kind == TEXT:
        if not isinstance(value, str):
            raise EncodeError(f"must be str, not {type(value).__name__}")
        try:
            data = value.encode()
        except UnicodeEncodeError as exc:
            raise EncodeError(f"is not valid UTF-8 text: {exc}") from None
        out += _head(3, len(data))
        out += data
    elif kind == LIST:
        if isinstance(value, (str, bytes, bytearray)) or not hasattr(value, "__len__"):
            raise EncodeError(f"must be a sequence, not {type(value).__name__}")
        if size and len(value) > size:
            raise EncodeError(f"has {len(value)} entries, limit {size}")
        out += _head(4, len(value))
        i = 0
        try:
            for item in value:
                _write_field(out, elem, item, nested_arrays)
                i += 1
        except EncodeError as exc:
            exc.add_context(f"[{i}]")
            raise
    elif kind == RECORD:
        if type(value) is not sub.cls and not isinstance(value, sub.cls):
            raise EncodeError(f"must be {sub.names}, not {type(value).__name__}")
        _write_record(out, value, sub, nested_arrays)
    elif kind == BYTES:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise EncodeError(f"must be bytes, not {type(value).__name__}")
        n = len(value) if not isinstance(value, memoryview) else value.nbytes
        if n > size:
            raise EncodeError(f"is {n} bytes, limit {size}")
        out += _head(2, n)
        out += value
    elif kind == BOOL:
        if value is True:
            out += b"\xf5"
        elif value is False:
            out += b"\xf4"
        else:
            raise EncodeError(f"must be a bool, not {type(value).__name__}")
    elif kind == ENUM:
        raw = getattr(value, "value", value)
        data = raw.encode() if isinstance(raw, str) else None
        if data not in enum_map:
            raise EncodeError(f"{value!r} is not one of {sorted(enum_map)}")
        out += _head(3, len(data))
        out += data
    elif kind == IP:
        if isinstance(value, _IPV4):
            out += b"\xa1\x62V4"
            out += _head(4, 4)
        elif isinstance(value, _IPV6):
            out += b"\xa1\x62V6"
            out += _head(4, 16)
        else:
            raise EncodeError(f"must be an ipaddress object, not {type(value).__name__}")
        out += b"".join(map(_byte_as_uint, value.packed))
    else:  # pragma: no cover - schema bug
        raise TypeError(f"unknown field kind {kind}")


# --------------------------------------------------------------------------- decoding
class _Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def head(self) -> tuple[int, int]:
        """Read one head: (major, argument)."""
        data, pos = self.data, self.pos
        if pos >= self.end:
            raise TruncatedInput("input ended where a CBOR item was expected", offset=pos)
        b = data[pos]
        major, info = b >> 5, b & 31
        if info < 24:
            self.pos = pos + 1
            return major, info
        if info > 27:
            if info == 31:
                raise MalformedCbor("indefinite-length items and 'break' are not allowed", offset=pos)
            raise MalformedCbor(f"reserved additional information {info}", offset=pos)
        n = 1 << (info - 24)
        if pos + 1 + n > self.end:
            raise TruncatedInput("input ended inside a CBOR head", offset=pos)
        self.pos = pos + 1 + n
        return major, int.from_bytes(data[pos + 1 : pos + 1 + n], "big")

    def take(self, n: int, start: int) -> bytes:
        pos = self.pos
        if n > self.end - pos:
            raise TruncatedInput(f"length {n} runs past the end of the input", offset=start)
        self.pos = pos + n
        return bytes(self.data[pos : pos + n])

    def skip(self, depth: int) -> None:
        """Skip one well-formed definite-length item (an unknown key's value)."""
        if depth > MAX_NESTING:
            raise LimitExceeded(f"CBOR nesting deeper than {MAX_NESTING}", offset=self.pos)
        start = self.pos
        major, arg = self.head()
        if major == 2 or major == 3:
            self.take(arg, start)
        elif major == 4:
            if arg > self.end - self.pos:
                raise TruncatedInput(f"array of {arg} items cannot fit", offset=start)
            for _ in range(arg):
                self.skip(depth + 1)
        elif major == 5:
            if arg * 2 > self.end - self.pos:
                raise TruncatedInput(f"map of {arg} entries cannot fit", offset=start)
            for _ in range(arg * 2):
                self.skip(depth + 1)
        elif major == 6:
            self.skip(depth + 1)
        # majors 0, 1, 7: the head was the whole item


def decode(cls, data, max_size=None):
    """Decode ``data`` (any bytes-like object) as one ``cls`` record, rejecting trailing bytes."""
    c = _schema(cls)
    if max_size is None:
        max_size = cls.__wire_max__
    if isinstance(data, memoryview):
        data = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    n = len(data)
    if n > max_size:
        raise LimitExceeded(f"{c.names} input of {n} bytes exceeds the limit of {max_size}", path=c.names)
    r = _Reader(data)
    try:
        obj = _read_record(r, c, 0)
        if r.pos != n:
            raise TrailingBytes(f"{n - r.pos} bytes after the end of the record", offset=r.pos)
    except DecodeError as exc:
        exc.add_context(c.names)
        raise
    return obj


_new = object.__new__
_set = object.__setattr__


def _read_record(r: _Reader, c: _Compiled, depth: int):
    start = r.pos
    major, count = r.head()
    if major != 5:
        raise WrongType(f"expected a map for {c.names}, got major type {major}", offset=start)
    if count * 2 > r.end - r.pos:
        raise TruncatedInput(f"map of {count} entries cannot fit", offset=start)
    fields = c.fields
    index = c.index
    values = [_MISSING] * len(fields)
    unknown = None
    for _ in range(count):
        kstart = r.pos
        kmajor, klen = r.head()
        if kmajor != 3:
            raise WrongType(f"map key must be text, got major type {kmajor}", offset=kstart)
        key = r.take(klen, kstart)
        i = index.get(key)
        if i is None:
            if unknown is None:
                unknown = {key}
            elif key in unknown:
                raise DuplicateKey(f"duplicate key {key!r}", offset=kstart)
            else:
                unknown.add(key)
            r.skip(depth + 1)
            continue
        if values[i] is not _MISSING:
            raise DuplicateKey(f"duplicate key {key.decode()!r}", offset=kstart)
        f = fields[i]
        try:
            values[i] = _read_field(r, f, depth)
        except DecodeError as exc:
            exc.add_context(f[0])
            raise
    obj = _new(c.cls)
    for f, v in zip(fields, values):
        if v is _MISSING:
            if not f[3]:
                raise MissingField(f"missing key {f[0]!r}", offset=start)
            v = None
        _set(obj, f[0], v)
    return obj


class _Missing:
    __slots__ = ()


_MISSING = _Missing()


def _read_field(r: _Reader, f, depth: int):
    name, kind, size, nullable, elem, sub, enum_map, _ = f
    start = r.pos
    if start >= r.end:
        raise TruncatedInput("input ended where a value was expected", offset=start)
    data = r.data
    if nullable and data[start] == 0xF6:
        r.pos = start + 1
        return None
    if kind == FIXED:
        return _read_fixed(r, size)
    if kind == UINT:
        major, value = r.head()
        if major != 0:
            if major == 1:
                raise IntOutOfRange("negative integer where an unsigned one is required", offset=start)
            raise WrongType(f"expected an unsigned integer, got major type {major}", offset=start)
        if value > size:
            raise IntOutOfRange(f"{value} is above the maximum {size}", offset=start)
        return value
    if kind == TEXT:
        return _read_text(r)
    if kind == LIST:
        major, count = r.head()
        if major != 4:
            raise WrongType(f"expected an array, got major type {major}", offset=start)
        if size and count > size:
            raise LimitExceeded(f"array of {count} entries, limit {size}", offset=start)
        if count > r.end - r.pos:
            raise TruncatedInput(f"array of {count} entries cannot fit", offset=start)
        out = []
        append = out.append
        for i in range(count):
            try:
                append(_read_field(r, elem, depth + 1))
            except DecodeError as exc:
                exc.add_context(f"[{i}]")
                raise
        return tuple(out)
    if kind == RECORD:
        return _read_record(r, sub, depth + 1)
    if kind == BYTES:
        major, n = r.head()
        if major != 2:
            raise WrongType(f"expected a byte string, got major type {major}", offset=start)
        if n > size:
            raise LimitExceeded(f"byte string of {n} bytes, limit {size}", offset=start)
        return r.take(n, start)
    if kind == BOOL:
        b = data[start]
        if b == 0xF5 or b == 0xF4:
            r.pos = start + 1
            return b == 0xF5
        raise WrongType("expected true or false", offset=start)
    if kind == ENUM:
        text = _read_text(r)
        member = enum_map.get(text.encode())
        if member is None:
            raise InvalidValue(f"{text!r} is not one of {sorted(enum_map)}", offset=start)
        return member
    if kind == IP:
        major, count = r.head()
        if major != 5:
            raise WrongType(f"expected an IP address map, got major type {major}", offset=start)
        if count != 1:
            raise InvalidValue(f"IP address map must have exactly one entry, has {count}", offset=start)
        kstart = r.pos
        kmajor, klen = r.head()
        if kmajor != 3:
            raise WrongType(f"IP address key must be text, got major type {kmajor}", offset=kstart)
        key = r.take(klen, kstart)
        if key == _KEY_V4:
            return _IPV4(_read_fixed(r, 4))
        if key == _KEY_V6:
            return _IPV6(_read_fixed(r, 16))
        raise InvalidValue(f"IP address key must be 'V4' or 'V6', not {key!r}", offset=kstart)
    raise TypeError(f"unknown field kind {kind}")  # pragma: no cover - schema bug


def _read_text(r: _Reader) -> str:
    start = r.pos
    major, n = r.head()
    if major != 3:
        raise WrongType(f"expected text, got major type {major}", offset=start)
    raw = r.take(n, start)
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise MalformedCbor(f"invalid UTF-8 in text: {exc.reason}", offset=start) from None


def _read_fixed(r: _Reader, size: int) -> bytes:
    start = r.pos
    major, count = r.head()
    if major == 2:
        if count != size:
            raise WrongLength(f"expected {size} bytes, got a byte string of {count}", offset=start)
        return r.take(count, start)
    if major != 4:
        raise WrongType(f"expected an array of {size} byte values, got major type {major}", offset=start)
    if count != size:
        raise WrongLength(f"expected an array of {size} byte values, got {count}", offset=start)
    data = r.data
    end = r.end
    pos = r.pos
    out = bytearray(size)
    for i in range(size):
        if pos >= end:
            raise TruncatedInput("input ended inside a byte array", offset=pos)
        b = data[pos]
        if b < 24:
            out[i] = b
            pos += 1
        elif b == 24 and pos + 1 < end:
            out[i] = data[pos + 1]
            pos += 2
        else:
            r.pos = pos
            estart = pos
            major, value = r.head()
            if major != 0:
                if major == 1:
                    raise IntOutOfRange("negative byte value", offset=estart)
                raise WrongType(f"byte array element must be an unsigned integer, got major type {major}", offset=estart)
            if value > 255:
                raise IntOutOfRange(f"byte array element {value} is above 255", offset=estart)
            out[i] = value
            pos = r.pos
    r.pos = pos
    return bytes(out)


__all__ = ["decode", "encode", "encode_signing"]
