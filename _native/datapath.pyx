# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Native (Cython) twin of ``scp2p/transport/_datapath_py.py``: builds ``scp2p.transport._datapath_c``.

Same API, results and exceptions as the pure twin (the reference); see its docstring. Buffers
are read through the buffer protocol (bytes, bytearray, memoryview; C-contiguous), no copies.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy

from scp2p.errors import FrameTooLarge, LimitExceeded
from scp2p.limits import MAX_PAYLOAD as _MAX_PAYLOAD_PY

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject* o)
    Py_ssize_t PyByteArray_GET_SIZE(PyObject* o)
    bint PyByteArray_Check(PyObject* o)

cdef uint64_t MAX_PAYLOAD = _MAX_PAYLOAD_PY
cdef uint64_t U16_MAX = 0xFFFF
cdef uint64_t U32_MAX = 0xFFFFFFFF

__all__ = [
    "chunk_fields", "chunk_frame", "chunk_tail", "content_id_at", "envelope_fields", "envelope_header", "free_buffer",
    "get_chunk_fields", "uint",
]

cdef const unsigned char* K_TYPE = b"\xa4\x64type"
cdef const unsigned char* K_REQ = b"\x66req_id"
cdef const unsigned char* K_FLAGS = b"\x65flags"
cdef const unsigned char* K_PAYLOAD = b"\x67payload"
cdef const unsigned char* K_IDX = b"\x6bchunk_index"
cdef const unsigned char* K_BYTES = b"\x65bytes"


cdef inline Py_ssize_t _uint(const unsigned char* b, Py_ssize_t i, Py_ssize_t n, uint64_t limit,
                             uint64_t* out) noexcept nogil:
    """Shortest-form CBOR uint (major 0, at most 4 bytes wide) at b[i]: next index, or -1."""
    cdef unsigned char ib
    cdef uint64_t v
    cdef Py_ssize_t j
    if i >= n:
        return -1
    ib = b[i]
    if ib < 24:
        v = ib
        j = i + 1
    elif ib == 0x18:
        if i + 2 > n or b[i + 1] < 24:
            return -1
        v = b[i + 1]
        j = i + 2
    elif ib == 0x19:
        j = i + 3
        if j > n:
            return -1
        v = (<uint64_t>b[i + 1] << 8) | b[i + 2]
        if v < 0x100:
            return -1
    elif ib == 0x1A:
        j = i + 5
        if j > n:
            return -1
        v = (<uint64_t>b[i + 1] << 24) | (<uint64_t>b[i + 2] << 16) | (<uint64_t>b[i + 3] << 8) | b[i + 4]
        if v < 0x10000:
            return -1
    else:
        return -1
    if v > limit:
        return -1
    out[0] = v
    return j


cdef inline Py_ssize_t _bstr(const unsigned char* b, Py_ssize_t i, Py_ssize_t n, uint64_t* out) noexcept nogil:
    """A canonical byte-string head at b[i]: next index (the length in out), or -1."""
    cdef unsigned char info
    cdef unsigned char tmp[5]
    cdef Py_ssize_t j, k
    if i >= n or (b[i] >> 5) != 2:
        return -1
    info = b[i] & 0x1F
    tmp[0] = info
    k = 1
    while k < 5 and i + k < n:
        tmp[k] = b[i + k]
        k += 1
    j = _uint(tmp, 0, k, U32_MAX, out)
    if j < 0:
        return -1
    return i + j


cdef inline bint _has(const unsigned char* b, Py_ssize_t i, Py_ssize_t n, const unsigned char* key,
                      Py_ssize_t k) noexcept nogil:
    return i >= 0 and i + k <= n and memcmp(b + i, key, k) == 0


def envelope_fields(body):
    cdef Py_buffer view
    cdef const unsigned char* b
    cdef Py_ssize_t n, i
    cdef uint64_t t, req, flags, ln
    PyObject_GetBuffer(body, &view, PyBUF_SIMPLE)
    try:
        b = <const unsigned char*>view.buf
        n = view.len
        if n < 30 or memcmp(b, K_TYPE, 6) != 0:
            return None
        i = _uint(b, 6, n, U16_MAX, &t)
        if not _has(b, i, n, K_REQ, 7):
            return None
        i = _uint(b, i + 7, n, U32_MAX, &req)
        if not _has(b, i, n, K_FLAGS, 6):
            return None
        i = _uint(b, i + 6, n, U16_MAX, &flags)
        if not _has(b, i, n, K_PAYLOAD, 8):
            return None
        i = _bstr(b, i + 8, n, &ln)
        if i < 0 or ln > MAX_PAYLOAD or <uint64_t>(n - i) != ln:
            return None
        return (t, req, flags, i)
    finally:
        PyBuffer_Release(&view)


cdef object _tail(const unsigned char* b, Py_ssize_t n, Py_ssize_t i):
    cdef uint64_t idx, length
    cdef Py_ssize_t at
    if not _has(b, i, n, K_IDX, 12):
        return None
    i = _uint(b, i + 12, n, U32_MAX, &idx)
    if not _has(b, i, n, K_BYTES, 6):
        return None
    at = i + 6
    i = _bstr(b, at, n, &length)
    if i < 0:
        return None
    if length > MAX_PAYLOAD:
        raise LimitExceeded(f"chunk of {length} bytes exceeds the limit of {MAX_PAYLOAD}", offset=at)
    if <uint64_t>(n - i) != length:
        return None
    return (idx, i, length)


def chunk_tail(payload, Py_ssize_t i):
    cdef Py_buffer view
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        if i < 0:
            return None
        return _tail(<const unsigned char*>view.buf, view.len, i)
    finally:
        PyBuffer_Release(&view)


def chunk_fields(payload, bytes prefix):
    cdef Py_buffer view
    cdef Py_ssize_t k = len(prefix)
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        if view.len <= k or memcmp(view.buf, <const char*>prefix, k) != 0:
            return None
        return _tail(<const unsigned char*>view.buf, view.len, k)
    finally:
        PyBuffer_Release(&view)


cdef inline Py_ssize_t _put(unsigned char* o, uint64_t v) noexcept nogil:
    if v < 24:
        o[0] = <unsigned char>v
        return 1
    if v < 0x100:
        o[0] = 0x18
        o[1] = <unsigned char>v
        return 2
    if v < 0x10000:
        o[0] = 0x19
        o[1] = <unsigned char>(v >> 8)
        o[2] = <unsigned char>v
        return 3
    if v < <uint64_t>0x100000000:
        o[0] = 0x1A
        o[1] = <unsigned char>(v >> 24)
        o[2] = <unsigned char>(v >> 16)
        o[3] = <unsigned char>(v >> 8)
        o[4] = <unsigned char>v
        return 5
    o[0] = 0x1B
    cdef int k
    for k in range(8):
        o[1 + k] = <unsigned char>(v >> (56 - 8 * k))
    return 9


def uint(v):
    cdef unsigned char out[9]
    if v < 0 or v > 0xFFFFFFFFFFFFFFFF:
        raise ValueError("unsigned integer out of range")
    cdef Py_ssize_t n = _put(out, <uint64_t>v)
    return PyBytes_FromStringAndSize(<char*>out, n)


cdef Py_ssize_t _env_head(unsigned char* out, uint64_t msg_type, uint64_t req_id, uint64_t flags,
                          uint64_t payload_len) noexcept nogil:
    """Frame length + Envelope map up to the payload bytes into out (at most 64 bytes)."""
    cdef Py_ssize_t n = 4
    cdef Py_ssize_t h
    cdef uint64_t total
    memcpy(out + n, K_TYPE, 6)
    n += 6
    n += _put(out + n, msg_type)
    memcpy(out + n, K_REQ, 7)
    n += 7
    n += _put(out + n, req_id)
    memcpy(out + n, K_FLAGS, 6)
    n += 6
    n += _put(out + n, flags)
    memcpy(out + n, K_PAYLOAD, 8)
    n += 8
    h = _put(out + n, payload_len)
    out[n] |= 0x40
    n += h
    total = <uint64_t>(n - 4) + payload_len
    out[0] = <unsigned char>(total >> 24)
    out[1] = <unsigned char>(total >> 16)
    out[2] = <unsigned char>(total >> 8)
    out[3] = <unsigned char>total
    return n


def envelope_header(msg_type, req_id, flags, payload_len):
    cdef unsigned char out[64]
    if not (0 <= msg_type <= U16_MAX and 0 <= req_id <= U32_MAX and 0 <= flags <= U16_MAX and payload_len >= 0):
        raise ValueError("envelope field out of range")
    if payload_len > MAX_PAYLOAD:
        raise FrameTooLarge(f"payload of {payload_len} bytes exceeds the limit of {MAX_PAYLOAD}")
    cdef Py_ssize_t n = _env_head(out, <uint64_t>msg_type, <uint64_t>req_id, <uint64_t>flags, <uint64_t>payload_len)
    return PyBytes_FromStringAndSize(<char*>out, n)


def free_buffer(list bufs, Py_ssize_t start, Py_ssize_t n):
    cdef Py_ssize_t m = PyList_GET_SIZE(bufs)
    cdef Py_ssize_t i, k
    cdef PyObject* p
    if m == 0:
        return -1
    i = start if 0 <= start < m else 0
    for k in range(m):
        p = <PyObject*>PyList_GET_ITEM(bufs, i)
        # the list's reference is the only one (the pure twin counts its own two as well)
        if Py_REFCNT(p) <= 1:
            if PyByteArray_Check(p):
                if PyByteArray_GET_SIZE(p) >= n:
                    return i
            elif len(<object>p) >= n:
                return i
        i += 1
        if i == m:
            i = 0
    return -1


# ---------------------------------------------------------------- the provider's GET_CHUNK lane
cdef const unsigned char* K_GET = b"\xa2\x6acontent_id\x98\x20"


cdef Py_ssize_t _cid_at(const unsigned char* b, Py_ssize_t i, Py_ssize_t n, unsigned char* cid) noexcept nogil:
    """A content id as 32 canonical CBOR uints (0..255) at b[i] into cid: next index, or -1."""
    cdef Py_ssize_t k
    cdef unsigned char c
    for k in range(32):
        if i >= n:
            return -1
        c = b[i]
        if c < 24:
            cid[k] = c
            i += 1
        elif c == 0x18 and i + 1 < n and b[i + 1] >= 24:
            cid[k] = b[i + 1]
            i += 2
        else:
            return -1
    return i


def content_id_at(payload, Py_ssize_t i):
    cdef Py_buffer view
    cdef unsigned char cid[32]
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        if i < 0:
            return None
        i = _cid_at(<const unsigned char*>view.buf, i, view.len, cid)
        return None if i < 0 else (PyBytes_FromStringAndSize(<char*>cid, 32), i)
    finally:
        PyBuffer_Release(&view)


def get_chunk_fields(payload):
    cdef Py_buffer view
    cdef const unsigned char* b
    cdef Py_ssize_t n, i
    cdef unsigned char cid[32]
    cdef uint64_t idx
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        b = <const unsigned char*>view.buf
        n = view.len
        if n < 14 + 32 + 13 or memcmp(b, K_GET, 14) != 0:
            return None
        i = _cid_at(b, 14, n, cid)
        if not _has(b, i, n, K_IDX, 12):
            return None
        i = _uint(b, i + 12, n, U32_MAX, &idx)
        if i != n:
            return None
        return (PyBytes_FromStringAndSize(<char*>cid, 32), idx)
    finally:
        PyBuffer_Release(&view)


cdef extern from "<errno.h>":
    int errno
    int EINTR

cdef extern from "scp2p_pio.h":  # pread, or ReadFile at an offset on Windows
    Py_ssize_t scp2p_pread(int fd, void* buf, size_t n, unsigned long long off) nogil

from cpython.exc cimport PyErr_CheckSignals
from os import strerror


def chunk_frame(buf, msg_type, req_id, bytes prefix, index, int fd, offset, n):
    cdef Py_buffer view
    cdef unsigned char tail[32]
    cdef unsigned char head[64]
    cdef Py_ssize_t t, h, total, k, pl
    cdef uint64_t plen
    cdef long long off
    cdef Py_ssize_t got = 0
    cdef Py_ssize_t r
    cdef unsigned char* dst
    cdef int err = 0
    if not (0 <= msg_type <= U16_MAX and 0 <= req_id <= U32_MAX and 0 <= index <= U32_MAX
            and 0 <= n <= MAX_PAYLOAD and offset >= 0):
        raise ValueError("chunk frame field out of range")
    pl = len(prefix)
    memcpy(tail, K_IDX, 12)
    t = 12
    t += _put(tail + t, <uint64_t>index)
    memcpy(tail + t, K_BYTES, 6)
    t += 6
    k = _put(tail + t, <uint64_t>n)
    tail[t] |= 0x40
    t += k
    plen = <uint64_t>(pl + t) + <uint64_t>n
    if plen > MAX_PAYLOAD:
        raise FrameTooLarge(f"payload of {plen} bytes exceeds the limit of {MAX_PAYLOAD}")
    h = _env_head(head, <uint64_t>msg_type, <uint64_t>req_id, 1, plen)
    total = h + pl + t + <Py_ssize_t>n
    PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
    try:
        if view.len < total:
            raise ValueError(f"buffer of {view.len} bytes too short for a {total}-byte frame")
        dst = <unsigned char*>view.buf
        memcpy(dst, head, h)
        memcpy(dst + h, <const char*>prefix, pl)
        memcpy(dst + h + pl, tail, t)
        dst += h + pl + t
        off = offset
        k = n
        if k:
            while True:
                with nogil:
                    r = scp2p_pread(fd, dst, k, <unsigned long long>off)
                    if r < 0:
                        err = errno
                if r >= 0:
                    got = r
                    break
                if err != EINTR:
                    raise OSError(err, strerror(err))
                PyErr_CheckSignals()
        return total if got == k else -1
    finally:
        PyBuffer_Release(&view)
