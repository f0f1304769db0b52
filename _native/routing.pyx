# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Native (Cython) twin of ``scp2p/dht/_routing_py.py``: builds ``scp2p.dht._routing_c``.

Same API, results and exceptions as the pure twin (the reference). A 160-bit id is
held as three big-endian words (64 + 64 + 32 bits), XORed and compared word by word;
``closest`` sorts (distance, position) records with ``qsort`` (ties keep input order).
"""

from libc.stdint cimport uint64_t, uint32_t
from libc.stdlib cimport malloc, free, qsort
from libc.string cimport memcpy

DEF ID_LEN = 20

__all__ = ["distance", "bucket_index", "closest", "closer"]


cdef struct _Key:
    uint64_t hi
    uint64_t mid
    uint64_t lo   # only the low 32 bits are used
    Py_ssize_t pos


cdef inline uint64_t _be64(const unsigned char* p) nogil:
    return ((<uint64_t>p[0] << 56) | (<uint64_t>p[1] << 48) | (<uint64_t>p[2] << 40) | (<uint64_t>p[3] << 32)
            | (<uint64_t>p[4] << 24) | (<uint64_t>p[5] << 16) | (<uint64_t>p[6] << 8) | <uint64_t>p[7])


cdef inline uint64_t _be32(const unsigned char* p) nogil:
    return ((<uint64_t>p[0] << 24) | (<uint64_t>p[1] << 16) | (<uint64_t>p[2] << 8) | <uint64_t>p[3])


cdef const unsigned char* _ptr(object x, str what) except NULL:
    if type(x) is not bytes or len(<bytes>x) != ID_LEN:
        size = len(x) if isinstance(x, (bytes, bytearray)) else type(x).__name__
        raise ValueError(f"{what} must be {ID_LEN} bytes, got {size}")
    return <const unsigned char*>(<bytes>x)


cdef int _cmp(const void* a, const void* b) noexcept nogil:
    cdef const _Key* x = <const _Key*>a
    cdef const _Key* y = <const _Key*>b
    if x.hi != y.hi:
        return -1 if x.hi < y.hi else 1
    if x.mid != y.mid:
        return -1 if x.mid < y.mid else 1
    if x.lo != y.lo:
        return -1 if x.lo < y.lo else 1
    if x.pos != y.pos:
        return -1 if x.pos < y.pos else 1
    return 0


cdef inline int _bitlen64(uint64_t v) nogil:
    cdef int n = 0
    while v:
        v >>= 1
        n += 1
    return n


def distance(a, b):
    """XOR distance of two 160-bit ids, as a non-negative int."""
    cdef const unsigned char* pa = _ptr(a, "id")
    cdef const unsigned char* pb = _ptr(b, "id")
    cdef unsigned char out[ID_LEN]
    cdef int i
    for i in range(ID_LEN):
        out[i] = pa[i] ^ pb[i]
    return int.from_bytes(out[:ID_LEN], "big")


def bucket_index(self_id, other):
    """Index of the k-bucket ``other`` falls in: 159 for the farthest half, 0 for the nearest; -1 if equal."""
    cdef const unsigned char* pa = _ptr(self_id, "id")
    cdef const unsigned char* pb = _ptr(other, "id")
    cdef uint64_t w
    w = _be64(pa) ^ _be64(pb)
    if w:
        return 95 + _bitlen64(w)
    w = _be64(pa + 8) ^ _be64(pb + 8)
    if w:
        return 31 + _bitlen64(w)
    w = _be32(pa + 16) ^ _be32(pb + 16)
    return _bitlen64(w) - 1


def closer(target, a, b):
    """True when ``a`` is strictly closer to ``target`` than ``b``."""
    cdef const unsigned char* pt = _ptr(target, "target")
    cdef const unsigned char* pa = _ptr(a, "id")
    cdef const unsigned char* pb = _ptr(b, "id")
    cdef int i
    cdef unsigned char da, db
    for i in range(ID_LEN):
        da = pa[i] ^ pt[i]
        db = pb[i] ^ pt[i]
        if da != db:
            return da < db
    return False


def closest(target, ids, Py_ssize_t k):
    """The (at most) ``k`` ids nearest ``target``, nearest first. Duplicates are kept as given."""
    cdef const unsigned char* pt = _ptr(target, "target")
    cdef uint64_t th = _be64(pt), tm = _be64(pt + 8), tl = _be32(pt + 16)
    if k <= 0:
        return []
    cdef list seq = ids if type(ids) is list else list(ids)
    cdef Py_ssize_t n = len(seq), i
    if n == 0:
        return []
    cdef _Key* keys = <_Key*>malloc(n * sizeof(_Key))
    if keys == NULL:
        raise MemoryError()
    cdef const unsigned char* p
    cdef list out
    try:
        for i in range(n):
            p = _ptr(seq[i], "id")
            keys[i].hi = _be64(p) ^ th
            keys[i].mid = _be64(p + 8) ^ tm
            keys[i].lo = _be32(p + 16) ^ tl
            keys[i].pos = i
        qsort(keys, n, sizeof(_Key), _cmp)
        if k > n:
            k = n
        out = [seq[keys[i].pos] for i in range(k)]
    finally:
        free(keys)
    return out
