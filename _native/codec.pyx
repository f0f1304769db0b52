# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Native (Cython) CBOR codec twin: builds ``scp2p.wire._codec_c``.

Same API, bytes, records, exceptions, error paths and offsets as the pure twin
``scp2p/wire/_codec_py.py``, which is the reference: its module docstring lists
the decoding rules and the order in which both twins check them.

Design:

* each record class's ``__wire_fields__`` is compiled once into ``_Rec`` /
  ``_Fld`` cdef objects (kind, size, nullable, key bytes, element field,
  sub-schema, enum map, slot offset), cached per class;
* decoding reads any buffer (bytes, bytearray, memoryview) in place through a
  bounds-checked ``_Reader``; every read checks the end first;
* map keys are matched whole (head + text), trying the next expected field first;
* records are allocated with ``tp_alloc`` (what ``object.__new__`` does) and
  their slots filled directly (what ``object.__setattr__`` does for a slot);
  classes without plain slots fall back to ``object.__setattr__``;
* encoding writes into a growable C buffer and returns ``bytes`` once.
"""

from libc.stdint cimport uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy, memset

import ipaddress as _ipaddress
import types as _types

from scp2p.errors import (
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
from scp2p.limits import MAX_NESTING as _MAX_NESTING_PY
from scp2p.wire import schema as _schema_mod
from scp2p.wire.schema import fields_of


cdef extern from "Python.h":
    ctypedef struct PyObject
    ctypedef struct PyTypeObject:
        PyObject* (*tp_alloc)(PyTypeObject*, Py_ssize_t)
        unsigned long tp_flags
        Py_ssize_t tp_basicsize
        Py_ssize_t tp_itemsize
    PyObject* PyType_GenericAlloc(PyTypeObject*, Py_ssize_t)
    PyObject* _PyObject_GC_New(PyTypeObject*)
    ctypedef struct Py_buffer:
        void* buf
        Py_ssize_t len
    int PyBUF_SIMPLE
    unsigned long Py_TPFLAGS_IS_ABSTRACT

    int PyObject_GetBuffer(object, Py_buffer*, int) except -1
    void PyBuffer_Release(Py_buffer*)

    void Py_INCREF(object)
    void Py_DECREF(object)
    PyObject* PyErr_Occurred()
    void PyErr_Clear()

    bint PyBytes_Check(object)
    bint PyBytes_CheckExact(object)
    char* PyBytes_AS_STRING(object)
    Py_ssize_t PyBytes_GET_SIZE(object)
    object PyBytes_FromStringAndSize(const char*, Py_ssize_t)

    bint PyLong_Check(object)
    bint PyLong_CheckExact(object)
    object PyLong_FromUnsignedLongLong(unsigned long long)
    unsigned long long PyLong_AsUnsignedLongLong(object)

    bint PyUnicode_Check(object)
    object PyUnicode_New(Py_ssize_t, Py_UCS4)
    bint PyUnicode_IS_COMPACT_ASCII(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    PyObject* _decode_utf8 "PyUnicode_DecodeUTF8"(const char*, Py_ssize_t, const char*)

    bint PyTuple_CheckExact(object)
    object PyTuple_New(Py_ssize_t)
    void PyTuple_SET_ITEM(object, Py_ssize_t, PyObject*)
    PyObject* PyTuple_GET_ITEM(object, Py_ssize_t)
    Py_ssize_t PyTuple_GET_SIZE(object)

    PyObject* _bytes_new "PyBytes_FromStringAndSize"(const char*, Py_ssize_t)
    int _bytes_resize "_PyBytes_Resize"(PyObject**, Py_ssize_t)
    void _xdecref "Py_XDECREF"(PyObject*)
    void Py_SET_SIZE(object, Py_ssize_t)
    void PyObject_GC_Track(PyObject*)
    void PyObject_GC_UnTrack(PyObject*)
    int PyObject_GC_IsTracked(PyObject*)


cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
        int flags
    int T_OBJECT_EX
    int READONLY


cdef extern from "descrobject.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    /* 8 input bytes as a little-endian word: byte i in bits 8i..8i+7 */
    static inline uint64_t scp2p_le64(const unsigned char* p) {
    #if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        uint64_t v = 0;
        int i;
        for (i = 7; i >= 0; i--) v = (v << 8) | p[i];
        return v;
    #else
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    #endif
    }

    /* n bytes at p and q are equal (short keys and texts: overlapping word loads, no call) */
    static inline int scp2p_eq(const unsigned char* p, const unsigned char* q, Py_ssize_t n) {
        uint32_t a, b, c, d;
        if (n >= 8) {
            if (n > 16) return memcmp(p, q, (size_t)n) == 0;
            return scp2p_le64(p) == scp2p_le64(q) && scp2p_le64(p + n - 8) == scp2p_le64(q + n - 8);
        }
        if (n >= 4) {
            memcpy(&a, p, 4); memcpy(&b, q, 4); memcpy(&c, p + n - 4, 4); memcpy(&d, q + n - 4, 4);
            return a == b && c == d;
        }
        while (n-- > 0) if (p[n] != q[n]) return 0;
        return 1;
    }

    /* all n bytes below 0x80 (a word at a time) */
    static inline int scp2p_is_ascii(const unsigned char* p, Py_ssize_t n) {
        uint64_t acc = 0;
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8) acc |= scp2p_le64(p + i);
        for (; i < n; i++) acc |= p[i];
        return (acc & 0x8080808080808080ULL) == 0;
    }

    #define SCP2P_OBJHEAD ((Py_ssize_t)sizeof(PyObject))
    /* instances with a managed dict / weakref pre-header (3.11: 1 << 4, 3.12+: also 1 << 3)
       keep using tp_alloc */
    #define SCP2P_MANAGED_FLAGS ((1UL << 3) | (1UL << 4))

    #define SCP2P_LO7 0x7F7F7F7F7F7F7F7FULL
    #define SCP2P_HI1 0x8080808080808080ULL
    #define SCP2P_ONES 0x0101010101010101ULL

    /* the high bit of each byte (0x80 set / clear) gathered into an 8-bit mask, byte i -> bit i */
    static inline uint64_t scp2p_gather8(uint64_t hi) {
        return (((hi & SCP2P_HI1) >> 7) * 0x0102040810204080ULL) >> 56;
    }

    #define SCP2P_ODD 0xAAAAAAAAAAAAAAAAULL

    #if defined(__GNUC__) || defined(__clang__)
    #define SCP2P_CTZ64(x) __builtin_ctzll(x)
    #elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_ARM64))
    #include <intrin.h>
    static __inline int scp2p_ctz64(uint64_t x) { unsigned long i; _BitScanForward64(&i, x); return (int)i; }
    #define SCP2P_CTZ64(x) scp2p_ctz64(x)
    #else
    static inline int scp2p_ctz64(uint64_t x) { int i = 0; while (!(x & 1)) { x >>= 1; i++; } return i; }
    #define SCP2P_CTZ64(x) scp2p_ctz64(x)
    #endif

    static inline Py_ssize_t scp2p_popcount64(uint64_t x) {
        x = x - ((x >> 1) & 0x5555555555555555ULL);
        x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
        x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
        return (Py_ssize_t)((x * SCP2P_ONES) >> 56);
    }

    /*
     * Fast path for a FIXED byte array of n <= 32 elements whose heads are all <= 0x18
     * (a value below 24 in one octet, or 0x18 and the value), the forms every encoder
     * writes. p points after the array head; avail bytes are readable from p; o has
     * n + 8 writable bytes. Returns the bytes consumed with o[0..n) filled, or -1 when the fast path does not
     * apply (too little input, n > 32, or some element head above 0x18): the caller then
     * runs the checked element-by-element loop, which owns every error.
     *
     * No byte-by-byte walk: over the 2n bytes the array can span (one bit per byte),
     * E = "byte is 0x18" and L = "byte <= 0x18" are computed a word at a time. A 0x18
     * head makes the next byte its value whatever that byte is, as a backslash escapes
     * the next character in JSON, so the value bytes of two-byte elements (V) are the
     * "escaped" bits of E, found with simdjson's carry trick: the first byte of a run
     * of 0x18s is a head (the byte before it is a one-byte element or a value), then
     * heads and values alternate. Each element's value is then at a bit of
     * P = V | ~E (a value, or a one-byte element), taken in order with count-trailing-
     * zeros, in two independent chains (low and high 32 bytes). Heads are the bytes not
     * in V; the array is valid for this path iff every head byte is <= 0x18.
     */
    static Py_ssize_t scp2p_fixed_fast_scalar(const unsigned char* p, Py_ssize_t avail, Py_ssize_t n,
                                              unsigned char* o) {
        uint64_t E = 0, L = 0, V, P, a, b, x, t, used;
        Py_ssize_t words, w, i, na, nb, m, la = 0, lb = 0, last;
        unsigned char* ob;
        if (n <= 0 || n > 32) return -1;
        words = (2 * n + 7) >> 3;
        if (avail < words * 8) return -1;
        for (w = 0; w < words; w++) {
            x = scp2p_le64(p + 8 * w);
            t = x ^ (SCP2P_ONES * 0x18);
            E |= scp2p_gather8(~(((t & SCP2P_LO7) + SCP2P_LO7) | t)) << (8 * w);
            L |= scp2p_gather8(~(((x & SCP2P_LO7) + SCP2P_ONES * (0x80 - 0x19)) | x)) << (8 * w);
        }
        V = ((((E << 1) | SCP2P_ODD) - E) ^ SCP2P_ODD) ^ E;
        P = V | ~E;
        a = P & 0xFFFFFFFFULL;
        b = P >> 32;
        na = scp2p_popcount64(a);
        if (na >= n) {
            na = n;
            nb = 0;
        } else {
            nb = n - na;  /* P has >= n bits below 2n: each element takes at most 2 bytes */
        }
        m = na < nb ? na : nb;
        ob = o + na;
        for (i = 0; i < m; i++) {
            la = SCP2P_CTZ64(a);
            o[i] = p[la];
            a &= a - 1;
            lb = 32 + SCP2P_CTZ64(b);
            ob[i] = p[lb];
            b &= b - 1;
        }
        for (; i < na; i++) {
            la = SCP2P_CTZ64(a);
            o[i] = p[la];
            a &= a - 1;
        }
        for (i = m; i < nb; i++) {
            lb = 32 + SCP2P_CTZ64(b);
            ob[i] = p[lb];
            b &= b - 1;
        }
        last = nb > 0 ? lb : la;  /* the byte holding the last element's value */
        used = last >= 63 ? ~0ULL : ((1ULL << (last + 1)) - 1);
        if (~V & ~L & used) return -1;
        return last + 1;
    }

    /*
     * x86-64 (GCC / Clang), CPUs with SSSE3 (checked once at import): the same masks from
     * SSE2 byte compares, and the values gathered 8 input bytes at a time with PSHUFB and
     * a table of shuffles per 8-bit slice of P, instead of one count-trailing-zeros step
     * per element. Same result as the scalar path for every input.
     */
    static unsigned char scp2p_lut[256][8];  /* slice m: the positions of its set bits, then 0x80 */
    static unsigned char scp2p_lutcnt[256];  /* slice m: its number of set bits */
    static int scp2p_simd = 0;

    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #include <immintrin.h>
    #define SCP2P_HAVE_SSSE3_PATH 1
    __attribute__((target("ssse3")))
    static Py_ssize_t scp2p_fixed_fast_ssse3(const unsigned char* p, Py_ssize_t avail, Py_ssize_t n,
                                             unsigned char* o) {
        uint64_t E = 0, L = 0, V, P, used;
        Py_ssize_t blocks, w, cnt = 0, before = 0, c = 0, last;
        unsigned m = 0;
        const __m128i k18 = _mm_set1_epi8(0x18);
        blocks = (2 * n + 15) >> 4;
        if (avail < blocks * 16) return scp2p_fixed_fast_scalar(p, avail, n, o);
        for (w = 0; w < blocks; w++) {
            __m128i x = _mm_loadu_si128((const __m128i*)(p + 16 * w));
            E |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, k18)) << (16 * w);
            L |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(x, k18), x)) << (16 * w);
        }
        V = ((((E << 1) | SCP2P_ODD) - E) ^ SCP2P_ODD) ^ E;
        P = V | ~E;
        while (cnt < n) {  /* each 8-byte slice holds at least 4 values: at most 8 rounds */
            m = (unsigned)(P >> (8 * c)) & 0xFF;
            __m128i v = _mm_loadl_epi64((const __m128i*)(p + 8 * c));
            __m128i sh = _mm_loadl_epi64((const __m128i*)scp2p_lut[m]);
            _mm_storel_epi64((__m128i*)(o + cnt), _mm_shuffle_epi8(v, sh));  /* o has n + 8 bytes */
            before = cnt;
            cnt += scp2p_lutcnt[m];
            c++;
        }
        last = 8 * (c - 1) + scp2p_lut[m][n - 1 - before];  /* the byte holding the last value */
        used = last >= 63 ? ~0ULL : ((1ULL << (last + 1)) - 1);
        if (~V & ~L & used) return -1;
        return last + 1;
    }

    /*
     * x86-64 (GCC / Clang), CPUs with AVX-512 BW + VBMI2 and BMI2 (checked once at import;
     * every such CPU has a fast PDEP): the whole 2n <= 64 bytes the array can span in one
     * register, E and L as compare masks, the values packed by VPCOMPRESSB (register form)
     * and the byte of the last value found by PDEP of the n-th set bit of P. Same result
     * as the other paths for every input.
     */
    #define SCP2P_HAVE_AVX512_PATH 1
    __attribute__((target("avx512f,avx512bw,avx512vbmi2,bmi2,ssse3")))
    static Py_ssize_t scp2p_fixed_fast_avx512(const unsigned char* p, Py_ssize_t avail, Py_ssize_t n,
                                              unsigned char* o) {
        uint64_t E, L, V, P, used, bit;
        Py_ssize_t last;
        __m512i x, k18;
        if (avail < 64) return scp2p_fixed_fast_ssse3(p, avail, n, o);
        x = _mm512_loadu_si512((const void*)p);
        k18 = _mm512_set1_epi8(0x18);
        E = (uint64_t)_mm512_cmpeq_epi8_mask(x, k18);
        L = (uint64_t)_mm512_cmple_epu8_mask(x, k18);
        V = ((((E << 1) | SCP2P_ODD) - E) ^ SCP2P_ODD) ^ E;
        P = V | ~E;
        bit = _pdep_u64(1ULL << (n - 1), P);  /* P has >= n bits below 2n (see above) */
        if (bit == 0) return -1;
        last = SCP2P_CTZ64(bit);
        _mm512_mask_storeu_epi8((void*)o, (__mmask64)(n >= 64 ? ~0ULL : ((1ULL << n) - 1)),
                                _mm512_maskz_compress_epi8((__mmask64)P, x));
        used = last >= 63 ? ~0ULL : ((1ULL << (last + 1)) - 1);
        if (~V & ~L & used) return -1;
        return last + 1;
    }
    #endif

    static void scp2p_fixed_init(int simd) {
        int m, j, k;
        for (m = 0; m < 256; m++) {
            k = 0;
            for (j = 0; j < 8; j++) scp2p_lut[m][j] = 0x80;
            for (j = 0; j < 8; j++) if (m & (1 << j)) scp2p_lut[m][k++] = (unsigned char)j;
            scp2p_lutcnt[m] = (unsigned char)k;
        }
        scp2p_simd = 0;
    #ifdef SCP2P_HAVE_SSSE3_PATH
        /* simd: the highest path to use (0 portable, 1 SSSE3, 2 AVX-512), if the CPU has it */
        if (simd >= 1) {
            __builtin_cpu_init();
            if (__builtin_cpu_supports("ssse3")) scp2p_simd = 1;
            if (simd >= 2 && scp2p_simd && __builtin_cpu_supports("avx512bw")
                    && __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("bmi2"))
                scp2p_simd = 2;
        }
    #endif
    }

    static int scp2p_fixed_simd(void) { return scp2p_simd; }

    static Py_ssize_t scp2p_fixed_fast(const unsigned char* p, Py_ssize_t avail, Py_ssize_t n, unsigned char* o) {
        if (n <= 0 || n > 32) return -1;
    #ifdef SCP2P_HAVE_SSSE3_PATH
        if (scp2p_simd == 2) return scp2p_fixed_fast_avx512(p, avail, n, o);
        if (scp2p_simd) return scp2p_fixed_fast_ssse3(p, avail, n, o);
    #endif
        return scp2p_fixed_fast_scalar(p, avail, n, o);
    }
    """
    Py_ssize_t scp2p_fixed_fast(const unsigned char* p, Py_ssize_t avail, Py_ssize_t n, unsigned char* o) noexcept
    void scp2p_fixed_init(int simd) noexcept
    int scp2p_fixed_simd() noexcept
    uint64_t scp2p_le64(const unsigned char* p) noexcept
    bint scp2p_eq(const unsigned char* p, const unsigned char* q, Py_ssize_t n) noexcept
    bint scp2p_is_ascii(const unsigned char* p, Py_ssize_t n) noexcept
    Py_ssize_t SCP2P_OBJHEAD
    unsigned long SCP2P_MANAGED_FLAGS


scp2p_fixed_init(2)


def _fixed_simd(level=None):
    """Testing hook: the byte-array path in use (0 portable, 1 SSSE3, 2 AVX-512).

    ``level`` selects the highest path to use; the CPU may allow less (the result says).
    """
    if level is not None:
        scp2p_fixed_init(int(level))
    return scp2p_fixed_simd()


# field kinds (checked against scp2p.wire.schema at import)
cdef enum:
    K_UINT = 1
    K_BOOL = 2
    K_TEXT = 3
    K_FIXED = 4
    K_BYTES = 5
    K_LIST = 6
    K_RECORD = 7
    K_ENUM = 8
    K_IP = 9

assert (_schema_mod.UINT, _schema_mod.BOOL, _schema_mod.TEXT, _schema_mod.FIXED, _schema_mod.BYTES,
        _schema_mod.LIST, _schema_mod.RECORD, _schema_mod.ENUM, _schema_mod.IP) == (1, 2, 3, 4, 5, 6, 7, 8, 9)

cdef int MAX_NESTING = _MAX_NESTING_PY

_IPV4 = _ipaddress.IPv4Address
_IPV6 = _ipaddress.IPv6Address
_MemberDescriptorType = _types.MemberDescriptorType
_obj_setattr = object.__setattr__
cdef object _BUF_TYPES = (bytes, bytearray, memoryview)
cdef object _NOT_SEQ = (str, bytes, bytearray)


# --------------------------------------------------------------------------- compiled schemas
cdef class _Fld:
    """One compiled field (the pure twin's tuple)."""

    cdef readonly str name
    cdef int kind
    cdef uint64_t size
    cdef bint nullable
    cdef _Fld elem
    cdef _Rec sub
    cdef dict enum_map
    cdef bytes key          # key text, without its head
    cdef bytes key_head     # encoded key (head + text)
    cdef const char* kptr
    cdef Py_ssize_t klen
    cdef const char* hptr
    cdef Py_ssize_t hlen
    cdef Py_ssize_t offset  # slot offset in the owning record, or -1
    cdef bint atomic        # values never hold references to GC-tracked objects
    cdef bint repeats       # TEXT values from a small set: decoded through the text cache


cdef class _Rec:
    """One compiled record class (the pure twin's ``_Compiled``)."""

    cdef readonly object cls
    cdef readonly str names
    cdef tuple fields
    cdef Py_ssize_t nfields
    cdef bint fast          # every field is a plain writable object slot
    cdef bint atomic        # fast, and every field atomic: decoded instances stay untracked
    cdef PyTypeObject* tp


cdef dict _cache = {}


cdef bytes _py_head(int major, uint64_t value):
    cdef Buf b
    _buf_init(&b)
    try:
        _reserve(&b, 9)
        _put_head(&b, major, value)
        return _buf_finish(&b)
    finally:
        _buf_free(&b)


cdef _Fld _compile_field(f):
    cdef _Fld cf = _Fld.__new__(_Fld)
    cf.name = f.name
    cf.kind = f.kind
    cf.size = f.size
    cf.nullable = bool(f.nullable)
    cf.elem = _compile_field(f.elem) if f.elem is not None else None
    cf.sub = _schema(f.record) if f.kind == K_RECORD else None
    cf.enum_map = {m.value.encode(): m for m in f.enum} if f.kind == K_ENUM else None
    cf.key = f.name.encode()
    cf.key_head = _py_head(3, len(cf.key)) + cf.key
    cf.kptr = PyBytes_AS_STRING(cf.key)
    cf.klen = PyBytes_GET_SIZE(cf.key)
    cf.hptr = PyBytes_AS_STRING(cf.key_head)
    cf.hlen = PyBytes_GET_SIZE(cf.key_head)
    cf.offset = -1
    # a LIST of atomic values is a tuple the decoder leaves untracked (see _read_list), a
    # RECORD of an atomic class a record it leaves untracked (see _read_record); a class
    # still being compiled (a record containing itself) does not count as atomic
    cf.atomic = cf.kind in (K_UINT, K_BOOL, K_TEXT, K_FIXED, K_BYTES) or (
        cf.kind == K_LIST and cf.elem.atomic
    ) or (cf.kind == K_RECORD and cf.sub.atomic)
    cf.repeats = cf.kind == K_TEXT and bool(getattr(f, "repeats", False))
    return cf


cdef Py_ssize_t _slot_offset(cls, str name):
    """The offset of ``name``'s plain object slot in ``cls`` instances, or -1."""
    cdef PyMemberDef* m
    for k in cls.__mro__:
        d = k.__dict__.get(name)
        if d is None:
            continue
        if type(d) is not _MemberDescriptorType:
            return -1
        m = (<PyMemberDescrObject*><PyObject*>d).d_member
        if m.type != T_OBJECT_EX or (m.flags & READONLY) or m.offset <= 0:
            return -1
        return m.offset
    return -1


cdef _Rec _schema(cls):
    cdef _Rec c = _cache.get(cls)
    cdef _Fld f
    if c is not None:
        return c
    wire_fields = fields_of(cls)  # TypeError if not a record, as in the pure twin
    c = _Rec.__new__(_Rec)
    c.cls = cls
    c.names = cls.__name__
    c.tp = <PyTypeObject*><PyObject*>cls
    _cache[cls] = c  # before the fields: a record may (indirectly) contain itself
    try:
        c.fields = tuple([_compile_field(x) for x in wire_fields])
        c.nfields = len(c.fields)
        c.fast = True
        for f in c.fields:
            f.offset = _slot_offset(cls, f.name)
            if f.offset < 0:
                c.fast = False
        c.atomic = c.fast and all([f.atomic for f in c.fields])
    except BaseException:
        del _cache[cls]
        raise
    return c


cdef _Rec _schema_for(obj):
    cls = type(obj)
    cdef _Rec c = _cache.get(cls)
    if c is None:
        if not hasattr(cls, "__wire_fields__"):
            raise EncodeError(f"{cls.__name__} is not a wire record")
        c = _schema(cls)
    return c


# --------------------------------------------------------------------------- slots
cdef inline object _slot_get(object obj, _Fld f):
    cdef PyObject* p
    if f.offset >= 0:
        p = (<PyObject**>((<char*><PyObject*>obj) + f.offset))[0]
        if p != NULL:
            return <object>p
    return getattr(obj, f.name)


cdef inline bint _slot_is_set(object obj, Py_ssize_t offset) noexcept:
    return (<PyObject**>((<char*><PyObject*>obj) + offset))[0] != NULL


cdef inline void _slot_put(object obj, Py_ssize_t offset, object value) noexcept:
    # only called on an empty slot of a freshly allocated object
    Py_INCREF(value)
    (<PyObject**>((<char*><PyObject*>obj) + offset))[0] = <PyObject*>value


cdef object _alloc(_Rec c):
    """A new, zero-filled instance, not tracked by the cyclic GC (the caller tracks it if needed)."""
    cdef PyObject* p
    if c.tp.tp_flags & Py_TPFLAGS_IS_ABSTRACT:
        return object.__new__(c.cls)  # raises the same TypeError as the pure twin
    if (c.tp.tp_alloc == PyType_GenericAlloc and c.tp.tp_itemsize == 0
            and not (c.tp.tp_flags & SCP2P_MANAGED_FLAGS) and c.tp.tp_basicsize >= SCP2P_OBJHEAD):
        # what PyType_GenericAlloc does (allocate, zero, init), minus tracking the
        # object only for the caller to untrack it again
        p = _PyObject_GC_New(c.tp)
        if p == NULL:
            raise MemoryError()
        memset((<char*>p) + SCP2P_OBJHEAD, 0, <size_t>(c.tp.tp_basicsize - SCP2P_OBJHEAD))
    else:
        p = c.tp.tp_alloc(c.tp, 0)
        if p == NULL:
            raise MemoryError()
        PyObject_GC_UnTrack(p)
    obj = <object>p
    Py_DECREF(obj)  # drop the allocator's reference: ``obj`` holds one
    return obj


# --------------------------------------------------------------------------- encoding
cdef struct Buf:
    # the output is built in place in a bytes object, grown by _PyBytes_Resize (realloc)
    PyObject* obj
    char* p
    Py_ssize_t n
    Py_ssize_t cap


cdef inline void _buf_init(Buf* b) noexcept:
    b.obj = NULL
    b.p = NULL
    b.n = 0
    b.cap = 0


cdef inline void _buf_free(Buf* b) noexcept:
    _xdecref(b.obj)
    b.obj = NULL
    b.p = NULL


cdef bytes _buf_finish(Buf* b):
    """The output as bytes (shrunk in place to its length); the buffer is handed over."""
    if b.obj == NULL:
        return b""
    if _bytes_resize(&b.obj, b.n) < 0:  # frees and clears b.obj on failure
        b.p = NULL
        raise MemoryError()
    out = <bytes>b.obj
    _xdecref(b.obj)  # ``out`` holds the reference now
    b.obj = NULL
    b.p = NULL
    return out


cdef int _grow(Buf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t need = b.n + extra
    cdef Py_ssize_t cap = b.cap * 2
    if cap < need:
        cap = need
    if cap < 256:
        cap = 256
    if b.obj == NULL:
        b.obj = _bytes_new(NULL, cap)
        if b.obj == NULL:
            raise MemoryError()
    elif _bytes_resize(&b.obj, cap) < 0:  # frees and clears b.obj on failure
        b.p = NULL
        b.n = 0
        b.cap = 0
        raise MemoryError()
    b.p = PyBytes_AS_STRING(<object>b.obj)
    b.cap = cap
    return 0


cdef inline int _reserve(Buf* b, Py_ssize_t extra) except -1:
    if extra > b.cap - b.n:
        return _grow(b, extra)
    return 0


cdef inline void _put_head(Buf* b, int major, uint64_t v) noexcept:
    """Write a head in shortest form; the caller reserved 9 bytes."""
    cdef unsigned char* o = <unsigned char*>(b.p + b.n)
    cdef unsigned char m = <unsigned char>(major << 5)
    if v < 24:
        o[0] = m | <unsigned char>v
        b.n += 1
    elif v < 0x100:
        o[0] = m | 24
        o[1] = <unsigned char>v
        b.n += 2
    elif v < 0x10000:
        o[0] = m | 25
        o[1] = <unsigned char>(v >> 8)
        o[2] = <unsigned char>v
        b.n += 3
    elif v < 0x100000000:
        o[0] = m | 26
        o[1] = <unsigned char>(v >> 24)
        o[2] = <unsigned char>(v >> 16)
        o[3] = <unsigned char>(v >> 8)
        o[4] = <unsigned char>v
        b.n += 5
    else:
        o[0] = m | 27
        o[1] = <unsigned char>(v >> 56)
        o[2] = <unsigned char>(v >> 48)
        o[3] = <unsigned char>(v >> 40)
        o[4] = <unsigned char>(v >> 32)
        o[5] = <unsigned char>(v >> 24)
        o[6] = <unsigned char>(v >> 16)
        o[7] = <unsigned char>(v >> 8)
        o[8] = <unsigned char>v
        b.n += 9


cdef inline int _head_out(Buf* b, int major, uint64_t v) except -1:
    if 9 > b.cap - b.n:
        _grow(b, 9)
    _put_head(b, major, v)
    return 0


cdef inline int _raw_out(Buf* b, const char* p, Py_ssize_t n) except -1:
    if n > b.cap - b.n:
        _grow(b, n)
    memcpy(b.p + b.n, p, <size_t>n)
    b.n += n
    return 0


cdef int _byte_array_out(Buf* b, const unsigned char* src, Py_ssize_t n) except -1:
    """Each byte as a CBOR uint: one octet below 24, else 0x18 and the byte (branch-free)."""
    cdef Py_ssize_t i
    cdef unsigned char x
    cdef int big
    cdef unsigned char* o
    if 2 * n > b.cap - b.n:
        _grow(b, 2 * n)
    o = <unsigned char*>(b.p + b.n)
    # o[1] is always written: within the 2 * n reserved bytes, as o <= start + 2 * i
    for i in range(n):
        x = src[i]
        big = x >= 24
        o[0] = 24 if big else x
        o[1] = x
        o += 1 + big
    b.n = <char*>o - b.p
    return 0


def encode(obj):
    """Encode a record as its v0.1 wire map."""
    cdef _Rec c = _schema_for(obj)
    cdef Buf b
    _buf_init(&b)
    try:
        try:
            _write_record(&b, obj, c, False)
        except EncodeError as exc:
            exc.add_context(c.names)
            raise
        return _buf_finish(&b)
    finally:
        _buf_free(&b)


def encode_signing(obj, nfields, nested_arrays):
    """Encode the first ``nfields`` fields of a record as a positional CBOR array.

    With ``nested_arrays`` nested records are positional arrays too (manifest signing
    bytes); otherwise they stay maps (Hello signing bytes, ManifestId preimage).
    """
    cdef _Rec c = _schema_for(obj)
    cdef Buf b
    cdef Py_ssize_t i, n
    cdef bint nested = nested_arrays
    cdef _Fld f
    if not 0 <= nfields <= c.nfields:
        raise EncodeError(f"has {c.nfields} fields, cannot sign {nfields}", path=c.names)
    n = nfields
    _buf_init(&b)
    try:
        try:
            _head_out(&b, 4, <uint64_t>n)
            for i in range(n):
                f = <_Fld>c.fields[i]
                value = getattr(obj, f.name)
                try:
                    _write_field(&b, f, value, nested)
                except EncodeError as exc:
                    exc.add_context(f.name)
                    raise
        except EncodeError as exc:
            exc.add_context(c.names)
            raise
        return _buf_finish(&b)
    finally:
        _buf_free(&b)


cdef int _write_record(Buf* b, object obj, _Rec c, bint as_array) except -1:
    cdef Py_ssize_t i, cur = -1
    cdef _Fld f
    cdef bint exact = type(obj) is c.cls
    _head_out(b, 4 if as_array else 5, <uint64_t>c.nfields)
    try:
        for i in range(c.nfields):
            f = <_Fld>c.fields[i]
            if not as_array:
                _raw_out(b, f.hptr, f.hlen)
            value = _slot_get(obj, f) if exact else getattr(obj, f.name)
            cur = i
            _write_field(b, f, value, as_array)
            cur = -1
    except EncodeError as exc:
        if cur >= 0:
            exc.add_context((<_Fld>c.fields[cur]).name)
        raise
    return 0


cdef int _write_field(Buf* b, _Fld f, object value, bint nested) except -1:
    """Write one value; errors name the problem, callers add the path."""
    cdef int kind = f.kind
    cdef unsigned long long u
    cdef Py_ssize_t n, i
    cdef Py_buffer view
    if value is None:
        if not f.nullable:
            raise EncodeError("must not be None")
        _raw_out(b, b"\xf6", 1)
        return 0
    if kind == K_FIXED:
        if PyBytes_Check(value):
            data = value
            n = PyBytes_GET_SIZE(value)
        elif isinstance(value, _BUF_TYPES):
            n = len(value)
            data = None
        else:
            raise EncodeError(f"must be bytes, not {type(value).__name__}")
        if <uint64_t>n != f.size:
            raise EncodeError(f"must be {f.size} bytes, got {n}")
        if data is None:
            data = bytes(value)
        _head_out(b, 4, f.size)
        _byte_array_out(b, <const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    elif kind == K_UINT:
        if not PyLong_CheckExact(value) and (type(value) is bool or not PyLong_Check(value)):
            raise EncodeError(f"{value!r} is not an integer in 0..{f.size}")
        u = PyLong_AsUnsignedLongLong(value)
        if u == <unsigned long long>-1 and PyErr_Occurred() != NULL:
            PyErr_Clear()
            raise EncodeError(f"{value!r} is not an integer in 0..{f.size}")
        if u > f.size:
            raise EncodeError(f"{value!r} is not an integer in 0..{f.size}")
        _head_out(b, 0, u)
    elif kind == K_TEXT:
        if not PyUnicode_Check(value):
            raise EncodeError(f"must be str, not {type(value).__name__}")
        if PyUnicode_IS_COMPACT_ASCII(value):
            n = PyUnicode_GET_LENGTH(value)
            _head_out(b, 3, <uint64_t>n)
            _raw_out(b, <const char*>PyUnicode_DATA(value), n)
        else:
            try:
                data = value.encode()
            except UnicodeEncodeError as exc:
                raise EncodeError(f"is not valid UTF-8 text: {exc}") from None
            _head_out(b, 3, <uint64_t>PyBytes_GET_SIZE(data))
            _raw_out(b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    elif kind == K_LIST:
        _write_list(b, f, value, nested)
    elif kind == K_RECORD:
        if type(value) is not f.sub.cls and not isinstance(value, f.sub.cls):
            raise EncodeError(f"must be {f.sub.names}, not {type(value).__name__}")
        _write_record(b, value, f.sub, nested)
    elif kind == K_BYTES:
        if not isinstance(value, _BUF_TYPES):
            raise EncodeError(f"must be bytes, not {type(value).__name__}")
        if PyBytes_Check(value):
            n = PyBytes_GET_SIZE(value)
            if <uint64_t>n > f.size:
                raise EncodeError(f"is {n} bytes, limit {f.size}")
            _head_out(b, 2, <uint64_t>n)
            _raw_out(b, PyBytes_AS_STRING(value), n)
        else:
            n = value.nbytes if isinstance(value, memoryview) else len(value)
            if <uint64_t>n > f.size:
                raise EncodeError(f"is {n} bytes, limit {f.size}")
            _head_out(b, 2, <uint64_t>n)
            PyObject_GetBuffer(value, &view, PyBUF_SIMPLE)
            try:
                _raw_out(b, <const char*>view.buf, view.len)
            finally:
                PyBuffer_Release(&view)
    elif kind == K_BOOL:
        if value is True:
            _raw_out(b, b"\xf5", 1)
        elif value is False:
            _raw_out(b, b"\xf4", 1)
        else:
            raise EncodeError(f"must be a bool, not {type(value).__name__}")
    elif kind == K_ENUM:
        raw = getattr(value, "value", value)
        data = raw.encode() if isinstance(raw, str) else None
        if data not in f.enum_map:
            raise EncodeError(f"{value!r} is not one of {sorted(f.enum_map)}")
        _head_out(b, 3, <uint64_t>PyBytes_GET_SIZE(data))
        _raw_out(b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    elif kind == K_IP:
        if isinstance(value, _IPV4):
            _raw_out(b, b"\xa1\x62V4\x84", 5)
        elif isinstance(value, _IPV6):
            _raw_out(b, b"\xa1\x62V6\x90", 5)
        else:
            raise EncodeError(f"must be an ipaddress object, not {type(value).__name__}")
        data = value.packed
        _byte_array_out(b, <const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    else:  # pragma: no cover - schema bug
        raise TypeError(f"unknown field kind {kind}")
    return 0


cdef int _write_list(Buf* b, _Fld f, object value, bint nested) except -1:
    cdef Py_ssize_t n, i = 0
    cdef _Fld elem = f.elem
    if PyTuple_CheckExact(value):
        n = PyTuple_GET_SIZE(value)
    else:
        if isinstance(value, _NOT_SEQ) or not hasattr(value, "__len__"):
            raise EncodeError(f"must be a sequence, not {type(value).__name__}")
        n = len(value)
    if f.size and <uint64_t>n > f.size:
        raise EncodeError(f"has {n} entries, limit {f.size}")
    _head_out(b, 4, <uint64_t>n)
    try:
        if PyTuple_CheckExact(value):
            for i in range(n):
                _write_field(b, elem, <object>PyTuple_GET_ITEM(value, i), nested)
        else:
            for item in value:
                _write_field(b, elem, item, nested)
                i += 1
    except EncodeError as exc:
        exc.add_context(f"[{i}]")
        raise
    return 0


# --------------------------------------------------------------------------- decoding
cdef enum:
    CTX_MAX = 64  # deeper than any record nesting the schema has


cdef struct Reader:
    const unsigned char* data
    Py_ssize_t pos
    Py_ssize_t end
    # Where the value being read sits: one entry per field (its _Fld) or list index
    # (NULL, i) entered and not yet left. An error leaves the entries of the values it
    # interrupted in place, so decode() builds the error path from them (innermost
    # first, as each level adding its segment on the way out would) without a
    # try/except (and its exception-state save) around every record and list.
    int sp
    void* ctx_fld[CTX_MAX]
    Py_ssize_t ctx_idx[CTX_MAX + 1]


cdef inline void _ctx_push(Reader* r, void* fld, Py_ssize_t idx) noexcept:
    if r.sp < CTX_MAX:
        r.ctx_fld[r.sp] = fld
        r.ctx_idx[r.sp] = idx
    r.sp += 1


cdef int _ctx_apply(Reader* r, exc) except -1:
    """Add the path segments of the values an error interrupted, innermost first."""
    cdef int j = r.sp - 1
    if j >= CTX_MAX:  # pragma: no cover - no schema nests this deep
        j = CTX_MAX - 1
    while j >= 0:
        if r.ctx_fld[j] != NULL:
            exc.add_context((<_Fld>r.ctx_fld[j]).name)
        else:
            exc.add_context(f"[{r.ctx_idx[j]}]")
        j -= 1
    return 0


cdef inline int _head(Reader* r, int* major, uint64_t* arg) except -1:
    """Read one head: (major, argument). One-byte and 0x?8 xx heads inline, the rest in _head_long."""
    cdef Py_ssize_t pos = r.pos
    cdef unsigned char b
    cdef int info
    if pos < r.end:
        b = r.data[pos]
        info = b & 31
        if info < 24:
            major[0] = b >> 5
            r.pos = pos + 1
            arg[0] = <uint64_t>info
            return 0
        if info == 24 and pos + 1 < r.end:
            major[0] = b >> 5
            r.pos = pos + 2
            arg[0] = r.data[pos + 1]
            return 0
    return _head_long(r, major, arg)


cdef int _head_long(Reader* r, int* major, uint64_t* arg) except -1:
    cdef Py_ssize_t pos = r.pos
    cdef unsigned char b
    cdef int info, n, i
    cdef uint64_t v
    if pos >= r.end:
        raise TruncatedInput("input ended where a CBOR item was expected", offset=pos)
    b = r.data[pos]
    major[0] = b >> 5
    info = b & 31
    if info < 24:
        r.pos = pos + 1
        arg[0] = <uint64_t>info
        return 0
    if info > 27:
        if info == 31:
            raise MalformedCbor("indefinite-length items and 'break' are not allowed", offset=pos)
        raise MalformedCbor(f"reserved additional information {info}", offset=pos)
    n = 1 << (info - 24)
    if n > r.end - pos - 1:
        raise TruncatedInput("input ended inside a CBOR head", offset=pos)
    v = 0
    for i in range(1, n + 1):
        v = (v << 8) | r.data[pos + i]
    r.pos = pos + 1 + n
    arg[0] = v
    return 0


cdef inline uint64_t _left(Reader* r) noexcept:
    return <uint64_t>(r.end - r.pos)


cdef object _take(Reader* r, uint64_t n, Py_ssize_t start):
    cdef Py_ssize_t pos = r.pos
    if n > _left(r):
        raise TruncatedInput(f"length {n} runs past the end of the input", offset=start)
    r.pos = pos + <Py_ssize_t>n
    return PyBytes_FromStringAndSize(<const char*>(r.data + pos), <Py_ssize_t>n)


cdef int _skip(Reader* r, int depth) except -1:
    """Skip one well-formed definite-length item (an unknown key's value)."""
    cdef Py_ssize_t start
    cdef int major
    cdef uint64_t arg, k
    if depth > MAX_NESTING:
        raise LimitExceeded(f"CBOR nesting deeper than {MAX_NESTING}", offset=r.pos)
    start = r.pos
    _head(r, &major, &arg)
    if major == 2 or major == 3:
        if arg > _left(r):
            raise TruncatedInput(f"length {arg} runs past the end of the input", offset=start)
        r.pos += <Py_ssize_t>arg
    elif major == 4:
        if arg > _left(r):
            raise TruncatedInput(f"array of {arg} items cannot fit", offset=start)
        k = 0
        while k < arg:
            _skip(r, depth + 1)
            k += 1
    elif major == 5:
        if arg > _left(r) // 2:
            raise TruncatedInput(f"map of {arg} entries cannot fit", offset=start)
        k = 0
        while k < arg:
            _skip(r, depth + 1)
            _skip(r, depth + 1)
            k += 1
    elif major == 6:
        _skip(r, depth + 1)
    # majors 0, 1, 7: the head was the whole item
    return 0


def decode(cls, data, max_size=None):
    """Decode ``data`` (any bytes-like object) as one ``cls`` record, rejecting trailing bytes."""
    cdef _Rec c = _schema(cls)
    cdef Py_buffer view
    cdef bint have_view = False
    cdef Reader r
    cdef Py_ssize_t n
    if max_size is None:
        max_size = cls.__wire_max__
    if PyBytes_CheckExact(data):
        r.data = <const unsigned char*>PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
    else:
        if isinstance(data, memoryview) and not data.c_contiguous and data.format == "B" and data.ndim == 1:
            data = data.tobytes()  # the pure twin indexes it element by element
            r.data = <const unsigned char*>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            have_view = True
            r.data = <const unsigned char*>view.buf
            n = view.len
    try:
        if n > max_size:
            raise LimitExceeded(
                f"{c.names} input of {n} bytes exceeds the limit of {max_size}", path=c.names
            )
        r.pos = 0
        r.end = n
        r.sp = 0
        try:
            obj = _read_record(&r, c, 0)
            if r.pos != n:
                raise TrailingBytes(f"{n - r.pos} bytes after the end of the record", offset=r.pos)
        except DecodeError as exc:
            _ctx_apply(&r, exc)
            exc.add_context(c.names)
            raise
        return obj
    finally:
        if have_view:
            PyBuffer_Release(&view)


cdef inline Py_ssize_t _find(_Rec c, const unsigned char* kp, Py_ssize_t klen, Py_ssize_t expect):
    cdef Py_ssize_t j
    cdef _Fld f
    if expect < c.nfields:
        f = <_Fld>c.fields[expect]
        if f.klen == klen and scp2p_eq(<const unsigned char*>f.kptr, kp, klen):
            return expect
    for j in range(c.nfields):
        f = <_Fld>c.fields[j]
        if f.klen == klen and scp2p_eq(<const unsigned char*>f.kptr, kp, klen):
            return j
    return -1


cdef object _read_record(Reader* r, _Rec c, int depth):
    cdef Py_ssize_t start = r.pos, kstart, i, expect = 0, nf = c.nfields
    cdef int major
    cdef uint64_t count, klen, k
    cdef const unsigned char* kp
    cdef _Fld f
    cdef set unknown = None
    cdef list values = None
    _head(r, &major, &count)
    if major != 5:
        raise WrongType(f"expected a map for {c.names}, got major type {major}", offset=start)
    if count > _left(r) // 2:
        raise TruncatedInput(f"map of {count} entries cannot fit", offset=start)
    if c.fast:
        obj = _alloc(c)  # untracked: tracked when complete, if it needs to be
    else:
        obj = None
        values = [_MISSING] * nf
    k = 0
    if values is None:
        # every key in schema order (what every encoder writes) into the empty slots
        # of the fresh record: no duplicate is possible yet; the first other key
        # leaves this loop for the generic one below
        while k < count and expect < nf:
            f = <_Fld>c.fields[expect]
            if not (f.hlen <= r.end - r.pos and scp2p_eq(r.data + r.pos, <const unsigned char*>f.hptr, f.hlen)):
                break
            r.pos += f.hlen
            _ctx_push(r, <void*>f, -1)
            value = _read_field(r, f, depth)
            r.sp -= 1
            _slot_put(obj, f.offset, value)
            expect += 1
            k += 1
    while k < count:
        k += 1
        kstart = r.pos
        i = -1
        if expect < nf:
            # keys in schema order (what every encoder writes): match the next
            # field's whole encoded key (head + text) at once
            f = <_Fld>c.fields[expect]
            if f.hlen <= r.end - kstart and scp2p_eq(r.data + kstart, <const unsigned char*>f.hptr, f.hlen):
                r.pos = kstart + f.hlen
                i = expect
        if i < 0:
            _head(r, &major, &klen)
            if major != 3:
                raise WrongType(f"map key must be text, got major type {major}", offset=kstart)
            if klen > _left(r):
                raise TruncatedInput(f"length {klen} runs past the end of the input", offset=kstart)
            kp = r.data + r.pos
            r.pos += <Py_ssize_t>klen
            i = _find(c, kp, <Py_ssize_t>klen, expect)
            if i < 0:
                key = PyBytes_FromStringAndSize(<const char*>kp, <Py_ssize_t>klen)
                if unknown is None:
                    unknown = {key}
                elif key in unknown:
                    raise DuplicateKey(f"duplicate key {key!r}", offset=kstart)
                else:
                    unknown.add(key)
                _skip(r, depth + 1)
                continue
        expect = i + 1
        f = <_Fld>c.fields[i]
        if (_slot_is_set(obj, f.offset) if values is None else values[i] is not _MISSING):
            raise DuplicateKey(f"duplicate key {f.name!r}", offset=kstart)
        _ctx_push(r, <void*>f, -1)
        value = _read_field(r, f, depth)
        r.sp -= 1
        if values is None:
            _slot_put(obj, f.offset, value)
        else:
            values[i] = value
    if values is None:
        for i in range(nf):
            f = <_Fld>c.fields[i]
            if not _slot_is_set(obj, f.offset):
                if not f.nullable:
                    raise MissingField(f"missing key {f.name!r}", offset=start)
                _slot_put(obj, f.offset, None)
        # The record was built untracked by the cyclic GC. Track it iff one of its
        # values is a tracked object: the rule CPython's GC applies to tuples
        # (_PyTuple_MaybeUntrack), applied once the container is complete. A record
        # holding only atomic values (bytes, str, int, None, untracked records and
        # tuples) cannot be part of a reference cycle, and decoded records are
        # frozen, so the GC never has to traverse (again and again) a big decoded tree.
        for i in range(nf):
            f = <_Fld>c.fields[i]
            if not f.atomic and PyObject_GC_IsTracked((<PyObject**>((<char*><PyObject*>obj) + f.offset))[0]):
                PyObject_GC_Track(<PyObject*>obj)
                break
        return obj
    obj = object.__new__(c.cls)
    for i in range(nf):
        f = <_Fld>c.fields[i]
        value = values[i]
        if value is _MISSING:
            if not f.nullable:
                raise MissingField(f"missing key {f.name!r}", offset=start)
            value = None
        _obj_setattr(obj, f.name, value)
    return obj


class _Missing:
    __slots__ = ()


cdef object _MISSING = _Missing()


cdef object _read_field(Reader* r, _Fld f, int depth):
    cdef Py_ssize_t start = r.pos
    cdef int major, kind = f.kind
    cdef uint64_t value
    cdef unsigned char b
    if start >= r.end:
        raise TruncatedInput("input ended where a value was expected", offset=start)
    if f.nullable and r.data[start] == 0xF6:
        r.pos = start + 1
        return None
    if kind == K_FIXED:
        return _read_fixed(r, f.size)
    if kind == K_UINT:
        _head(r, &major, &value)
        if major != 0:
            if major == 1:
                raise IntOutOfRange("negative integer where an unsigned one is required", offset=start)
            raise WrongType(f"expected an unsigned integer, got major type {major}", offset=start)
        if value > f.size:
            raise IntOutOfRange(f"{value} is above the maximum {f.size}", offset=start)
        return PyLong_FromUnsignedLongLong(value)
    if kind == K_TEXT:
        return _read_text(r, f.repeats)
    if kind == K_LIST:
        return _read_list(r, f, depth)
    if kind == K_RECORD:
        return _read_record(r, f.sub, depth + 1)
    if kind == K_BYTES:
        _head(r, &major, &value)
        if major != 2:
            raise WrongType(f"expected a byte string, got major type {major}", offset=start)
        if value > f.size:
            raise LimitExceeded(f"byte string of {value} bytes, limit {f.size}", offset=start)
        return _take(r, value, start)
    if kind == K_BOOL:
        b = r.data[start]
        if b == 0xF5 or b == 0xF4:
            r.pos = start + 1
            return b == 0xF5
        raise WrongType("expected true or false", offset=start)
    if kind == K_ENUM:
        text = _read_text(r, False)
        member = f.enum_map.get(text.encode())
        if member is None:
            raise InvalidValue(f"{text!r} is not one of {sorted(f.enum_map)}", offset=start)
        return member
    if kind == K_IP:
        return _read_ip(r)
    raise TypeError(f"unknown field kind {kind}")  # pragma: no cover - schema bug


# Lists of ``repeats`` texts (tags) repeat as a whole too: a direct-mapped cache of
# (field, encoded bytes, tuple). CBOR items are self-delimiting, so input that starts
# with the encoded bytes of a list this field decoded before holds exactly that list:
# the cached tuple (immutable, of strs) is the result, and every check passed on it.
cdef enum:
    LCACHE_SLOTS = 256
    LCACHE_MAXLEN = 64
cdef void* _lcache_fld[LCACHE_SLOTS]     # the _Fld (borrowed: compiled fields live forever)
cdef PyObject* _lcache_raw[LCACHE_SLOTS]  # bytes, strong
cdef PyObject* _lcache_val[LCACHE_SLOTS]  # tuple, strong


cdef object _read_list(Reader* r, _Fld f, int depth):
    cdef Py_ssize_t start = r.pos, i = 0, n, slot = -1, rawlen, top
    cdef int major
    cdef uint64_t count
    cdef _Fld elem = f.elem
    cdef PyObject* raw
    if elem.repeats and r.end - start >= 16:
        slot = <Py_ssize_t>(((scp2p_le64(r.data + start) * 0x9E3779B97F4A7C15ULL)
                             ^ (scp2p_le64(r.data + start + 8) * 0xC2B2AE3D27D4EB4FULL)) >> 56)
        raw = _lcache_raw[slot]
        if raw != NULL and _lcache_fld[slot] == <void*>f:
            rawlen = PyBytes_GET_SIZE(<object>raw)
            if rawlen <= r.end - start and scp2p_eq(
                r.data + start, <const unsigned char*>PyBytes_AS_STRING(<object>raw), rawlen
            ):
                r.pos = start + rawlen
                return <object>_lcache_val[slot]
    _head(r, &major, &count)
    if major != 4:
        raise WrongType(f"expected an array, got major type {major}", offset=start)
    if f.size and count > f.size:
        raise LimitExceeded(f"array of {count} entries, limit {f.size}", offset=start)
    if count > _left(r):
        raise TruncatedInput(f"array of {count} entries cannot fit", offset=start)
    n = <Py_ssize_t>count
    out = PyTuple_New(n)
    PyObject_GC_UnTrack(<PyObject*>out)  # tracked when complete, if it needs to be
    _ctx_push(r, NULL, 0)
    top = r.sp - 1 if r.sp <= CTX_MAX else CTX_MAX  # CTX_MAX: the spare entry, never reported
    if elem.kind == K_FIXED and not elem.nullable:  # chunk hashes, ids: no per-item dispatch
        for i in range(n):
            r.ctx_idx[top] = i
            if r.pos >= r.end:
                raise TruncatedInput("input ended where a value was expected", offset=r.pos)
            item = _read_fixed(r, elem.size)
            Py_INCREF(item)
            PyTuple_SET_ITEM(out, i, <PyObject*>item)
    elif elem.kind == K_RECORD and not elem.nullable:  # manifest items
        for i in range(n):
            r.ctx_idx[top] = i
            if r.pos >= r.end:
                raise TruncatedInput("input ended where a value was expected", offset=r.pos)
            item = _read_record(r, elem.sub, depth + 2)  # as _read_field(r, elem, depth + 1)
            Py_INCREF(item)
            PyTuple_SET_ITEM(out, i, <PyObject*>item)
    else:
        for i in range(n):
            r.ctx_idx[top] = i
            item = _read_field(r, elem, depth + 1)
            Py_INCREF(item)
            PyTuple_SET_ITEM(out, i, <PyObject*>item)
    r.sp -= 1
    if not elem.atomic:  # see _read_record: track it iff an item is tracked
        for i in range(n):
            if PyObject_GC_IsTracked(PyTuple_GET_ITEM(out, i)):
                PyObject_GC_Track(<PyObject*>out)
                break
    if slot >= 0 and r.pos - start <= LCACHE_MAXLEN:
        key = PyBytes_FromStringAndSize(<const char*>(r.data + start), r.pos - start)
        Py_INCREF(key)
        Py_INCREF(out)
        _xdecref(_lcache_raw[slot])
        _xdecref(_lcache_val[slot])
        _lcache_raw[slot] = <PyObject*>key
        _lcache_val[slot] = <PyObject*>out
        _lcache_fld[slot] = <void*>f
    return out


# A direct-mapped cache of short ASCII strs for ``repeats`` TEXT fields (mime types,
# tags): equal input bytes give the one cached str instead of a new one. Only compact
# ASCII strs are stored, so input bytes equal to a cached str's characters are valid
# UTF-8 that decodes to an equal str: the result and every check are as without it.
cdef enum:
    TCACHE_SLOTS = 256
    TCACHE_MAXLEN = 64

cdef PyObject* _tcache[TCACHE_SLOTS]  # strong references, NULL when empty


cdef inline Py_ssize_t _tcache_slot(const unsigned char* p, Py_ssize_t n) noexcept:
    cdef uint64_t a, b
    cdef Py_ssize_t i
    if n >= 8:
        a = scp2p_le64(p)
        b = scp2p_le64(p + n - 8)
    else:
        a = 0
        b = 0
        for i in range(n):
            a = (a << 8) | p[i]
    return <Py_ssize_t>((((a * 0x9E3779B97F4A7C15ULL) ^ (b * 0xC2B2AE3D27D4EB4FULL)) + <uint64_t>n) >> 56)


cdef object _read_text(Reader* r, bint cached):
    cdef Py_ssize_t start = r.pos, slot = -1
    cdef int major
    cdef uint64_t n
    cdef const char* p
    cdef PyObject* s
    _head(r, &major, &n)
    if major != 3:
        raise WrongType(f"expected text, got major type {major}", offset=start)
    if n > _left(r):
        raise TruncatedInput(f"length {n} runs past the end of the input", offset=start)
    p = <const char*>(r.data + r.pos)
    if cached and n <= TCACHE_MAXLEN:
        slot = _tcache_slot(<const unsigned char*>p, <Py_ssize_t>n)
        s = _tcache[slot]
        if (s != NULL and PyUnicode_GET_LENGTH(<object>s) == <Py_ssize_t>n
                and scp2p_eq(<const unsigned char*>PyUnicode_DATA(<object>s), <const unsigned char*>p, <Py_ssize_t>n)):
            r.pos += <Py_ssize_t>n
            return <object>s
    r.pos += <Py_ssize_t>n
    if scp2p_is_ascii(<const unsigned char*>p, <Py_ssize_t>n):
        # ASCII (names, mime types, tags): the characters are the bytes
        text = PyUnicode_New(<Py_ssize_t>n, 127)
        memcpy(PyUnicode_DATA(text), p, <size_t>n)
    else:
        s = _decode_utf8(p, <Py_ssize_t>n, NULL)
        if s == NULL:
            _utf8_error(p, <Py_ssize_t>n, start)
        text = <object>s
        Py_DECREF(text)  # drop the decoder's reference: ``text`` holds one
    if slot >= 0 and PyUnicode_IS_COMPACT_ASCII(text):
        Py_INCREF(text)
        _xdecref(_tcache[slot])
        _tcache[slot] = <PyObject*>text
    return text


cdef int _utf8_error(const char* p, Py_ssize_t n, Py_ssize_t start) except -1:
    PyErr_Clear()
    raw = PyBytes_FromStringAndSize(p, n)
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        raise MalformedCbor(f"invalid UTF-8 in text: {exc.reason}", offset=start) from None
    raise MemoryError()  # the first decode failed for another reason


cdef object _read_fixed(Reader* r, uint64_t size):
    cdef Py_ssize_t start = r.pos, pos, end, i, n
    cdef int major
    cdef uint64_t count, value
    cdef const unsigned char* data = r.data
    cdef unsigned char* o
    cdef unsigned char x

    _head(r, &major, &count)
    if major == 2:
        if count != size:
            raise WrongLength(f"expected {size} bytes, got a byte string of {count}", offset=start)
        return _take(r, count, start)
    if major != 4:
        raise WrongType(f"expected an array of {size} byte values, got major type {major}", offset=start)
    if count != size:
        raise WrongLength(f"expected an array of {size} byte values, got {count}", offset=start)
    n = <Py_ssize_t>size
    # 8 spare bytes for the fast path's 8-byte stores (same pymalloc size class for the
    # sizes used: 4, 16, 32, 64); the length is set to n once the bytes are in place
    out = PyBytes_FromStringAndSize(NULL, n + 8)
    o = <unsigned char*>PyBytes_AS_STRING(out)
    end = r.end
    pos = r.pos
    i = scp2p_fixed_fast(data + pos, end - pos, n, o)
    if i >= 0:
        r.pos = pos + i
        _bytes_set_len(out, n)
        return out
    for i in range(n):
        if pos >= end:
            raise TruncatedInput("input ended inside a byte array", offset=pos)
        x = data[pos]
        if x < 24:
            o[i] = x
            pos += 1
        elif x == 24 and pos + 1 < end:
            o[i] = data[pos + 1]
            pos += 2
        else:
            r.pos = pos
            _head(r, &major, &value)
            if major != 0:
                if major == 1:
                    raise IntOutOfRange("negative byte value", offset=pos)
                raise WrongType(
                    f"byte array element must be an unsigned integer, got major type {major}", offset=pos
                )
            if value > 255:
                raise IntOutOfRange(f"byte array element {value} is above 255", offset=pos)
            o[i] = <unsigned char>value
            pos = r.pos
    r.pos = pos
    _bytes_set_len(out, n)
    return out


cdef inline void _bytes_set_len(object b, Py_ssize_t n) noexcept:
    """Shrink a fresh, unshared bytes object in place (as _PyBytes_Resize does, minus the realloc)."""
    Py_SET_SIZE(b, n)
    PyBytes_AS_STRING(b)[n] = 0


cdef object _read_ip(Reader* r):
    cdef Py_ssize_t start = r.pos, kstart
    cdef int major
    cdef uint64_t count, klen
    _head(r, &major, &count)
    if major != 5:
        raise WrongType(f"expected an IP address map, got major type {major}", offset=start)
    if count != 1:
        raise InvalidValue(f"IP address map must have exactly one entry, has {count}", offset=start)
    kstart = r.pos
    _head(r, &major, &klen)
    if major != 3:
        raise WrongType(f"IP address key must be text, got major type {major}", offset=kstart)
    key = _take(r, klen, kstart)
    if key == b"V4":
        return _IPV4(_read_fixed(r, 4))
    if key == b"V6":
        return _IPV6(_read_fixed(r, 16))
    raise InvalidValue(f"IP address key must be 'V4' or 'V6', not {key!r}", offset=kstart)


__all__ = ["decode", "encode", "encode_signing"]
