# cython: language_level=3
"""Native twin of the search kernels (scp2p.search._index_c); reference: scp2p/search/_index_py.py.

Same state layout (scp2p/search/_base.py), same algorithm, typed: tokenizer with an ASCII fast
path (non-ASCII text goes through the pure normaliser, so both twins agree), appends straight
into array('I') buffers, and the query kernel over raw uint32 pointers.
"""

from cpython.array cimport array, resize_smart
from cpython.unicode cimport PyUnicode_FromStringAndSize
from cpython.list cimport PyList_GET_ITEM
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.unicode cimport PyUnicode_CheckExact
from libc.stdlib cimport malloc, calloc, free, realloc
from libc.string cimport memcmp, memset, memcpy, memchr
from libc.stdlib cimport qsort
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.errno cimport errno, EINTR, ENOSPC, EIO
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from scp2p.search import ranking
from scp2p.errors import IndexImageError, SearchError, SearchIndexIOError
from scp2p.search._base import LazySection, IndexBase, MAX_TAG_TOKENS, _tags_key, _tags_from_key, _texts, Postings as _Postings, State as _State
from scp2p.search.text import tokenize as _pure_tokenize, MAX_TOKEN_CHARS, MAX_TOKENS_PER_FIELD

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    const char* PyUnicode_1BYTE_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)

cdef extern from "Python.h":
    ctypedef struct PyObject
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    object PyBytes_FromStringAndSize(const char* v, Py_ssize_t len)
    char* PyByteArray_AS_STRING(object)
    object PyType_GenericAlloc(void* tp, Py_ssize_t nitems)
    object PyFloat_FromDouble(double v)
    void Py_INCREF(object o)
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member

cdef extern from "pythread.h":
    ctypedef void* PyThread_type_lock
    PyThread_type_lock PyThread_allocate_lock()
    void PyThread_free_lock(PyThread_type_lock)
    int PyThread_acquire_lock(PyThread_type_lock, int) nogil
    void PyThread_release_lock(PyThread_type_lock) nogil
    unsigned long PyThread_start_new_thread(void (*)(void*) noexcept nogil, void*)


cdef extern from "scp2p_pio.h":
    Py_ssize_t scp2p_pread(int fd, void* buf, size_t n, unsigned long long off) nogil
    Py_ssize_t scp2p_pwrite(int fd, const void* buf, size_t n, unsigned long long off) nogil
    int scp2p_close(int fd) nogil

cdef extern from *:
    """
    #if defined(__GLIBC__)
    #include <malloc.h>
    static int scp2p_mmap_big(void) { return mallopt(M_MMAP_THRESHOLD, 1 << 20); }
    /* free bytes held by malloc's heap (not handed back to the kernel) */
    static size_t scp2p_heap_free(void) {
    #if __GLIBC_PREREQ(2, 33)
        struct mallinfo2 mi = mallinfo2();
        return mi.fordblks;
    #else
        struct mallinfo mi = mallinfo();
        return (size_t)(unsigned int)mi.fordblks;
    #endif
    }
    static void scp2p_heap_trim(void) { malloc_trim(0); }
    #else
    static int scp2p_mmap_big(void) { return 0; }
    static size_t scp2p_heap_free(void) { return 0; }
    static void scp2p_heap_trim(void) { }
    #endif
    """
    int scp2p_mmap_big() nogil
    size_t scp2p_heap_free() nogil
    void scp2p_heap_trim() nogil

cdef bint _malloc_set = False
cdef enum:
    TRIM_EVERY = 1 << 16     # docs indexed between two looks at the heap's free memory
cdef size_t TRIM_FREE = 8 << 20  # free heap bytes above which they are handed back (malloc_trim)
cdef Py_ssize_t _docs_since_trim = 0


cdef void _maybe_trim(Py_ssize_t ndocs) noexcept:
    """Every TRIM_EVERY docs indexed (process-wide), hand the heap's free memory back to the
    kernel when there is more than TRIM_FREE of it (glibc; elsewhere nothing). A share update
    frees many mid-sized buffers (its rows, caches, moved arrays, staging buffers: below the
    mmap threshold, so from the heap) and glibc keeps the pages of freed chunks inside the heap
    resident: at 1M items ~16 MB of RSS. Measured at 1M items: 16 looks (~50 us each) and as
    many trims (~0.7 ms each)."""
    global _docs_since_trim
    _docs_since_trim += ndocs
    if _docs_since_trim >= TRIM_EVERY:
        _docs_since_trim = 0
        if scp2p_heap_free() > TRIM_FREE:
            scp2p_heap_trim()


cdef void _big_buffers_mapped() noexcept:
    """Allocations of 1 MiB or more get their own mmap (glibc's M_MMAP_THRESHOLD, set once
    when the first native index is made). glibc otherwise raises its mmap threshold after the
    first big frees and serves big buffers from the heap, where a moved or freed one leaves a
    hole that stays resident (session 3 handed them back with malloc_trim after every merge,
    Seg fold and big-buffer move: a walk of the whole heap each time). Mapped, a freed buffer
    goes back to the kernel at once and a growing one is moved by mremap (no copy). This is
    process-wide: every allocation of 1 MiB or more in the process is mapped from then on."""
    global _malloc_set
    if not _malloc_set:
        scp2p_mmap_big()
        _malloc_set = True

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define SCP2P_PREFETCH(p) __builtin_prefetch(p)
    #else
    #define SCP2P_PREFETCH(p) ((void)0)
    #endif
    """
    void SCP2P_PREFETCH(const void* p) nogil

cdef extern from *:
    """
    typedef struct { PyObject_VAR_HEAD char* ob_item; Py_ssize_t allocated; } scp2p_arrhead;
    /* free entries of an array.array before the next append reallocates (CPython's layout) */
    static CYTHON_INLINE Py_ssize_t scp2p_room(PyObject* a) {
        return ((scp2p_arrhead*)a)->allocated - Py_SIZE(a);
    }
    """
    Py_ssize_t scp2p_room(object a)

cdef extern from "Python.h":
    object PyTuple_New(Py_ssize_t n)
    void PyTuple_SET_ITEM(object p, Py_ssize_t pos, object o)
    object PyLong_FromUnsignedLong(unsigned long v)

cdef object _NO_MIME = object()

cdef extern from "structmember.h":
    int T_OBJECT_EX
    int READONLY

cdef int NAME = ranking.NAME
cdef int NPFX = ranking.NAME_PREFIX
cdef int TAG = ranking.TAG
cdef int EXACT = ranking.EXACT_NAME
cdef int FN = ranking.FLAG_NAME
cdef int FT = ranking.FLAG_TAG
cdef tuple PLENS = tuple(ranking.PREFIX_LIST_LENGTHS)
if MAX_TOKEN_CHARS > 64 or MAX_TOKENS_PER_FIELD > 64:  # the C buffers below hold 64 of each
    raise ImportError("search kernels: token limits above 64 need larger buffers")

__all__ = ["Index", "tokenize", "add_share", "merge", "run", "ExactNames", "untrack"]


# ---------------------------------------------------------------------- tokenizer
cpdef list tokenize(str text):
    """Normalised tokens (see scp2p.search.text.tokenize)."""
    if not PyUnicode_IS_ASCII(text):
        return _pure_tokenize(text)
    cdef const char* s = PyUnicode_1BYTE_DATA(text)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text), i, start = -1, L
    cdef char buf[64]
    cdef char c
    cdef list out = []
    cdef int maxc = MAX_TOKEN_CHARS, maxt = MAX_TOKENS_PER_FIELD
    cdef int blen = 0
    for i in range(n + 1):
        c = s[i] if i < n else 0
        if (c >= 97 and c <= 122) or (c >= 48 and c <= 57):
            if blen < maxc:
                buf[blen] = c
                blen += 1
            start = 1
        elif c >= 65 and c <= 90:
            if blen < maxc:
                buf[blen] = c + 32
                blen += 1
            start = 1
        elif start > 0:
            out.append(PyUnicode_FromStringAndSize(buf, blen))
            blen = 0
            start = -1
            if len(out) >= maxt:
                return out
    return out


# ---------------------------------------------------------------------- helpers
cdef inline int _alnum_runs(const char* s, Py_ssize_t n) noexcept nogil:
    """Number of ASCII alphanumeric runs in s[:n] (= tokens of ASCII text, before the caps)."""
    cdef int runs = 0
    cdef bint inrun = False
    cdef Py_ssize_t i
    cdef char c
    for i in range(n):
        c = s[i]
        if (c >= 97 and c <= 122) or (c >= 48 and c <= 57) or (c >= 65 and c <= 90):
            if not inrun:
                runs += 1
                inrun = True
        else:
            inrun = False
    return runs


cdef extern from "Python.h":
    bint PyObject_GC_IsTracked(object o)
    void PyObject_GC_UnTrack(void* o)


def untrack(list lst):
    """Take ``lst`` out of the cyclic GC and return it. Only for lists that hold atomic
    objects (str, int, None, arrays): they cannot be part of a reference cycle, and a
    collection would otherwise visit every entry (millions of terms: ~50 ms per full
    collection at 300k items, most of a build's time)."""
    if PyObject_GC_IsTracked(lst):
        PyObject_GC_UnTrack(<void*>lst)
    return lst


cdef inline int push(array a, unsigned int v) except -1:
    cdef Py_ssize_t n = len(a)
    resize_smart(a, n + 1)
    a.data.as_uints[n] = v
    return 0


cdef inline int push_q(array a, unsigned long long v) except -1:
    cdef Py_ssize_t n = len(a)
    resize_smart(a, n + 1)
    a.data.as_ulonglongs[n] = v
    return 0


cdef struct PBuf:      # one share's postings before they are grouped by list: (id << 34 | doc << 2 | flags)
    unsigned long long* v
    size_t n, cap


cdef void _sort_keys(PBuf* p, unsigned long long* tmp) noexcept nogil:
    """Stable LSD radix sort of the keys by list id (the bits above 34); doc order inside a
    list is kept (postings were pushed in doc order). tmp: scratch for p.n keys."""
    cdef unsigned long long* src = p.v
    cdef unsigned long long* dst
    cdef unsigned long long mx = 0
    cdef size_t i, tot, c
    cdef size_t cnt[2048]
    cdef int shift = 34
    if p.n < 2:
        return
    for i in range(p.n):
        if p.v[i] > mx:
            mx = p.v[i]
    dst = tmp
    while shift < 64 and (mx >> shift):
        memset(cnt, 0, sizeof(cnt))
        for i in range(p.n):
            cnt[(src[i] >> shift) & 2047] += 1
        tot = 0
        for i in range(2048):
            c = cnt[i]
            cnt[i] = tot
            tot += c
        for i in range(p.n):
            c = (src[i] >> shift) & 2047
            dst[cnt[c]] = src[i]
            cnt[c] += 1
        src, dst = dst, src
        shift += 11
    if src != p.v:
        memcpy(p.v, src, p.n * sizeof(unsigned long long))


cdef class Seg:
    """One share's delta postings for one posting set (terms or prefixes), in C-friendly CSR:
    ``ids`` (sorted list ids), ``off`` (their runs in ``post``), ``blk`` (one block-table
    pair per list: (slot << 2 | flags, 0)). A share update makes one Seg per set instead of a
    pair of Python arrays per list; lists find their runs by binary search on ``ids``, and
    ``merge`` folds whole Segs into the CSR part. Every SEG_FOLD new Segs are folded into one
    (``boff``: each list's block pairs, several per list then; block starts relative to its
    run), so a list is spread over a few dozen Segs at most."""
    cdef array ids, off, boff, post, blk


cdef struct SegOut:     # a Seg built without the GIL (the background build), in its job's arena
    unsigned int* ids
    unsigned int* off
    unsigned int* post
    unsigned int* blk
    unsigned long long* tmp  # the sort's scratch
    size_t m, n


cdef void _segout_free(SegOut* o) noexcept nogil:
    """Forget o's arrays (they belong to its job's arena)."""
    o.ids = o.off = o.post = o.blk = NULL
    o.tmp = NULL


cdef inline char* _carve(char** at, size_t nbytes) noexcept nogil:
    """The next nbytes of an arena (16-byte aligned pieces)."""
    cdef char* p = at[0]
    at[0] += (nbytes + 15) & ~(<size_t>15)
    return p


cdef size_t _pbuf_bytes(size_t n) noexcept nogil:
    """Arena bytes for n postings and their Seg (see _pbuf_carve)."""
    return 0 if n == 0 else 36 * n + 6 * 16 + 16 * 4


cdef void _pbuf_carve(PBuf* p, SegOut* o, size_t n, char** at) noexcept nogil:
    """Room for n postings in p and for their Seg (at most n lists) and the sort's scratch in o,
    carved from a job's arena (allocated by the caller's thread: the build thread allocates
    nothing, since glibc would give it an arena of its own, whose freed memory stays resident)."""
    if n == 0:
        return
    p.v = <unsigned long long*>_carve(at, n * 8)
    p.cap = n
    o.ids = <unsigned int*>_carve(at, (n + 1) * 4)
    o.off = <unsigned int*>_carve(at, (n + 2) * 4)
    o.post = <unsigned int*>_carve(at, (n + 1) * 4)
    o.blk = <unsigned int*>_carve(at, (2 * n + 1) * 4)
    o.tmp = <unsigned long long*>_carve(at, (n + 1) * 8)
    o.m = o.n = 0


cdef void _seg_build(PBuf* p, unsigned int slot, SegOut* o) noexcept nogil:
    """The Seg of a share's postings (sorted here by list: the same block-table entries as
    appending them to per-list deltas one by one, one new block per list) into o (allocated by
    _segout_alloc for p.n postings)."""
    cdef size_t i = 0, j, m = 0
    cdef unsigned int t, flags
    cdef const unsigned long long* v = p.v
    _sort_keys(p, o.tmp)
    while i < p.n:
        t = <unsigned int>(v[i] >> 34)
        flags = 0
        j = i
        while j < p.n and <unsigned int>(v[j] >> 34) == t:
            flags |= v[j] & 3
            o.post[j] = <unsigned int>((v[j] >> 2) & 0xFFFFFFFFULL)
            j += 1
        o.ids[m] = t
        o.off[m] = <unsigned int>i
        o.blk[2 * m] = slot << 2 | flags
        o.blk[2 * m + 1] = 0
        m += 1
        i = j
    o.off[m] = <unsigned int>p.n
    o.m, o.n = m, p.n


cdef inline array _arr_of(const unsigned int* src, size_t n):
    cdef array a = array("I")
    resize_smart(a, n)
    if n:
        memcpy(a.data.as_uints, src, n * 4)
    return a


cdef Seg _seg_wrap(SegOut* o):
    """The Seg of a SegOut (its arrays copied into array('I') buffers; o is freed)."""
    cdef Seg g = Seg()
    cdef size_t i
    g.ids = _arr_of(o.ids, o.m)
    g.off = _arr_of(o.off, o.m + 1)
    g.post = _arr_of(o.post, o.n)
    g.blk = _arr_of(o.blk, 2 * o.m)
    g.boff = array("I")
    resize_smart(g.boff, o.m + 1)
    for i in range(o.m + 1):
        g.boff.data.as_uints[i] = <unsigned int>(2 * i)
    _segout_free(o)
    return g


cdef class DeltaDir:
    """Which Segs hold list t: ``head[t]`` = 1 + the newest entry (seg number, index in its ids,
    next older entry + 1), so a lookup walks only the Segs that have the list."""
    cdef unsigned int* head
    cdef unsigned int* ent
    cdef size_t hcap, n, cap

    def __dealloc__(self):
        free(self.head)
        free(self.ent)

    cdef int add(self, unsigned int segno, Seg g) except -1:
        cdef size_t m = len(g.ids), i, want
        cdef const unsigned int* ids = g.ids.data.as_uints
        cdef void* nv
        if m == 0:
            return 0
        want = ids[m - 1] + 1
        if want > self.hcap:
            want = max(want + (want >> 3), 1024)  # the new part is zeroed (resident): grow by 1/8, not 2x
            nv = realloc(self.head, want * sizeof(unsigned int))
            if nv == NULL:
                raise MemoryError()
            self.head = <unsigned int*>nv
            memset(self.head + self.hcap, 0, (want - self.hcap) * sizeof(unsigned int))
            self.hcap = want
        if self.n + m > self.cap:
            want = max(self.n + m, 2 * self.cap)
            nv = realloc(self.ent, 3 * want * sizeof(unsigned int))
            if nv == NULL:
                raise MemoryError()
            self.ent = <unsigned int*>nv
            self.cap = want
        for i in range(m):
            self.ent[3 * self.n] = segno
            self.ent[3 * self.n + 1] = <unsigned int>i
            self.ent[3 * self.n + 2] = self.head[ids[i]]
            self.n += 1
            self.head[ids[i]] = <unsigned int>self.n
        return 0

    cdef int truncate(self, size_t keep, list segs) except -1:
        """Drop every entry after the first ``keep`` -- those of ``segs``, the newest Segs (their
        entries are the last ones, and the newest of each chain): a fold replaces them by one
        Seg without rebuilding the directory of all the others."""
        cdef Seg g
        cdef size_t i
        cdef unsigned int t
        for o in segs:
            g = <Seg>o
            for i in range(len(g.ids)):
                t = g.ids.data.as_uints[i]
                while self.head[t] > keep:
                    self.head[t] = self.ent[3 * self.head[t] - 1]
        self.n = keep
        return 0


SEG_FOLD = 16  #: new Segs folded into one (a list then spans a few dozen Segs at most)


cdef int _pio_c(int fd, char* buf, size_t n, unsigned long long at, bint wr) noexcept nogil:
    """Read (or write) exactly n bytes at ``at`` (retrying short transfers and EINTR): 0, the
    errno of a failure, or -1 for a short read."""
    cdef size_t done = 0
    cdef Py_ssize_t r
    while done < n:
        if wr:
            r = scp2p_pwrite(fd, buf + done, n - done, at + done)
        else:
            r = scp2p_pread(fd, buf + done, n - done, at + done)
        if r < 0:
            if errno == EINTR:
                continue
            return errno if errno > 0 else -1
        if r == 0:
            return -1
        done += r
    return 0


cdef int _pio(int fd, char* buf, size_t n, unsigned long long at, bint wr, str what) except -1:
    """_pio_c raising OSError."""
    cdef int e = _pio_c(fd, buf, n, at, wr)
    if e > 0:
        import os
        raise OSError(e, what + ": " + os.strerror(e))
    if e < 0:
        raise OSError(what + ": short read")
    return 0


#: a merged list of at most this many postings is read whole when a query plans it (one pread);
#: a longer one is read a share run at a time, only for the shares the query visits
EAGER_POSTS = 16384
cdef Py_ssize_t _eager_posts = EAGER_POSTS


def set_eager_posts(Py_ssize_t n):
    """Change EAGER_POSTS (tests use 0: every on-disk list is read run by run); returns the old value."""
    global _eager_posts
    old = _eager_posts
    _eager_posts = n
    return old


cdef class PostFile:
    """A merged posting set's ``post`` and ``blk`` arrays on disk (session 5): an unlinked temporary
    file (like the DocStore's) holding ``post`` (npost uint32, native byte order) then ``blk``
    (nblk uint32). ``poff``/``boff`` stay in memory. Queries read a list's block table with one
    ``pread`` and its postings whole (short lists) or one share run at a time, so the data lives in
    the kernel's page cache, not in the process's resident memory. A merge reads the arrays back,
    folds the deltas in and rewrites the file.

    Liveness of a run without reading its postings: ``lo``/``hi`` are the slot ranges when the file
    was written and ``dead`` the (sorted) run numbers -- block-table index / 2 -- that were dead
    then (a loaded image may hold dead runs; a merge keeps only live ones). A run of slot s is live
    iff it is not in ``dead`` and the slot's range is still (lo[s], hi[s]): doc ids are never
    reused, so a replaced or removed share always has another range."""

    cdef int fd
    cdef public unsigned long long npost, nblk, size
    cdef array lo, hi, dead
    cdef const unsigned int* lo_
    cdef const unsigned int* hi_
    cdef const unsigned int* dead_
    cdef Py_ssize_t nslots
    cdef readonly Py_ssize_t ndead

    def __cinit__(self, dirname=None):
        self.fd = -1
        self.fd = _open_tmp(dirname)

    def __dealloc__(self):
        if self.fd >= 0:
            scp2p_close(self.fd)

    def write(self, st, array post, array poff, array blk, array boff, bint all_live=False):
        """Write the merged part; ``all_live``: every run is live now (a merge's output), so the
        dead-run list is empty without looking at the runs."""
        cdef const unsigned int* P = post.data.as_uints
        cdef const unsigned int* B = blk.data.as_uints
        cdef const unsigned int* PO = poff.data.as_uints
        cdef const unsigned int* BO = boff.data.as_uints
        cdef Py_ssize_t t, r, nb
        cdef unsigned int s, d
        cdef array dead = array("I")
        _pio(self.fd, post.data.as_chars, 4 * len(post), 0, True, "search postings")
        _pio(self.fd, blk.data.as_chars, 4 * len(blk), 4 * len(post), True, "search postings")
        self.written(st, len(post), len(blk))
        for t in range(0 if all_live else len(poff) - 1):
            nb = <Py_ssize_t>(BO[t + 1] - BO[t]) >> 1
            for r in range(nb):
                s = B[BO[t] + 2 * r] >> 2
                d = P[PO[t] + B[BO[t] + 2 * r + 1]]
                if not (self.lo_[s] <= d < self.hi_[s]):
                    push(dead, <unsigned int>((BO[t] >> 1) + r))
        self.dead, self.dead_, self.ndead = dead, dead.data.as_uints, len(dead)

    cdef int written(self, st, unsigned long long npost, unsigned long long nblk) except -1:
        """The file now holds npost postings then nblk block entries, every run live (the slot
        ranges are snapshot; a caller that knows of dead runs sets ``dead`` after)."""
        cdef array lo = array("I", st.slot_lo), hi = array("I", st.slot_hi), dead = array("I")
        if 4 * (npost + nblk) < self.size:
            import os
            os.ftruncate(self.fd, 4 * (npost + nblk))
        self.npost, self.nblk, self.size = npost, nblk, 4 * (npost + nblk)
        self.lo, self.hi, self.dead = lo, hi, dead
        self.lo_, self.hi_, self.dead_ = lo.data.as_uints, hi.data.as_uints, dead.data.as_uints
        self.nslots, self.ndead = len(lo), 0
        return 0

    cdef inline bint live(self, unsigned int run, unsigned int s, const unsigned int* lo_,
                          const unsigned int* hi_) noexcept nogil:
        cdef Py_ssize_t a
        if <Py_ssize_t>s >= self.nslots or lo_[s] != self.lo_[s] or hi_[s] != self.hi_[s] or lo_[s] >= hi_[s]:
            return False
        a = lower_bound(self.dead_, 0, self.ndead, run)
        return not (a < self.ndead and self.dead_[a] == run)

    cdef int read(self, unsigned int* buf, unsigned long long at, size_t n) except -1:
        """n uint32 from position ``at`` (uint32 units: postings from 0, block entries from npost)."""
        return _pio(self.fd, <char*>buf, 4 * n, 4 * at, False, "search postings")

    def mapped(self):
        """The file as a read-only mmap (a merge reads it in place; the caller closes it)."""
        import mmap
        m = mmap.mmap(self.fd, self.size, access=mmap.ACCESS_READ)
        if hasattr(m, "madvise") and hasattr(mmap, "MADV_SEQUENTIAL"):
            m.madvise(mmap.MADV_SEQUENTIAL)
        return m

    def read_all(self):
        """(post, blk) as arrays (a merge folds them with the deltas)."""
        cdef array post = array("I"), blk = array("I")
        resize_smart(post, self.npost)
        resize_smart(blk, self.nblk)
        self.read(post.data.as_uints, 0, self.npost)
        self.read(blk.data.as_uints, self.npost, self.nblk)
        return post, blk

    def chunks(self, bint blocks):
        """The ``post`` (or ``blk``) array in arrays of up to 1 Mi entries (the image's section)."""
        cdef unsigned long long at = self.npost if blocks else 0, end = at + (self.nblk if blocks else self.npost), m
        cdef array a
        while at < end:
            m = min(end - at, <unsigned long long>(1 << 20))
            a = array("I")
            resize_smart(a, m)
            self.read(a.data.as_uints, at, m)
            yield a
            at += m


class NPostings(_Postings):
    """Postings with the delta part as Segs (see _base.Postings) and the merged part's ``post`` and
    ``blk`` arrays on disk (``disk``, a PostFile; the arrays are then empty)."""

    def __init__(self, doc_dir=None):
        _Postings.__init__(self)
        self.poff, self.boff = array("I", [0]), array("I", [0])  # uint32 in memory; the image has uint64
        self.doc_dir = doc_dir
        self.disk = None
        self.segs = []
        self.nfolded = 0  # segs[:nfolded] are folded Segs, the rest one per share update
        self.ddir_mark = 0  # ddir's entries of the folded Segs (the first ones)
        self.ddir = DeltaDir()
        self.kills_at_merge = -1  # State.kills when this merged part was made (-1: unknown)
        self.merging = None  # a MergeJob running on the build thread
        self.folding = None  # a FoldJob running on the build thread

    def add_seg(self, st, Seg g):
        (<DeltaDir>self.ddir).add(len(self.segs), g)
        self.segs.append(g)
        self.settle_fold(False)
        if self.folding is None and len(self.segs) - self.nfolded >= SEG_FOLD:
            # the first SEG_FOLD unfolded Segs folded into one on the build thread (a fold drops
            # the runs dead when it starts; the Segs stay in use until it is installed)
            job = FoldJob()
            job.setup(st, self.segs[self.nfolded:self.nfolded + SEG_FOLD], self.nfolded)
            self.folding = job
            job.start()
            self.settle_fold(False)

    def settle_fold(self, bint wait):
        """Install the pending fold if it has finished (``wait``: waiting for it)."""
        cdef FoldJob job = self.folding
        if job is not None and (wait or job.finished()):
            job.install(self)

    def to_disk(self, st, all_live=False):
        """Move the merged part's post / blk arrays to the PostFile (after a merge -- every run
        live -- or a load)."""
        if self.poff.typecode != "I":  # a loaded image's (validated) uint64 offsets
            if len(self.post) > 0xFFFFFFFF or len(self.blk) > 0xFFFFFFFF:
                raise SearchError("search index over 2**32 postings in one posting set")
            self.poff, self.boff = array("I", self.poff), array("I", self.boff)
        if self.disk is None:
            if not len(self.post) and not len(self.blk):
                return
            self.disk = PostFile(self.doc_dir)
        (<PostFile>self.disk).write(st, self.post, self.poff, self.blk, self.boff, all_live)
        self.post, self.blk = array("I"), array("I")

    def section(self, name):
        if name in ("poff", "boff"):
            return array("Q", getattr(self, name))
        if self.disk is not None and name in ("post", "blk"):
            n = (<PostFile>self.disk).nblk if name == "blk" else (<PostFile>self.disk).npost
            return LazySection("I", 4 * n, lambda: (<PostFile>self.disk).chunks(name == "blk"))
        return getattr(self, name)

    def segments(self, Py_ssize_t t, strict=0):
        cdef list out = []
        cdef array poff = self.poff, boff = self.boff
        cdef Seg g
        cdef Py_ssize_t i
        cdef object post = self.post if self.disk is None else self.disk
        cdef object blk = self.blk if self.disk is None else self.disk
        if t + 1 < len(poff) and poff.data.as_uints[t] < poff.data.as_uints[t + 1]:
            out.append((post, poff.data.as_uints[t], poff.data.as_uints[t + 1], blk,
                        boff.data.as_uints[t], boff.data.as_uints[t + 1], strict))
        cdef DeltaDir dd = self.ddir
        cdef list segs = self.segs
        cdef unsigned int e
        cdef Py_ssize_t n0 = len(out), a, b
        if t < 0 or <size_t>t >= dd.hcap:
            return out
        e = dd.head[t]
        while e:  # newest first; reversed below
            g = <Seg>PyList_GET_ITEM(segs, dd.ent[3 * e - 3])
            i = dd.ent[3 * e - 2]
            out.append((g.post, g.off.data.as_uints[i], g.off.data.as_uints[i + 1], g.blk,
                        g.boff.data.as_uints[i], g.boff.data.as_uints[i + 1], strict))
            e = dd.ent[3 * e - 1]
        a, b = n0, len(out) - 1
        while a < b:
            out[a], out[b] = out[b], out[a]
            a += 1
            b -= 1
        return out


def _check_utf8(bytearray blob, array off, bint strict, Py_ssize_t nonempty_from):
    """Each entry blob[off[i]:off[i + 1]] decodes (strict UTF-8, or with surrogatepass), and
    entries from ``nonempty_from`` on are not empty (the empty key is entry 0 or nowhere)."""
    blob.decode("utf-8", "strict" if strict else "surrogatepass")
    cdef const unsigned char* b = <const unsigned char*>PyByteArray_AS_STRING(blob)
    cdef const unsigned long long* o = off.data.as_ulonglongs
    cdef Py_ssize_t i, n = len(blob)
    for i in range(len(off)):
        if <Py_ssize_t>o[i] < n and (b[o[i]] & 0xC0) == 0x80:
            raise IndexImageError("dictionary entry split inside a character")
        if i >= nonempty_from and i + 1 < len(off) and o[i + 1] == o[i]:
            raise IndexImageError("duplicate entries in a search index dictionary")


# ---------------------------------------------------------------------- document store
def _open_tmp(dirname):
    """A read-write file descriptor of an unlinked temporary file in ``dirname`` (None = the
    system temp directory): nothing to clean up, the space is freed when it is closed."""
    import os
    if dirname is None:
        import tempfile
        dirname = tempfile.gettempdir()
    if os.name == "nt":  # an open file cannot be unlinked there: delete-on-close instead
        import secrets
        while True:
            path = os.path.join(dirname, "scp2p-search-docs-" + secrets.token_hex(8))
            try:
                return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_BINARY | os.O_TEMPORARY
                               | os.O_NOINHERIT, 0o600)
            except FileExistsError:
                continue
    flag = getattr(os, "O_TMPFILE", 0)
    if flag:
        try:
            return os.open(dirname, flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError:  # a file system without O_TMPFILE
            pass
    import tempfile
    fd, path = tempfile.mkstemp(prefix="scp2p-search-docs-", dir=dirname)
    os.unlink(path)
    return fd


cdef enum:
    REC_FIXED = 48          # content id (32), mime id (u32), name length (u32), size (u64); little-endian
    SECTION_DOCS = 65536    # docs per chunk when the image's sections are written

cdef enum:
    SIZE_EXACT = 2048   # size classes below this are the size itself


cdef inline unsigned int _size_class(unsigned long long v) noexcept nogil:
    """A doc's size in 16 bits for the size filter (the record holds the size): sizes below 2048
    exactly, then 1,024 classes per power of two (the 10 bits after the leading one), so the
    class is monotonic in the size. A filter decides on the class except at its bounds' own
    classes, where it reads the exact size from the record (session 5: -1.9 MB at 1M items)."""
    cdef int e = 0
    cdef unsigned long long x = v
    if v < SIZE_EXACT:
        return <unsigned int>v
    while x > 1:
        x >>= 1
        e += 1
    return SIZE_EXACT + <unsigned int>(e - 11) * 1024 + <unsigned int>((v >> (e - 10)) & 1023)


cdef struct RecAt:       # DocStore.fetch: a record's byte range and its place in the page
    unsigned long long a, b
    Py_ssize_t i


cdef enum:
    FETCH_GAP = 4096        # records this close share one pread (reading the gap is cheaper)


cdef int _cmp_recat(const void* x, const void* y) noexcept nogil:
    cdef unsigned long long a = (<const RecAt*>x).a, b = (<const RecAt*>y).a
    return -1 if a < b else (1 if a > b else 0)


cdef int _fail_doc_writes = -1   # tests: the document-store write after this many more fails (ENOSPC)


cdef class DocStore:
    """Cold per-document data on disk: one record per doc, ``content id (32) | mime id (u32) |
    name length (u32) | size (u64) | name (UTF-8) | zero padding to 4 bytes`` (little-endian),
    appended to an unlinked temporary file; in memory, ``base`` (one uint32 per 64 docs: where
    the group's first record starts, in 4-byte units, so the file may grow to 16 GiB) and
    ``rlen`` (one byte per doc: its record's length in 4-byte units) say where each record is. A query reads
    only its hits' records (one ``pread`` each), so the data is not part of the process's
    resident memory (the kernel's page cache keeps it while memory is free and drops it under
    pressure). A share's records are collected in ``wbuf`` and written with one ``pwrite`` at
    the end of ``add_share``."""

    cdef int fd
    cdef array base   # per 64 docs: where the first one's record starts (4-byte units)
    cdef array rlen   # per doc: its record's length in 4-byte units (uint8; 0 = in ``longs``)
    cdef dict longs   # doc -> record length (4-byte units) of records over 1,020 bytes
    cdef Py_ssize_t n
    cdef public unsigned long long name_bytes   # total name length (the image's names section)
    cdef unsigned long long flushed   # bytes written to the file
    cdef char* wbuf
    cdef size_t wlen, wcap
    cdef char* rbuf
    cdef size_t rcap
    cdef char* bbuf   # fetch(): the records of a page of hits
    cdef size_t bcap

    def __cinit__(self, dirname=None):
        self.fd = -1
        self.fd = _open_tmp(dirname)
        self.base, self.rlen, self.longs, self.n = array("I"), array("B"), {}, 0

    def __dealloc__(self):
        if self.fd >= 0:
            scp2p_close(self.fd)
        free(self.wbuf)
        free(self.rbuf)
        free(self.bbuf)

    def __len__(self):
        return self.n

    cdef inline unsigned long long units(self, Py_ssize_t d) except? 0:
        """Record d's length in 4-byte units."""
        cdef unsigned char u = self.rlen.data.as_uchars[d]
        return u if u else <unsigned long long>self.longs[d]

    cdef unsigned long long at(self, Py_ssize_t d) except? 0xFFFFFFFFFFFFFFFFULL:
        """Where record d starts (bytes; d == n: the end): its 64-doc group's start plus the
        lengths before it in the group (session 5: ~1.06 bytes per doc instead of a uint32)."""
        cdef unsigned long long u, s = 0
        cdef Py_ssize_t j
        cdef const unsigned char* r = self.rlen.data.as_uchars
        cdef bint long_ = False
        if d >= self.n:
            return self.flushed + self.wlen
        u = self.base.data.as_uints[d >> 6]
        for j in range(d & ~(<Py_ssize_t>63), d):  # a tight byte sum; a long record is a 0 byte
            s += r[j]
            long_ |= r[j] == 0
        if long_:
            for j in range(d & ~(<Py_ssize_t>63), d):
                if r[j] == 0:
                    s += <unsigned long long>self.longs[j]
        return (u + s) << 2

    cdef int append(self, const char* cid, unsigned int mime, unsigned long long size, const char* name,
                    Py_ssize_t nlen) except -1:
        cdef size_t rl = (REC_FIXED + nlen + 3) & ~(<size_t>3)
        cdef size_t need = self.wlen + rl, cap
        cdef char* nb
        cdef char* w
        if (self.flushed + need) >> 2 > 0xFFFFFFFFULL:
            raise SearchError("search document store over 16 GiB")
        if need > self.wcap:
            cap = self.wcap * 2 if self.wcap * 2 > need else need + 65536
            nb = <char*>realloc(self.wbuf, cap)
            if nb == NULL:
                raise MemoryError()
            self.wbuf, self.wcap = nb, cap
        w = self.wbuf + self.wlen
        memcpy(w, cid, 32)
        _put_le(w + 32, mime, 4)
        _put_le(w + 36, <unsigned long long>nlen, 4)
        _put_le(w + 40, size, 8)
        memcpy(w + REC_FIXED, name, nlen)
        memset(w + REC_FIXED + nlen, 0, rl - REC_FIXED - nlen)
        if (self.n & 63) == 0:
            push(self.base, <unsigned int>((self.flushed + self.wlen) >> 2))
        resize_smart(self.rlen, self.n + 1)
        self.rlen.data.as_uchars[self.n] = <unsigned char>(rl >> 2) if (rl >> 2) < 256 else 0
        if (rl >> 2) >= 256:
            self.longs[self.n] = rl >> 2
        self.n += 1
        self.wlen = need
        self.name_bytes += nlen
        return 0

    cdef int flush(self) except -1:
        """Write the collected records (the file's end is ``flushed``). A failed write raises
        SearchIndexIOError and keeps the records in ``wbuf`` (still readable; the next flush
        writes them again, from the same position)."""
        global _fail_doc_writes
        cdef int e
        if _fail_doc_writes == 0 and self.wlen:
            e = ENOSPC
        else:
            e = _pio_c(self.fd, self.wbuf, self.wlen, self.flushed, True)
        if _fail_doc_writes > 0 and self.wlen:
            _fail_doc_writes -= 1
        if e:
            import os
            e = e if e > 0 else EIO
            raise SearchIndexIOError(e, "search document store: " + os.strerror(e))
        self.flushed += self.wlen
        self.wlen = 0
        if self.wcap > (4 << 20):  # a load's big batch: do not keep its buffer
            free(self.wbuf)
            self.wbuf = NULL
            self.wcap = 0
        return 0

    cdef int read_at(self, char* buf, size_t n, unsigned long long at) except -1:
        return _pio(self.fd, buf, n, at, False, "search document store")

    cdef const char* get(self, unsigned int d) except NULL:
        """Record d (valid until the next call)."""
        cdef unsigned long long a = self.at(d), b = a + (self.units(d) << 2)
        cdef char* nb
        if a >= self.flushed:
            return self.wbuf + (a - self.flushed)
        if b - a > self.rcap:
            nb = <char*>realloc(self.rbuf, b - a + 256)
            if nb == NULL:
                raise MemoryError()
            self.rbuf, self.rcap = nb, b - a + 256
        self.read_at(self.rbuf, b - a, a)
        return self.rbuf

    cdef int fetch(self, const unsigned int* ds, Py_ssize_t n, const char** out) except -1:
        """Records of docs ds[0..n-1] into out[] (valid until the next fetch): the flushed ones
        sorted by position and read with one ``pread`` per run of records that lie within
        FETCH_GAP bytes of each other (a page's hits often come from a few shares, whose
        records are adjacent in the file), instead of one ``pread`` per hit."""
        cdef RecAt* at = <RecAt*>malloc(n * sizeof(RecAt) + 1)
        cdef Py_ssize_t i, j, k, m = 0
        cdef unsigned long long a, b, lo, hi, total = 0
        cdef char* nb
        if at == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                a = self.at(ds[i])
                if a >= self.flushed:
                    out[i] = self.wbuf + (a - self.flushed)
                else:
                    at[m].a, at[m].b, at[m].i = a, a + (self.units(ds[i]) << 2), i
                    m += 1
            if m == 0:
                return 0
            qsort(at, m, sizeof(RecAt), _cmp_recat)
            i = 0  # pass 1: the bytes the runs cover
            while i < m:
                lo, hi, j = at[i].a, at[i].b, i + 1
                while j < m and at[j].a <= hi + FETCH_GAP:
                    if at[j].b > hi:
                        hi = at[j].b
                    j += 1
                total += hi - lo
                i = j
            if total > self.bcap:
                nb = <char*>realloc(self.bbuf, total)
                if nb == NULL:
                    raise MemoryError()
                self.bbuf, self.bcap = nb, total
            i, total = 0, 0  # pass 2: read each run, point at its records
            while i < m:
                lo, hi, j = at[i].a, at[i].b, i + 1
                while j < m and at[j].a <= hi + FETCH_GAP:
                    if at[j].b > hi:
                        hi = at[j].b
                    j += 1
                self.read_at(self.bbuf + total, hi - lo, lo)
                for k in range(i, j):
                    out[at[k].i] = self.bbuf + total + (at[k].a - lo)
                total += hi - lo
                i = j
            return 0
        finally:
            free(at)

    cdef void release(self) noexcept:
        """After a page's hits are built: a fetch buffer a very large page grew is not kept."""
        if self.bcap > (1 << 20):
            free(self.bbuf)
            self.bbuf = NULL
            self.bcap = 0

    cdef bytes cid(self, unsigned int d):
        return PyBytes_FromStringAndSize(self.get(d), 32)

    cdef unsigned long long size(self, unsigned int d) except? 0xFFFFFFFFFFFFFFFFULL:
        return _get_le(self.get(d) + 40, 8)

    cdef bytes span(self, Py_ssize_t lo, Py_ssize_t hi):
        """The records of docs lo..hi-1, as one bytes (a part not yet written -- after a failed
        write -- from ``wbuf``)."""
        cdef unsigned long long a = self.at(lo)
        cdef unsigned long long b = self.at(hi)
        cdef unsigned long long m = b if b < self.flushed else (a if a > self.flushed else self.flushed)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, b - a)
        if m > a:
            self.read_at(PyBytes_AS_STRING(out), m - a, a)
        if b > m:
            memcpy(PyBytes_AS_STRING(out) + (m - a), self.wbuf + (m - self.flushed), b - m)
        return out

    def items(self, Py_ssize_t lo, Py_ssize_t hi, list mimes):
        """(content id, name, mime, size) of docs lo..hi-1."""
        cdef bytes raw = self.span(lo, hi)
        cdef const char* r = PyBytes_AS_STRING(raw)
        cdef Py_ssize_t d
        cdef list out = []
        for d in range(lo, hi):
            out.append((PyBytes_FromStringAndSize(r, 32), PyUnicode_DecodeUTF8(r + REC_FIXED, _get_le(r + 36, 4), NULL),
                        mimes[_get_le(r + 32, 4)] or None, _get_le(r + 40, 8)))
            r += (REC_FIXED + _get_le(r + 36, 4) + 3) & ~3
        return out

    def section(self, str name):
        """The image section ``name`` (cids, names, doc_mime, doc_size, name_off) as a LazySection."""
        cdef Py_ssize_t n = self.n
        if name == "cids":
            return LazySection("B", 32 * n, lambda: self._chunks(0))
        if name == "names":
            return LazySection("B", self.name_bytes, lambda: self._chunks(1))
        if name == "doc_mime":
            return LazySection("I", 4 * n, lambda: self._chunks(2))
        if name == "doc_size":
            return LazySection("Q", 8 * n, lambda: self._chunks(3))
        if name == "name_off":
            return LazySection("Q", 8 * (n + 1), lambda: self._chunks(4))
        raise KeyError(name)

    def _chunks(self, int which):
        """One section's data, SECTION_DOCS docs at a time: content ids (0), names (1), mime ids
        (2), sizes (3), name offsets (4: n + 1 entries, from the records' name lengths)."""
        cdef Py_ssize_t n = self.n, lo = 0, hi, d, m, nl
        cdef unsigned long long noff = 0
        cdef bytes raw, out
        cdef array a
        cdef const char* r
        cdef const char* r0
        cdef char* w
        if which == 4:
            a = array("Q", [0])
            yield a
        while lo < n:
            hi = min(n, lo + SECTION_DOCS)
            raw = self.span(lo, hi)
            r = r0 = PyBytes_AS_STRING(raw)
            if which >= 2:
                a = array("Q" if which >= 3 else "I")
                resize_smart(a, hi - lo)
                for d in range(hi - lo):
                    nl = _get_le(r + 36, 4)
                    if which == 2:
                        a.data.as_uints[d] = _get_le(r + 32, 4)
                    elif which == 3:
                        a.data.as_ulonglongs[d] = _get_le(r + 40, 8)
                    else:
                        noff += nl
                        a.data.as_ulonglongs[d] = noff
                    r += (REC_FIXED + nl + 3) & ~3
                yield a
            else:
                m = 0
                if which == 0:
                    m = 32 * (hi - lo)
                else:
                    for d in range(hi - lo):
                        nl = _get_le(r + 36, 4)
                        m += nl
                        r += (REC_FIXED + nl + 3) & ~3
                    r = r0
                out = PyBytes_FromStringAndSize(NULL, m)
                w = PyBytes_AS_STRING(out)
                for d in range(hi - lo):
                    nl = _get_le(r + 36, 4)
                    if which == 0:
                        memcpy(w, r, 32)
                        w += 32
                    else:
                        memcpy(w, r + REC_FIXED, nl)
                        w += nl
                    r += (REC_FIXED + nl + 3) & ~3
                yield out
            lo = hi

    def adopt(self, bytearray cids, bytearray names, array name_off, array doc_mime, array doc_size):
        """Append the docs of a loaded (validated) image."""
        cdef Py_ssize_t d, n = len(doc_mime)
        cdef const char* c = PyByteArray_AS_STRING(cids)
        cdef const char* nm = PyByteArray_AS_STRING(names)
        cdef const unsigned long long* no = name_off.data.as_ulonglongs
        cdef const unsigned int* mi = doc_mime.data.as_uints
        cdef const unsigned long long* sz = doc_size.data.as_ulonglongs
        for d in range(n):
            self.append(c + 32 * d, mi[d], sz[d], nm + no[d], no[d + 1] - no[d])
            if self.wlen >= (4 << 20):
                self.flush()
        self.flush()


cdef inline void _put_le(char* p, unsigned long long v, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        p[i] = <char>((v >> (8 * i)) & 0xFF)


cdef inline unsigned long long _get_le(const char* p, int n) noexcept nogil:
    cdef const unsigned char* u = <const unsigned char*>p
    cdef unsigned long long v = 0
    cdef int i
    for i in range(n):
        v |= <unsigned long long>u[i] << (8 * i)
    return v


cdef array _size_classes(array q):
    """array('H') of the size classes of array('Q') q."""
    cdef array out = array("H")
    cdef Py_ssize_t i, n = len(q)
    resize_smart(out, n)
    for i in range(n):
        out.data.as_ushorts[i] = <unsigned short>_size_class(q.data.as_ulonglongs[i])
    return out


cdef class DocRuns:
    """Which share slot each doc belongs to (the image's ``doc_share``), as runs: a share update
    appends its docs as one contiguous id run, so ``lo`` (ascending first doc of each run) and
    ``slot`` replace a uint32 per doc (session 5: -3.8 MB at 1M items). ``slot_of(d)`` is a binary
    search (a hint -- the last run found -- makes a walk over nearby docs O(1) per doc)."""

    cdef public array lo, slot

    def __cinit__(self):
        self.lo, self.slot = array("I"), array("I")

    cdef int add(self, unsigned int lo, unsigned int slot) except -1:
        cdef Py_ssize_t n = len(self.lo)
        if n and self.slot.data.as_uints[n - 1] == slot and self.lo.data.as_uints[n - 1] <= lo:
            return 0  # the same slot again right after (the docs between are its own)
        push(self.lo, lo)
        push(self.slot, slot)
        return 0

    @staticmethod
    def of(array doc_share):
        cdef DocRuns r = DocRuns()
        cdef Py_ssize_t d, n = len(doc_share)
        cdef const unsigned int* a = doc_share.data.as_uints
        for d in range(n):
            if d == 0 or a[d] != a[d - 1]:
                push(r.lo, <unsigned int>d)
                push(r.slot, a[d])
        return r

    cdef inline unsigned int slot_of(self, unsigned int d, Py_ssize_t* hint) noexcept:
        cdef const unsigned int* lo = self.lo.data.as_uints
        cdef Py_ssize_t n = len(self.lo), a = hint[0], b
        if not (0 <= a < n and lo[a] <= d and (a + 1 == n or d < lo[a + 1])):
            a, b = 0, n
            while b - a > 1:  # the last run starting at or before d
                if lo[(a + b) >> 1] <= d:
                    a = (a + b) >> 1
                else:
                    b = (a + b) >> 1
            hint[0] = a
        return self.slot.data.as_uints[a]

    def expand(self, Py_ssize_t n):
        """doc_share as an array of n entries."""
        cdef array out = array("I")
        cdef Py_ssize_t r, d, nr = len(self.lo), end
        resize_smart(out, n)
        for r in range(nr):
            end = self.lo.data.as_uints[r + 1] if r + 1 < nr else n
            for d in range(self.lo.data.as_uints[r], end):
                out.data.as_uints[d] = self.slot.data.as_uints[r]
        return out


cdef class ExtCodes:
    """Each doc's extension term id (the image's ``doc_ext``) in 2 bits (session 5: -3.6 MB at
    1M items): 0 = none, 1 = the name's last token (its last forward-index id -- almost every
    extension), 2 = another id, kept in ``exc_doc`` / ``exc_term`` (sorted by doc: docs are
    appended in id order). ``get`` reads the forward index for code 1."""

    cdef public array codes, exc_doc, exc_term
    cdef public Py_ssize_t n

    def __cinit__(self):
        self.codes, self.exc_doc, self.exc_term = array("B"), array("I"), array("I")
        self.n = 0

    cdef int add(self, unsigned int t, const unsigned int* fwd, const unsigned int* fwd_off) except -1:
        """Append the next doc's extension id t (the doc's forward index is already appended)."""
        cdef Py_ssize_t d = self.n
        cdef unsigned int code = 0
        if t:
            code = 1 if fwd_off[d + 1] > fwd_off[d] and fwd[fwd_off[d + 1] - 1] == t else 2
        if (d & 3) == 0:
            resize_smart(self.codes, (d >> 2) + 1)
            self.codes.data.as_uchars[d >> 2] = 0
        self.codes.data.as_uchars[d >> 2] |= <unsigned char>(code << ((d & 3) * 2))
        if code == 2:
            push(self.exc_doc, <unsigned int>d)
            push(self.exc_term, t)
        self.n = d + 1
        return 0

    @staticmethod
    def of(array doc_ext, array fwd, array fwd_off):
        cdef ExtCodes e = ExtCodes()
        cdef Py_ssize_t d
        for d in range(len(doc_ext)):
            e.add(doc_ext.data.as_uints[d], fwd.data.as_uints, fwd_off.data.as_uints)
        return e

    def expand(self, array fwd, array fwd_off):
        """doc_ext as an array."""
        cdef array out = array("I")
        cdef Py_ssize_t d
        cdef ExtC x
        self.view(&x, fwd, fwd_off)
        resize_smart(out, self.n)
        for d in range(self.n):
            out.data.as_uints[d] = _ext_of(&x, <unsigned int>d)
        return out

    cdef void view(self, ExtC* x, array fwd, array fwd_off) noexcept:
        x.codes = self.codes.data.as_uchars
        x.exc_doc = self.exc_doc.data.as_uints
        x.exc_term = self.exc_term.data.as_uints
        x.nexc = len(self.exc_doc)
        x.fwd = fwd.data.as_uints
        x.fwd_off = fwd_off.data.as_uints


cdef struct ExtC:
    const unsigned char* codes
    const unsigned int* exc_doc
    const unsigned int* exc_term
    Py_ssize_t nexc
    const unsigned int* fwd
    const unsigned int* fwd_off


cdef inline unsigned int _ext_of(const ExtC* x, unsigned int d) noexcept nogil:
    cdef unsigned int code = (x.codes[d >> 2] >> ((d & 3) * 2)) & 3
    cdef Py_ssize_t a
    if code == 0:
        return 0
    if code == 1:
        return x.fwd[x.fwd_off[d + 1] - 1]
    a = lower_bound(x.exc_doc, 0, x.nexc, d)
    return x.exc_term[a] if a < x.nexc and x.exc_doc[a] == d else 0


class NState(_State):
    """The shared state layout, with NPostings for both posting sets and the term, prefix and
    tagset dictionaries in C (``Dict``: the image's blobs and offsets plus C hashes) instead of
    Python lists and dicts of str."""

    def __init__(self, doc_dir=None):
        _big_buffers_mapped()
        _State.__init__(self)
        self.lists = [NPostings(doc_dir), NPostings(doc_dir)]
        del self.names, self.name_off, self.cids, self.doc_mime
        del self.doc_share  # derived from the share runs (DocRuns)
        self.runs = DocRuns()
        del self.doc_ext  # 2 bits per doc (ExtCodes)
        self.exts = ExtCodes()
        self.doc_size = array("H")  # size classes (_size_class); the record holds the size
        del self.ts_pfx, self.ts_poff  # derived from ts_toks (derive_ts_pfx)
        self.docs = DocStore(doc_dir)
        del self.term_ids, self.terms, self.pfx_ids, self.pfx_list, self.tagset_keys, self.tagset_ids
        del self.sorted_terms, self.pending_terms
        self.pfx_blob = bytearray()
        self.pfx_off = array("Q", [0])
        self.tsk_blob = bytearray()
        self.tsk_off = array("Q", [0, 0])
        self.dict = Dict(self)
        self.job = None  # the last share update's background part (BgJob) until flushed

    def untrack_lists(self):
        self.untrack(self.mimes)

    def doc_items(self, lo, hi):
        return self.docs.items(lo, hi, self.mimes)

    @property
    def ndocs(self):
        return len(self.doc_tagset)

    def section(self, name):
        if name in ("names", "cids", "doc_mime", "doc_size", "name_off"):
            return self.docs.section(name)
        if name == "doc_share":
            return self.__dict__.get("doc_share") or (<DocRuns>self.runs).expand(len(self.doc_tagset))
        if name == "doc_ext":
            return self.__dict__.get("doc_ext") or (<ExtCodes>self.exts).expand(self.fwd, self.fwd_off)
        if name in ("ts_pfx", "ts_poff"):
            return derive_ts_pfx(self)[name == "ts_poff"]
        return getattr(self, name)

    def adopt_docs(self):
        self.docs.adopt(self.cids, self.names, self.name_off, self.doc_mime, self.doc_size)
        del self.names, self.name_off, self.cids, self.doc_mime
        self.runs = DocRuns.of(self.doc_share)
        del self.doc_share
        self.exts = ExtCodes.of(self.doc_ext, self.fwd, self.fwd_off)
        del self.doc_ext
        self.doc_size = _size_classes(self.doc_size)
        del self.ts_pfx, self.ts_poff  # validated equal to derive_ts_pfx
        for L in self.lists:
            L.to_disk(self)

    @property
    def nterms(self):
        return len(self.term_off) - 1

    @property
    def npfx(self):
        return len(self.pfx_off) - 1

    @property
    def ntagsets(self):
        return len(self.tsk_off) - 1

    def term_lookup(self, str tok):
        if not tok:
            return 0
        b = tok.encode("utf-8", "surrogatepass")
        cdef unsigned int t = (<Dict>self.dict).term_find(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
        return t if t else -1

    def pfx_lookup(self, str p):
        cdef Dict D = self.dict
        b = p.encode("utf-8", "surrogatepass")
        cdef unsigned int v = D.ph.find(_hash_bytes(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)), PyBytes_AS_STRING(b),
                                        PyBytes_GET_SIZE(b), PyByteArray_AS_STRING(D.pblob), D.poff.data.as_ulonglongs)
        return v - 1 if v else None

    def prefix_terms(self, str tok):
        """Ids of the terms longer than ``tok`` that start with it, in term order."""
        cdef Dict D = self.dict
        D.sort_terms()
        b = tok.encode("utf-8", "surrogatepass")
        cdef const char* pb = PyBytes_AS_STRING(b)
        cdef Py_ssize_t pl = PyBytes_GET_SIZE(b), lo = 0, hi = len(D.sorted_ids), mid, tl
        cdef const unsigned int* ids = D.sorted_ids.data.as_uints
        cdef const char* blob = PyByteArray_AS_STRING(D.tblob)
        cdef const unsigned long long* off = D.toff.data.as_ulonglongs
        cdef unsigned int t
        cdef int c
        cdef list out = []
        while lo < hi:  # first term >= tok
            mid = (lo + hi) >> 1
            t = ids[mid]
            tl = off[t + 1] - off[t]
            c = memcmp(blob + off[t], pb, tl if tl < pl else pl)
            if c < 0 or (c == 0 and tl < pl):
                lo = mid + 1
            else:
                hi = mid
        while lo < len(D.sorted_ids):
            t = ids[lo]
            tl = off[t + 1] - off[t]
            if tl < pl or memcmp(blob + off[t], pb, pl) != 0:
                break
            if tl != pl:
                out.append(t)
            lo += 1
        return out

    def term_str(self, unsigned int t):
        cdef const unsigned long long* off = (<array>self.term_off).data.as_ulonglongs
        return PyUnicode_DecodeUTF8(PyByteArray_AS_STRING(self.term_blob) + off[t], off[t + 1] - off[t], NULL)

    def tags_of(self, unsigned int ts):
        t = self.tag_tuples.get(ts)
        if t is None:
            a, b = self.tsk_off[ts], self.tsk_off[ts + 1]
            t = self.tag_tuples[ts] = _tags_from_key(self.tsk_blob[a:b].decode("utf-8", "surrogatepass"))
        return t

    def text_section(self, name):
        if name == "pfx_list":
            return self.pfx_blob, self.pfx_off
        if name == "tagset_keys":
            return self.tsk_blob, self.tsk_off
        return _State.text_section(self, name)

    def load_dicts(self, raw):
        """Take the dictionaries from an image's sections (validated: UTF-8 at entry
        boundaries, no duplicate entries)."""
        self.mimes = _texts(raw, "mimes")
        self.mime_ids = {m: i for i, m in enumerate(self.mimes)}
        self.pfx_blob, self.pfx_off = bytearray(raw["pfx_list"]), raw["pfx_list#"]
        self.tsk_blob, self.tsk_off = bytearray(raw["tagset_keys"]), raw["tagset_keys#"]
        for blob, off, strict, ne in ((self.term_blob, self.term_off, True, 1), (self.pfx_blob, self.pfx_off, False, 0),
                                      (self.tsk_blob, self.tsk_off, False, 1)):
            if len(off) < 1 or off[0] != 0 or off[len(off) - 1] != len(blob) or not is_monotonic(off):
                raise IndexImageError("bad dictionary offsets")
            _check_utf8(blob, off, strict, ne)
        if len(self.term_off) < 2 or self.term_off[1] != 0 or len(self.tsk_off) < 2 or self.tsk_off[1] != 0:
            raise IndexImageError("bad dictionary entry 0")
        self.dict = Dict(self)


cdef enum:
    TCACHE = 2048     # entries of the small term cache (a power of two)
    TCACHE_KEY = 24   # longest term it holds


cdef inline bint _eq(const char* a, const char* b, Py_ssize_t n) noexcept nogil:
    """a[:n] == b[:n] for short keys (no memcmp call)."""
    cdef Py_ssize_t i
    for i in range(n):
        if a[i] != b[i]:
            return False
    return True


cdef struct HSlot:
    unsigned int h      # 32-bit hash
    unsigned int v      # value (0 = empty)
    unsigned long long k8  # a key of <= 7 bytes itself (bytes + length + 1 in the top byte), else LONG_KEY


cdef unsigned long long LONG_KEY = 0xFF00000000000000ULL


cdef struct KSlot:
    unsigned int h      # 32-bit hash
    unsigned int v      # value (0 = empty)


ctypedef fused slot_t:
    HSlot
    KSlot


cdef slot_t* _slot_for(slot_t** slots, size_t* cap, size_t count, unsigned int h) except NULL:
    """The empty slot where hash ``h`` goes in an open-addressing table (linear probing, value
    0 = empty), after doubling the table when it would pass half full (shared by TermHash
    and KeyHash, whose slots differ only in TermHash's inline short key)."""
    cdef slot_t* old = slots[0]
    cdef slot_t* new
    cdef size_t oldcap = cap[0], i, j, mask
    if (count + 1) * 2 > oldcap:
        new = <slot_t*>calloc(oldcap * 2, sizeof(slot_t))
        if new == NULL:
            raise MemoryError()
        mask = oldcap * 2 - 1
        for j in range(oldcap):
            if old[j].v:
                i = old[j].h & mask
                while new[i].v:
                    i = (i + 1) & mask
                new[i] = old[j]
        free(old)
        slots[0], cap[0] = new, oldcap * 2
    mask = cap[0] - 1
    i = h & mask
    while slots[0][i].v:
        i = (i + 1) & mask
    return &slots[0][i]




cdef inline unsigned long long _key8(const char* buf, Py_ssize_t blen) noexcept:
    cdef unsigned long long k = 0
    if blen > 7:
        return LONG_KEY
    memcpy(&k, buf, blen)
    return k | (<unsigned long long>(blen + 1) << 56)


cdef class BlobHash:
    """A C hash from UTF-8 bytes to an id over a blob + offsets table: entry i (``off[i]`` ..
    ``off[i + 1]``) is stored under the value ``i + shift``; a value of 0 means empty, so
    tables whose entry 0 is a real key (the prefixes) use shift 1. Open addressing (see
    _slot_for); the slot layout, ``find`` and ``put`` are the subclasses'. ``synced`` =
    entries inserted."""
    cdef size_t cap, count, synced
    cdef unsigned int shift

    cdef unsigned int find(self, unsigned int h, const char* buf, Py_ssize_t blen, const char* blob,
                           const unsigned long long* off) noexcept:
        """The value stored for buf[:blen] (hash h), 0 if absent."""
        return 0

    cdef int put(self, unsigned int h, unsigned int v, const char* buf, Py_ssize_t blen) except -1:
        """Store value v for the key buf[:blen] (hash h), known to be absent."""
        raise TypeError("BlobHash is abstract")

    cdef int sync(self, bytearray blob, array off) except -1:
        """Insert the entries synced .. len(off) - 2; False (0) if one of them duplicates an
        earlier key (a damaged image), else 1."""
        cdef size_t t, n = len(off) - 1
        cdef const char* b = PyByteArray_AS_STRING(blob)
        cdef const unsigned long long* o = off.data.as_ulonglongs
        cdef unsigned int h
        cdef Py_ssize_t kl
        for t in range(self.synced, n):
            kl = <Py_ssize_t>(o[t + 1] - o[t])
            h = _hash_bytes(b + o[t], kl)
            if self.find(h, b + o[t], kl, b, o):
                return 0
            self.put(h, <unsigned int>t + self.shift, b + o[t], kl)
        self.synced = n
        return 1

    cdef int add(self, bytearray blob, array off, unsigned int h, const char* buf, Py_ssize_t blen) except -1:
        """Append buf[:blen] to the table (a key known to be absent) and hash it."""
        cdef Py_ssize_t n0 = PyByteArray_GET_SIZE(blob)
        PyByteArray_Resize(blob, n0 + blen)
        memcpy(PyByteArray_AS_STRING(blob) + n0, buf, blen)
        push_q(off, n0 + blen)
        self.put(h, <unsigned int>(len(off) - 2) + self.shift, buf, blen)
        self.synced = len(off) - 1
        return 0


cdef class TermHash(BlobHash):
    """BlobHash whose 16-byte slots hold the hash, the value and a key of up to 7 bytes itself
    (most tokens: a hit touches only the slot); longer keys are compared against the blob."""
    cdef HSlot* slots

    def __cinit__(self, unsigned int shift=0, size_t first=0):
        self.shift = shift
        self.cap = 1024
        self.count = 0
        self.synced = first
        self.slots = <HSlot*>calloc(self.cap, sizeof(HSlot))
        if self.slots == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.slots)

    cdef unsigned int find(self, unsigned int h, const char* buf, Py_ssize_t blen, const char* blob,
                           const unsigned long long* off) noexcept:
        cdef size_t mask = self.cap - 1, i = h & mask
        cdef unsigned long long k8 = _key8(buf, blen)
        cdef HSlot* e
        cdef unsigned int t
        while True:
            e = &self.slots[i]
            if e.v == 0:
                return 0
            if e.h == h and e.k8 == k8:
                if k8 != LONG_KEY:
                    return e.v
                t = e.v - self.shift
                if <Py_ssize_t>(off[t + 1] - off[t]) == blen and _eq(blob + off[t], buf, blen):
                    return e.v
            i = (i + 1) & mask

    cdef int put(self, unsigned int h, unsigned int v, const char* buf, Py_ssize_t blen) except -1:
        cdef HSlot* e = _slot_for(&self.slots, &self.cap, self.count, h)
        e.h = h
        e.v = v
        e.k8 = _key8(buf, blen)
        self.count += 1
        return 0


cdef class KeyHash(BlobHash):
    """BlobHash for long keys (the tagset keys: directory paths, rarely 7 bytes or less):
    8-byte slots of (hash, value), every candidate compared against the blob -- half the
    memory of TermHash's 16-byte slots, whose inline key would almost never be used. Shift 0:
    entry 0, the empty key, is never inserted."""
    cdef KSlot* slots

    def __cinit__(self, size_t first=1):
        self.shift = 0
        self.cap = 1024
        self.count = 0
        self.synced = first
        self.slots = <KSlot*>calloc(self.cap, sizeof(KSlot))
        if self.slots == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.slots)

    cdef unsigned int find(self, unsigned int h, const char* buf, Py_ssize_t blen, const char* blob,
                           const unsigned long long* off) noexcept:
        cdef size_t mask = self.cap - 1, i = h & mask
        cdef KSlot* e
        cdef unsigned int t
        while True:
            e = &self.slots[i]
            if e.v == 0:
                return 0
            if e.h == h:
                t = e.v
                if <Py_ssize_t>(off[t + 1] - off[t]) == blen and _eq(blob + off[t], buf, blen):
                    return t
            i = (i + 1) & mask

    cdef int put(self, unsigned int h, unsigned int v, const char* buf, Py_ssize_t blen) except -1:
        cdef KSlot* e = _slot_for(&self.slots, &self.cap, self.count, h)
        e.h = h
        e.v = v
        self.count += 1
        return 0


cdef inline unsigned int _hash_bytes(const char* buf, Py_ssize_t n) noexcept:
    """FNV-1a (64-bit), folded to 32 bits."""
    cdef unsigned long long h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <unsigned char>buf[i]) * 1099511628211ULL
    return <unsigned int>(h ^ (h >> 32))


cdef inline Py_ssize_t _char_prefix(const char* buf, Py_ssize_t blen, int nchars) noexcept:
    """Byte length of the first ``nchars`` characters of UTF-8 buf[:blen]; -1 if it has no more
    than ``nchars`` characters (a strict prefix needs a longer term)."""
    cdef Py_ssize_t i
    cdef int seen = 0
    for i in range(blen):
        if (<unsigned char>buf[i] & 0xC0) != 0x80:
            if seen == nchars:
                return i
            seen += 1
    return -1


cdef struct TokEnt:      # an ASCII name tokenized a few items ahead (add_share; see Dict.scan_ascii)
    Py_ssize_t owner     # the row it holds (-1: none)
    int ntok
    unsigned int h[64]
    unsigned short off[64]
    unsigned char len[64]
    char b[4096]         # at most 64 tokens of at most 64 bytes

cdef enum:
    TOK_AHEAD = 4        # items tokenized ahead
    TOK_RING = 8         # ring entries (a power of two > TOK_AHEAD)


cdef class Dict:
    """The native term, prefix and tagset dictionaries: UTF-8 blobs with offsets (the same bytes
    and offsets the image stores) and a C hash each; no Python str or dict per entry. Terms
    (id 0 = "") with their strict prefixes' ids + 1 in ``term_pfx``; prefixes (the first 3 or 4
    characters of longer terms, in order of first use); tagset keys (see _base._tags_key, id 0 =
    no tags)."""
    cdef bytearray tblob, pblob, kblob
    cdef array toff, tpfx, poff, koff
    cdef TermHash th, ph
    cdef KeyHash kh
    cdef array sorted_ids     # term ids sorted by their bytes (prefix expansion), the first nsorted terms
    cdef size_t nsorted
    # the pending share update (BgJob) while its build thread may run: it reads the forward
    # index, the doc tagsets, the tagset tokens and term_pfx, so an append that would move one
    # of them (a realloc) waits for it first (settle_job)
    cdef object job
    # a small direct-mapped cache of short terms (hash, id, bytes): names repeat their tokens
    # (so, gz, debian, lib...), and a hit touches neither the hash table nor the blob
    cdef unsigned int c_h[TCACHE]
    cdef unsigned int c_id[TCACHE]
    cdef unsigned char c_len[TCACHE]
    cdef char c_key[TCACHE][TCACHE_KEY]

    cdef inline void _remember(self, unsigned int c, unsigned int h, const char* buf, Py_ssize_t blen,
                               unsigned int t) noexcept:
        if blen <= TCACHE_KEY:
            self.c_h[c] = h
            self.c_id[c] = t
            self.c_len[c] = <unsigned char>blen
            memcpy(self.c_key[c], buf, blen)

    def __init__(self, st):
        self.tblob, self.toff, self.tpfx = st.term_blob, st.term_off, st.term_pfx
        self.pblob, self.poff = st.pfx_blob, st.pfx_off
        self.kblob, self.koff = st.tsk_blob, st.tsk_off
        self.th, self.ph, self.kh = TermHash(0, 1), TermHash(1, 0), KeyHash(1)
        self.sorted_ids = array("I")
        self.nsorted = 1
        if not (self.th.sync(self.tblob, self.toff) and self.ph.sync(self.pblob, self.poff)
                and self.kh.sync(self.kblob, self.koff)):
            raise IndexImageError("duplicate entries in a search index dictionary")

    cdef int settle_job(self) except -1:
        """Wait for the pending share update's build thread (an array it reads is about to move)."""
        if self.job is not None:
            (<BgJob>self.job).wait()
            self.job = None
        return 0

    cdef unsigned int term_find(self, const char* buf, Py_ssize_t blen) noexcept:
        return self.th.find(_hash_bytes(buf, blen), buf, blen, PyByteArray_AS_STRING(self.tblob),
                            self.toff.data.as_ulonglongs)

    cdef unsigned int term_id(self, const char* buf, Py_ssize_t blen) except? 0xFFFFFFFF:
        """The id of the term with UTF-8 bytes buf[:blen], added (with its prefixes) if new."""
        return self.term_id_h(buf, blen, _hash_bytes(buf, blen))

    cdef unsigned int term_id_h(self, const char* buf, Py_ssize_t blen, unsigned int h) except? 0xFFFFFFFF:
        """term_id with the bytes' hash (_hash_bytes) already known."""
        cdef unsigned int t, p
        cdef Py_ssize_t pl
        cdef int L
        cdef unsigned int c = h & (TCACHE - 1)
        if self.c_id[c] and self.c_h[c] == h and self.c_len[c] == blen and _eq(self.c_key[c], buf, blen):
            return self.c_id[c]
        t = self.th.find(h, buf, blen, PyByteArray_AS_STRING(self.tblob), self.toff.data.as_ulonglongs)
        if t:
            self._remember(c, h, buf, blen, t)
            return t
        if len(self.toff) - 1 >= (1 << 30):
            raise OverflowError("more than 2**30 distinct terms")
        if len(self.poff) - 1 + len(PLENS) > (1 << 30):  # prefix ids are posting-list ids too (30 bits)
            raise OverflowError("more than 2**30 distinct prefixes")
        self.th.add(self.tblob, self.toff, h, buf, blen)
        t = <unsigned int>(len(self.toff) - 2)
        self._remember(c, h, buf, blen, t)
        if self.job is not None and scp2p_room(self.tpfx) <= len(PLENS):
            self.settle_job()
        for L in PLENS:
            pl = _char_prefix(buf, blen, L)
            if pl < 0:
                push(self.tpfx, 0)
                continue
            h = _hash_bytes(buf, pl)
            p = self.ph.find(h, buf, pl, PyByteArray_AS_STRING(self.pblob), self.poff.data.as_ulonglongs)
            if not p:
                self.ph.add(self.pblob, self.poff, h, buf, pl)
                p = <unsigned int>(len(self.poff) - 1)
            push(self.tpfx, p)
        return t

    cdef unsigned int term_of(self, str tok) except? 0xFFFFFFFF:
        """term_id of a token given as str."""
        cdef Py_ssize_t n
        cdef const char* b
        if PyUnicode_IS_ASCII(tok):
            return self.term_id(PyUnicode_1BYTE_DATA(tok), PyUnicode_GET_LENGTH(tok))
        e = tok.encode()
        return self.term_id(PyBytes_AS_STRING(e), PyBytes_GET_SIZE(e))

    cdef void scan_ascii(self, str text, Py_ssize_t take, TokEnt* e) noexcept:
        """Tokenize an ASCII text's first ``take`` tokens into ``e`` (lowercased bytes, lengths,
        _hash_bytes hashes -- what _ascii_ids would compute) and prefetch their term-hash slots
        (those not in the small cache): add_share calls it a few items ahead, so the slot loads
        overlap instead of each token waiting for its own cache miss, and the item's own turn
        reads the tokens from ``e`` instead of scanning the name again."""
        cdef const char* s = PyUnicode_1BYTE_DATA(text)
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text), j
        cdef unsigned long long hh = 14695981039346656037ULL
        cdef unsigned int h
        cdef int blen = 0, k = 0, pos = 0
        cdef char c
        for j in range(n + 1):
            if k >= take:
                break
            c = s[j] if j < n else 0
            if c >= 65 and c <= 90:
                c += 32
            if (c >= 97 and c <= 122) or (c >= 48 and c <= 57):
                if blen < 64:  # the same bytes and hash as _ascii_ids / _hash_bytes
                    hh = (hh ^ <unsigned char>c) * 1099511628211ULL
                    e.b[pos + blen] = c
                    blen += 1
            elif blen:
                h = <unsigned int>(hh ^ (hh >> 32))
                if not (self.c_id[h & (TCACHE - 1)] and self.c_h[h & (TCACHE - 1)] == h):
                    SCP2P_PREFETCH(&self.th.slots[h & (self.th.cap - 1)])
                e.h[k] = h
                e.off[k] = <unsigned short>pos
                e.len[k] = <unsigned char>blen
                pos += blen
                hh = 14695981039346656037ULL
                blen = 0
                k += 1
        e.ntok = k

    cdef int sort_terms(self) except -1:
        """Bring ``sorted_ids`` up to every term (new ids sorted, then merged in)."""
        global _sort_blob, _sort_off
        cdef size_t n = len(self.toff) - 1, m, i, a, b, k
        cdef unsigned int* fresh
        cdef array out
        if self.nsorted >= n:
            return 0
        m = n - self.nsorted
        fresh = <unsigned int*>malloc(m * sizeof(unsigned int))
        if fresh == NULL:
            raise MemoryError()
        for i in range(m):
            fresh[i] = <unsigned int>(self.nsorted + i)
        _sort_blob = PyByteArray_AS_STRING(self.tblob)
        _sort_off = self.toff.data.as_ulonglongs
        qsort(fresh, m, sizeof(unsigned int), _cmp_terms)
        out = array("I")
        resize_smart(out, len(self.sorted_ids) + m)
        a = b = k = 0
        while a < <size_t>len(self.sorted_ids) or b < m:
            if b >= m or (a < <size_t>len(self.sorted_ids) and
                          _cmp_terms(&self.sorted_ids.data.as_uints[a], &fresh[b]) < 0):
                out.data.as_uints[k] = self.sorted_ids.data.as_uints[a]
                a += 1
            else:
                out.data.as_uints[k] = fresh[b]
                b += 1
            k += 1
        free(fresh)
        self.sorted_ids = out
        self.nsorted = n
        return 0


cdef const char* _sort_blob = NULL
cdef const unsigned long long* _sort_off = NULL


cdef int _cmp_terms(const void* x, const void* y) noexcept nogil:
    """Bytewise order of two terms (UTF-8 bytewise order is str order)."""
    cdef unsigned int a = (<const unsigned int*>x)[0], b = (<const unsigned int*>y)[0]
    cdef Py_ssize_t la = _sort_off[a + 1] - _sort_off[a], lb = _sort_off[b + 1] - _sort_off[b]
    cdef int c = memcmp(_sort_blob + _sort_off[a], _sort_blob + _sort_off[b], la if la < lb else lb)
    if c:
        return c
    return -1 if la < lb else (1 if la > lb else 0)


cdef bytes _key_bytes(tuple tags):
    """UTF-8 (surrogatepass) of _base._tags_key(tags): built from the tags' bytes for the usual
    tags (non-empty str without NUL or a leading \\x01)."""
    cdef list parts
    for t in tags:
        if type(t) is not str or not t or "\x00" in <str>t or (<str>t)[0] == "\x01":
            return _tags_key(tags).encode("utf-8", "surrogatepass")
    if len(tags) == 1:
        return (<str>tags[0]).encode("utf-8", "surrogatepass") + b"\x00"
    parts = [(<str>t).encode("utf-8", "surrogatepass") for t in tags]
    return b"\x00".join(parts)


cdef int _ascii_ids(Dict D, const char* s, Py_ssize_t n, int take, unsigned int* out) except -1:
    """Term ids of the first ``take`` tokens of ASCII text s[:n] into ``out`` (the tokenizer's
    fast path, token by token through the term hash); returns how many."""
    cdef Py_ssize_t j
    cdef int k = 0, blen = 0
    cdef char buf[64]
    cdef char c
    for j in range(n + 1):
        if k >= take:
            break
        c = s[j] if j < n else 0
        if (c >= 97 and c <= 122) or (c >= 48 and c <= 57):
            if blen < 64:
                buf[blen] = c
                blen += 1
        elif c >= 65 and c <= 90:
            if blen < 64:
                buf[blen] = c + 32
                blen += 1
        elif blen:
            out[k] = D.term_id(buf, blen)
            blen = 0
            k += 1
    return k


cdef int _MAX_TAG = MAX_TAG_TOKENS
if _MAX_TAG > 64:  # _tagset's id buffer holds 64
    raise ImportError("MAX_TAG_TOKENS > 64")


cdef int _tag_term_ids(Dict D, object tag, int budget, dict cache, unsigned int* out) except -1:
    """The term ids of a tag's first ``budget`` tokens (tokenize's cap applies) into ``out``;
    returns how many (the same ids, in the same order, as ``[term id of t for t in
    tokenize(tag)[:budget]]``). ASCII tags are read from their bytes; others are tokenized,
    their ids cached per call under the tag string (a str never equals the tuple keys), only
    whole, so ids are assigned in the same order as without the cache."""
    cdef const char* s
    cdef Py_ssize_t n
    cdef int nw, k
    cdef tuple tt
    if budget <= 0:
        return 0
    if type(tag) is str and PyUnicode_IS_ASCII(tag):
        s = PyUnicode_1BYTE_DATA(tag)
        n = PyUnicode_GET_LENGTH(tag)
        nw = _alnum_runs(s, n)
        if nw > MAX_TOKENS_PER_FIELD:
            nw = MAX_TOKENS_PER_FIELD
        return _ascii_ids(D, s, n, nw if nw <= budget else budget, out)
    tt = cache.get(tag)
    if tt is None:
        words = tokenize(tag)
        tt = tuple([D.term_of(t) for t in words[:budget]])
        if len(words) <= budget:
            cache[tag] = tt
    tt = tt[:budget]
    for k in range(len(tt)):
        out[k] = tt[k]
    return <int>len(tt)


cdef Py_ssize_t _plain_key(tuple tags, char* buf, Py_ssize_t cap) noexcept:
    """_tags_key(tags) for the usual tags -- ASCII str, non-empty, no NUL, no leading \\x01 --
    written into buf (NUL-joined; one tag ends with its NUL); its length, or -1 when a tag is not
    of that kind or the key would not fit in cap bytes."""
    cdef Py_ssize_t k, n, pos = 0, nt = len(tags)
    cdef const char* s
    cdef PyObject* t
    for k in range(nt):
        t = PyTuple_GET_ITEM(tags, k)
        if not PyUnicode_CheckExact(<object>t) or not PyUnicode_IS_ASCII(<object>t):
            return -1
        n = PyUnicode_GET_LENGTH(<object>t)
        s = PyUnicode_1BYTE_DATA(<object>t)
        if n == 0 or s[0] == 1 or memchr(s, 0, n) != NULL or pos + n + 1 > cap:
            return -1
        memcpy(buf + pos, s, n)
        pos += n
        if k + 1 < nt or nt == 1:
            buf[pos] = 0
            pos += 1
    return pos


cdef int _tagset(object st, tuple tags, dict cache, Dict D) except -1:
    """State.tagset_id, typed, with a per-call cache keyed by the tags tuple (the key bytes of
    the usual tags built on the stack: no Python object per tagset)."""
    o = cache.get(tags)
    if o is not None:
        return o
    if not tags:
        return 0
    cdef char kb[1024]
    cdef bytes key = None
    cdef const char* buf = kb
    cdef Py_ssize_t blen = _plain_key(tags, kb, sizeof(kb))
    if blen < 0:
        key = _key_bytes(tags)
        buf, blen = PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)
    cdef unsigned int h = _hash_bytes(buf, blen)
    cdef int i = D.kh.find(h, buf, blen, PyByteArray_AS_STRING(D.kblob), D.koff.data.as_ulonglongs)
    if i:
        cache[tags] = i
        return i
    cdef int ntok = 0, k, m
    cdef array toks = st.ts_toks
    cdef Py_ssize_t start = len(toks)
    cdef unsigned int ids[64]
    if D.job is not None and (scp2p_room(toks) <= 2 * _MAX_TAG or scp2p_room(st.ts_toff) <= 1):
        D.settle_job()  # at most MAX_TAG_TOKENS tokens and the 0s between tags are appended
    D.kh.add(D.kblob, D.koff, h, buf, blen)
    i = <int>(len(D.koff) - 2)
    for tag in tags:
        k = _tag_term_ids(D, tag, _MAX_TAG - ntok, cache, ids)
        if not k:
            continue
        ntok += k
        if len(toks) > start:
            push(toks, 0)
        for m in range(k):
            push(toks, ids[m])
    push_q(st.ts_toff, len(toks))
    cache[tags] = i
    return i


cdef struct SortKey:    # one row's rank key (ntok, name, content id), pointing into the row's objects
    unsigned long long k0   # ntok in the top byte, then the name's first 7 bytes (big-endian, 0-padded)
    Py_ssize_t ntok
    const char* name
    Py_ssize_t nlen
    const char* cid
    Py_ssize_t clen
    Py_ssize_t idx


cdef int _cmp_keys(const void* a, const void* b) noexcept nogil:
    """(ntok, name, content id) order; ASCII names compare bytewise exactly as str does."""
    cdef const SortKey* x = <const SortKey*>a
    cdef const SortKey* y = <const SortKey*>b
    cdef int c
    if x.k0 != y.k0:  # decides most comparisons (a tie, e.g. equal first bytes or a NUL, falls through)
        return -1 if x.k0 < y.k0 else 1
    if x.ntok != y.ntok:
        return -1 if x.ntok < y.ntok else 1
    c = memcmp(x.name, y.name, x.nlen if x.nlen < y.nlen else y.nlen)
    if c == 0 and x.nlen != y.nlen:
        c = -1 if x.nlen < y.nlen else 1
    if c:
        return c
    c = memcmp(x.cid, y.cid, x.clen if x.clen < y.clen else y.clen)
    if c == 0 and x.clen != y.clen:
        c = -1 if x.clen < y.clen else 1
    return c


cdef struct KI:
    unsigned long long k
    Py_ssize_t i


cdef int _rank_sort(SortKey* keys, Py_ssize_t n, Py_ssize_t* order) except -1:
    """order = the rows' indexes sorted by _cmp_keys: an LSD radix sort on the 64-bit prefix key
    (k0: ntok, then the name's first 7 bytes, an order consistent with the full key), then each
    run of equal k0 sorted with the full comparator (``keys[i].idx`` must be i)."""
    cdef KI* a = <KI*>malloc((n + 1) * sizeof(KI))
    cdef KI* b = <KI*>malloc((n + 1) * sizeof(KI))
    cdef KI* t
    cdef SortKey* tk = NULL
    cdef size_t cnt[256]
    cdef size_t tot, c
    cdef Py_ssize_t i, j, m
    cdef int shift
    try:
        if a == NULL or b == NULL:
            raise MemoryError()
        for i in range(n):
            a[i].k = keys[i].k0
            a[i].i = i
        for shift in range(0, 64, 8):
            if n < 2:
                break
            memset(cnt, 0, sizeof(cnt))
            for i in range(n):
                cnt[(a[i].k >> shift) & 255] += 1
            if cnt[(a[0].k >> shift) & 255] == <size_t>n:
                continue  # every key has the same byte here
            tot = 0
            for i in range(256):
                c = cnt[i]
                cnt[i] = tot
                tot += c
            for i in range(n):
                c = (a[i].k >> shift) & 255
                b[cnt[c]] = a[i]
                cnt[c] += 1
            t = a
            a = b
            b = t
        i = 0
        while i < n:
            j = i + 1
            while j < n and a[j].k == a[i].k:
                j += 1
            if j - i == 1:
                order[i] = a[i].i
            else:
                tk = <SortKey*>malloc((j - i) * sizeof(SortKey))
                if tk == NULL:
                    raise MemoryError()
                for m in range(j - i):
                    tk[m] = keys[a[i + m].i]
                qsort(tk, j - i, sizeof(SortKey), _cmp_keys)
                for m in range(j - i):
                    order[i + m] = tk[m].idx
                free(tk)
                tk = NULL
            i = j
    finally:
        free(a)
        free(b)
        free(tk)
    return 0


cdef class Rows:
    """One share's items for add_share, in rank order (see _base._prepare_items): parallel lists
    instead of a tuple per row, the order as a C index array (no per-item container objects for
    the GC to scan). ``toks[i]`` is None for an ASCII name (add_share scans its bytes)."""
    cdef list names, cids, mimes, tags, toks
    cdef unsigned long long* sizes
    cdef Py_ssize_t* ntok
    cdef Py_ssize_t* order
    cdef Py_ssize_t n

    def __dealloc__(self):
        free(self.sizes)
        free(self.ntok)
        free(self.order)

    def __len__(self):
        return self.n


_ITEM_FIELDS = ("content_id", "size", "name", "mime", "tags")
cdef object _item_type = None
cdef Py_ssize_t _item_off[5]


cdef bint _item_layout(tp) except -1:
    """Cache the slot offsets of an item type's five fields when each is a plain object slot
    (a slotted class such as ItemV1: a member descriptor of type T_OBJECT_EX in the type's own
    dict and no override on the way). False for anything else (prepare then uses getattr)."""
    global _item_type
    cdef int i
    cdef PyMemberDef* m
    cdef Py_ssize_t off[5]
    if _item_type is tp:
        return True
    if not isinstance(tp, type):
        return False
    for i in range(5):
        desc = (<type>tp).__dict__.get(_ITEM_FIELDS[i])
        if type(desc).__name__ != "member_descriptor" or getattr(tp, _ITEM_FIELDS[i]) is not desc:
            return False
        m = (<PyMemberDescrObject*><void*>desc).d_member
        if m.type != T_OBJECT_EX:
            return False
        off[i] = m.offset
    for i in range(5):  # only a complete layout replaces the cached one
        _item_off[i] = off[i]
    _item_type = tp
    return True


cdef inline object _field(object it, int i, bint direct):
    """Field i of an item: straight from its slot when the layout is known and the slot is set."""
    cdef PyObject* v
    if direct:
        v = (<PyObject**>((<char*><void*>it) + _item_off[i]))[0]
        if v != NULL:
            return <object>v
    return getattr(it, _ITEM_FIELDS[i])


from os import urandom as _urandom
cdef unsigned long long _cid_seed = int.from_bytes(_urandom(8), "little")


cdef inline unsigned long long _cid_hash(const char* p) noexcept nogil:
    """A 32-byte content id's hash for prepare's duplicate check (seeded per process, so a
    crafted catalog cannot pile its ids into one probe chain)."""
    cdef unsigned long long w[4]
    cdef unsigned long long h
    memcpy(w, p, 32)
    h = _cid_seed ^ w[0]
    h = (h ^ (h >> 29)) * 0xbf58476d1ce4e5b9ULL
    h = (h ^ w[1] ^ (h >> 32)) * 0x94d049bb133111ebULL
    h = (h ^ w[2] ^ (h >> 29)) * 0xbf58476d1ce4e5b9ULL
    h = (h ^ w[3] ^ (h >> 32)) * 0x94d049bb133111ebULL
    return h ^ (h >> 31)


cdef int _cid_table_grow(unsigned int** tab, size_t* cap, list cids, Py_ssize_t n) except -1:
    """Double prepare's duplicate table (rows + 1 by content id hash) and put rows 0..n-1 back."""
    cdef size_t ncap = cap[0] * 2 if cap[0] else 1024, i
    cdef Py_ssize_t k
    cdef unsigned int* nt = <unsigned int*>calloc(ncap, sizeof(unsigned int))
    if nt == NULL:
        raise MemoryError()
    for k in range(n):
        i = _cid_hash(PyBytes_AS_STRING(<bytes>PyList_GET_ITEM(cids, k))) & (ncap - 1)
        while nt[i]:
            i = (i + 1) & (ncap - 1)
        nt[i] = <unsigned int>(k + 1)
    free(tab[0])
    tab[0], cap[0] = nt, ncap
    return 0


def prepare(items):
    """The share's items in rank order, duplicate content ids dropped (a ``Rows``)."""
    cdef unsigned int* seen = NULL  # rows + 1 by content id hash (open addressing, half full at most)
    cdef size_t scap = 0, si
    cdef bint dup
    cdef Rows r = Rows()
    cdef list names = [], cids = [], mimes = [], tags = [], toks = [], keyed
    cdef bytes cid
    cdef str name
    cdef bint ascii = True
    cdef Py_ssize_t n = 0, cap = 0, i, nt, j
    cdef void* nv
    cdef SortKey* keys
    cdef object tp = None
    cdef bint direct = False
    try:
        for it in items:
            if type(it) is not tp:
                tp = type(it)
                direct = _item_layout(tp)
            c = _field(it, 0, direct)
            cid = <bytes>c if type(c) is bytes else bytes(c)
            if PyBytes_GET_SIZE(cid) != 32:
                raise SearchError("content ids must be 32 bytes")
            if <size_t>(n + 1) * 2 > scap:
                _cid_table_grow(&seen, &scap, cids, n)
            si = _cid_hash(PyBytes_AS_STRING(cid)) & (scap - 1)
            dup = False
            while seen[si]:  # a duplicate content id: the first one wins
                if memcmp(PyBytes_AS_STRING(<bytes>PyList_GET_ITEM(cids, seen[si] - 1)), PyBytes_AS_STRING(cid), 32) == 0:
                    dup = True
                    break
                si = (si + 1) & (scap - 1)
            if dup:
                continue
            seen[si] = <unsigned int>(n + 1)
            name = _field(it, 2, direct)
            if n == cap:
                cap = cap * 2 + 256
                nv = realloc(r.sizes, cap * sizeof(unsigned long long))
                if nv == NULL:
                    raise MemoryError()
                r.sizes = <unsigned long long*>nv
                nv = realloc(r.ntok, cap * sizeof(Py_ssize_t))
                if nv == NULL:
                    raise MemoryError()
                r.ntok = <Py_ssize_t*>nv
            if PyUnicode_IS_ASCII(name):
                nt = _alnum_runs(PyUnicode_1BYTE_DATA(name), PyUnicode_GET_LENGTH(name))
                r.ntok[n] = nt if nt < MAX_TOKENS_PER_FIELD else MAX_TOKENS_PER_FIELD
                toks.append(None)
            else:
                ascii = False
                tl = tokenize(name)
                r.ntok[n] = len(tl)
                toks.append(tl)
            r.sizes[n] = int(_field(it, 1, direct))
            names.append(name)
            cids.append(cid)
            mimes.append(_field(it, 3, direct))
            tags.append(tuple(_field(it, 4, direct)))
            n += 1
    finally:
        free(seen)
    r.names, r.cids, r.mimes, r.tags, r.toks, r.n = names, cids, mimes, tags, toks, n
    r.order = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
    if r.order == NULL:
        raise MemoryError()
    if ascii:
        keys = <SortKey*>malloc((n + 1) * sizeof(SortKey))
        if keys == NULL:
            raise MemoryError()
        for i in range(n):
            name = <str>PyList_GET_ITEM(names, i)
            cid = <bytes>PyList_GET_ITEM(cids, i)
            keys[i].ntok = r.ntok[i]
            keys[i].name = PyUnicode_1BYTE_DATA(name)
            keys[i].nlen = PyUnicode_GET_LENGTH(name)
            keys[i].cid = PyBytes_AS_STRING(cid)
            keys[i].clen = PyBytes_GET_SIZE(cid)
            keys[i].idx = i
            keys[i].k0 = <unsigned long long>r.ntok[i] << 56
            for j in range(7 if keys[i].nlen > 7 else keys[i].nlen):
                keys[i].k0 |= <unsigned long long>(<unsigned char>keys[i].name[j]) << (48 - 8 * j)
        try:
            _rank_sort(keys, n, r.order)
        finally:
            free(keys)
    else:
        # content ids are unique, so the index is never compared: the same order as sorting rows
        keyed = [(r.ntok[i], names[i], cids[i], i) for i in range(n)]
        keyed.sort()
        for i in range(n):
            r.order[i] = keyed[i][3]
    return r


cdef inline int _flag(unsigned int* ids, unsigned int* fl, int nids, unsigned int t, unsigned int f) noexcept nogil:
    """OR flag f into t's entry of the per-doc (ids, fl) set; returns the new size (capacity 512)."""
    cdef int j
    for j in range(nids):
        if ids[j] == t:
            fl[j] |= f
            return nids
    if nids < 512:
        ids[nids] = t
        fl[nids] = f
        nids += 1
    return nids


def add_share(st, unsigned int slot, Rows rows):
    """Append one share's items (``rows`` from prepare, in rank order) as docs: their term ids
    (forward index), tagsets, sizes, mimes, extensions and document-store records. Gathering
    their postings and prefixes, grouping them into Segs and the exact-name table are the
    share's BgJob, on a build thread while the caller goes on (the next update's loop included:
    see Dict.job)."""
    cdef unsigned int lo = len(st.doc_tagset), d, t
    cdef array doc_size = st.doc_size
    cdef array doc_tagset = st.doc_tagset, fwd = st.fwd, fwd_off = st.fwd_off
    cdef ExtCodes exts = st.exts
    cdef array ts_toff
    cdef DocStore docs = st.docs
    cdef bytes nb
    cdef dict mime_ids = st.mime_ids
    cdef int j, ts, npl = len(PLENS)
    cdef Py_ssize_t dot, nterm, tbound = 0, pbound = 0
    cdef str name, tok
    cdef dict tcache = {}
    cdef list r_names = rows.names, r_cids = rows.cids, r_mimes = rows.mimes, r_tags = rows.tags
    cdef list r_toks = rows.toks
    cdef Dict D = st.dict
    ts_toff = st.ts_toff
    cdef Py_ssize_t ri, i, ntok, nlen
    cdef object last_mime = _NO_MIME
    cdef unsigned int last_mid = 0
    cdef bytes cid
    cdef BgJob job
    if rows.n:
        (<DocRuns>st.runs).add(lo, slot)
    cdef TokEnt* ring = <TokEnt*>malloc(TOK_RING * sizeof(TokEnt))
    cdef TokEnt* te
    if ring == NULL:
        raise MemoryError()
    for j in range(TOK_RING):
        ring[j].owner = -1
    try:
        for ri in range(-TOK_AHEAD, rows.n):
            j = <int>(ri + TOK_AHEAD)
            if j < rows.n and PyList_GET_ITEM(r_toks, rows.order[j]) == <PyObject*>None:
                te = &ring[j & (TOK_RING - 1)]
                D.scan_ascii(<str>PyList_GET_ITEM(r_names, rows.order[j]), rows.ntok[rows.order[j]], te)
                te.owner = j
            if ri < 0:
                continue
            i = rows.order[ri]
            name = <str>PyList_GET_ITEM(r_names, i)
            mime = <object>PyList_GET_ITEM(r_mimes, i)
            d = len(doc_tagset)
            ts = _tagset(st, <tuple>PyList_GET_ITEM(r_tags, i), tcache, D)
            resize_smart(doc_size, d + 1)
            doc_size.data.as_ushorts[d] = <unsigned short>_size_class(rows.sizes[i])
            if mime is not last_mime:  # items of a share mostly share their mime objects
                mo = mime_ids.get(mime or "")
                last_mid = st.mime_id(mime) if mo is None else mo
                last_mime = mime
            ntok = rows.ntok[i]
            if D.job is not None and (scp2p_room(fwd) <= ntok or scp2p_room(fwd_off) <= 1 or
                                      scp2p_room(doc_tagset) <= 1):
                D.settle_job()  # these appends would move arrays the pending update's thread reads
            push(doc_tagset, ts)
            o = <object>PyList_GET_ITEM(r_toks, i)
            if o is None:
                # ASCII name: its tokens straight from its bytes, through the term hash
                nlen = PyUnicode_GET_LENGTH(name)
                te = &ring[ri & (TOK_RING - 1)]
                if te.owner != ri:  # (never: every ASCII row was scanned TOK_AHEAD items ago)
                    te.ntok = 0
                    te.owner = ri
                    D.scan_ascii(name, ntok, te)
                for j in range(te.ntok):
                    push(fwd, D.term_id_h(te.b + te.off[j], te.len[j], te.h[j]))
            else:
                for tok in <list>o:
                    push(fwd, D.term_of(tok))
            push(fwd_off, <unsigned int>len(fwd))
            t = 0
            dot = name.rfind(".")
            if 0 < dot < len(name) - 1:
                if PyUnicode_IS_ASCII(name) and 0 < ntok < MAX_TOKENS_PER_FIELD and \
                        _alnum_runs(PyUnicode_1BYTE_DATA(name) + dot + 1, len(name) - dot - 1) == 1:
                    # the one token after the last dot is the name's last token (already looked up)
                    t = fwd.data.as_uints[len(fwd) - 1]
                else:
                    et = tokenize(name[dot + 1:])
                    if len(et) == 1:
                        t = D.term_of(et[0])
            exts.add(t, fwd.data.as_uints, fwd_off.data.as_uints)
            cid = <bytes>PyList_GET_ITEM(r_cids, i)
            if o is None:  # ASCII: its bytes are its UTF-8
                docs.append(PyBytes_AS_STRING(cid), last_mid, rows.sizes[i], PyUnicode_1BYTE_DATA(name), nlen)
            else:
                nb = name.encode()
                docs.append(PyBytes_AS_STRING(cid), last_mid, rows.sizes[i], PyBytes_AS_STRING(nb), PyBytes_GET_SIZE(nb))
            # bounds of the doc's distinct posting lists (a doc holds at most 512 of each set)
            nterm = <Py_ssize_t>(fwd_off.data.as_uints[d + 1] - fwd_off.data.as_uints[d]) + \
                <Py_ssize_t>(ts_toff.data.as_ulonglongs[ts + 1] - ts_toff.data.as_ulonglongs[ts])
            tbound += nterm if nterm < 512 else 512
            pbound += npl * nterm if npl * nterm < 512 else 512
        # the previous update's job ends here (one at a time: its Segs are added before these),
        # then this one's starts (everything it writes allocated by prepare)
        _flush_share(st)
        job = BgJob()
        job.c.slot = slot
        job.prepare(st, st.exact, lo, <unsigned int>len(doc_tagset), tbound, pbound)
        st.job = job
        job.start()
        if job.running:
            D.job = job
    finally:
        free(ring)
        docs.flush()
    _maybe_trim(rows.n)


cdef struct SegC:       # a Seg's arrays (merges and folds walk the Segs list by list)
    const unsigned int* ids
    const unsigned int* off
    const unsigned int* boff
    const unsigned int* blk
    const unsigned int* post
    Py_ssize_t n


cdef int _seg_views(list segs, SegC* sc) except -1:
    cdef Seg x
    cdef Py_ssize_t k
    for k in range(len(segs)):
        x = <Seg>segs[k]
        sc[k].ids, sc[k].off, sc[k].boff = x.ids.data.as_uints, x.off.data.as_uints, x.boff.data.as_uints
        sc[k].blk, sc[k].post, sc[k].n = x.blk.data.as_uints, x.post.data.as_uints, len(x.ids)
    return 0


cdef inline unsigned int _seg_run(const SegC* g, Py_ssize_t i, Py_ssize_t r, Py_ssize_t* start,
                                  Py_ssize_t* end) noexcept nogil:
    """Block pair r (an even index into blk) of the Seg's entry i: its postings [start, end) in
    post; returns its slot."""
    start[0] = g.off[i] + g.blk[r + 1]
    end[0] = (g.off[i] + g.blk[r + 3]) if r + 2 < <Py_ssize_t>g.boff[i + 1] else g.off[i + 1]
    return g.blk[r] >> 2


cdef inline unsigned int _csr_run(const unsigned int* PO, const unsigned int* B, const unsigned int* BO,
                                  Py_ssize_t t, Py_ssize_t r, Py_ssize_t* start, Py_ssize_t* end) noexcept nogil:
    """Run r of the merged part's list t: its postings [start, end) in post; returns its slot."""
    cdef Py_ssize_t nb = <Py_ssize_t>(BO[t + 1] - BO[t]) >> 1
    start[0] = PO[t] + B[BO[t] + 2 * r + 1]
    end[0] = (PO[t] + B[BO[t] + 2 * r + 3]) if r + 1 < nb else PO[t + 1]
    return B[BO[t] + 2 * r] >> 2


cdef void _merge_count(const unsigned int* P, const unsigned int* PO, const unsigned int* B,
                       const unsigned int* BO, Py_ssize_t nold, const SegC* sc, Py_ssize_t nsegs,
                       const unsigned int* lo_, const unsigned int* hi_, unsigned long long* pc,
                       unsigned long long* bc, bint all_live) noexcept nogil:
    """Count each list's live postings / block entries into pc / bc (the merged part's runs, then
    each Seg's). ``all_live``: no share died since the merged part was made (it is kept whole)."""
    cdef Py_ssize_t t, r, start, end, i, k
    cdef unsigned int s
    for t in range(nold):
        if all_live:
            pc[t] += PO[t + 1] - PO[t]
            bc[t] += BO[t + 1] - BO[t]
            continue
        for r in range(<Py_ssize_t>(BO[t + 1] - BO[t]) >> 1):
            s = _csr_run(PO, B, BO, t, r, &start, &end)
            if lo_[s] <= P[start] < hi_[s]:
                pc[t] += end - start
                bc[t] += 2
    for k in range(nsegs):
        for i in range(sc[k].n):
            t = sc[k].ids[i]
            r = sc[k].boff[i]
            while r < <Py_ssize_t>sc[k].boff[i + 1]:
                s = _seg_run(&sc[k], i, r, &start, &end)
                if lo_[s] <= sc[k].post[start] < hi_[s]:
                    pc[t] += end - start
                    bc[t] += 2
                r += 2


cdef struct Sink:      # a staging buffer written to a file region in order (the streaming merge)
    unsigned int* buf
    size_t cap, n
    unsigned long long at  # file position (uint32 units) of buf[0]
    int fd


cdef int _fail_writes = -1   # tests: the postings-file write after this many more fails (ENOSPC)


def set_doc_write_failure(int after):
    """Tests: make the document store's write after ``after`` more writes fail with ENOSPC (-1: never)."""
    global _fail_doc_writes
    _fail_doc_writes = after


def set_write_failure(int after):
    """Tests: make the merge's postings-file write after ``after`` more writes fail with ENOSPC
    (-1: never)."""
    global _fail_writes
    _fail_writes = after


cdef int _sink_flush(Sink* k) noexcept nogil:
    """0, the errno of a failed write, or -1 (an in-memory sink given more than it was sized for)."""
    global _fail_writes
    cdef int e
    if k.fd < 0:
        return -1
    if k.n:
        if _fail_writes == 0:
            return ENOSPC
        if _fail_writes > 0:
            _fail_writes -= 1
        e = _pio_c(k.fd, <char*>k.buf, k.n * 4, k.at * 4, True)
        if e:
            return e
        k.at += k.n
        k.n = 0
    return 0


cdef int _sink_put(Sink* k, const unsigned int* src, size_t m) noexcept nogil:
    cdef size_t c
    cdef int e
    while m:
        if k.n == k.cap:
            e = _sink_flush(k)
            if e:
                return e
        c = k.cap - k.n
        if c > m:
            c = m
        memcpy(k.buf + k.n, src, c * 4)
        k.n += c
        src += c
        m -= c
    return 0


cdef inline int _sink_pair(Sink* k, unsigned int a, unsigned int b) noexcept nogil:
    cdef unsigned int v[2]
    v[0] = a
    v[1] = b
    return _sink_put(k, v, 2)


cdef int _put_seg_runs(const SegC* sc, Py_ssize_t nsegs, Py_ssize_t* cur, Py_ssize_t t,
                       const unsigned int* lo_, const unsigned int* hi_, Sink* sp, Sink* sb,
                       unsigned long long* w) noexcept nogil:
    """Append list t's live runs from each Seg whose cursor is at t (advancing it) to the sinks:
    postings to sp, block pairs (slot << 2 | flags, start relative to the list) to sb; w[0] =
    postings of list t written before (updated). 0 or a sink's error."""
    cdef Py_ssize_t k, i, r, start, end
    cdef unsigned int s
    cdef int e
    for k in range(nsegs):
        i = cur[k]
        if i >= sc[k].n or sc[k].ids[i] != t:
            continue
        cur[k] = i + 1
        r = sc[k].boff[i]
        while r < <Py_ssize_t>sc[k].boff[i + 1]:
            s = _seg_run(&sc[k], i, r, &start, &end)
            if lo_[s] <= sc[k].post[start] < hi_[s]:
                e = _sink_pair(sb, sc[k].blk[r], <unsigned int>w[0])
                if e == 0:
                    e = _sink_put(sp, sc[k].post + start, end - start)
                if e:
                    return e
                w[0] += end - start
            r += 2
    return 0


cdef struct FJob:       # a Seg fold's C part (_fold_run), run by a build thread without the GIL
    SegC* sc
    Py_ssize_t nsegs
    Py_ssize_t* cur
    const unsigned int* lo_  # the slot ranges when the fold started (a copy)
    const unsigned int* hi_
    unsigned int* ids       # the result (its arrays sized for the upper bounds by the caller)
    unsigned int* off
    unsigned int* boff
    Sink sp, sb             # in memory: postings, block pairs
    size_t m
    int err
    PyThread_type_lock done


cdef void _fold_run(FJob* j) noexcept nogil:
    """The Segs folded into one sparse Seg (the lists any of them holds, in id order; per list
    each Seg's live runs in order; dead runs and lists left empty dropped): the same Seg as
    folding them into dense CSR arrays over every list id and dropping the empty lists, without
    the dense per-list scratch arrays. The lists come from a walk of the Segs' sorted ids (a
    cursor per Seg)."""
    cdef Py_ssize_t k, m = 0
    cdef unsigned long long b0, w
    cdef unsigned int t
    cdef bint any_
    while True:
        any_ = False
        t = 0
        for k in range(j.nsegs):
            if j.cur[k] < j.sc[k].n and (not any_ or j.sc[k].ids[j.cur[k]] < t):
                t = j.sc[k].ids[j.cur[k]]
                any_ = True
        if not any_:
            break
        b0 = j.sb.n
        j.off[m] = <unsigned int>j.sp.n
        j.boff[m] = <unsigned int>j.sb.n
        w = 0
        if _put_seg_runs(j.sc, j.nsegs, j.cur, t, j.lo_, j.hi_, &j.sp, &j.sb, &w):
            j.err = -1  # (never: the arrays are sized for every run)
            return
        if j.sb.n > b0:
            j.ids[m] = t
            m += 1
    j.off[m] = <unsigned int>j.sp.n
    j.boff[m] = <unsigned int>j.sb.n
    j.m = m


cdef void _fold_main(void* arg) noexcept nogil:
    cdef FJob* j = <FJob*>arg
    _fold_run(j)
    PyThread_release_lock(j.done)


cdef class FoldJob:
    """Folding SEG_FOLD Segs (segs[k0:k0 + SEG_FOLD] of a posting set) into one on a build thread;
    the Segs stay in use until ``install`` swaps the folded one in (later Segs renumbered)."""
    cdef FJob c
    cdef bint running
    cdef Seg g
    cdef list segs
    cdef array lo, hi
    cdef Py_ssize_t k0

    def __cinit__(self):
        memset(&self.c, 0, sizeof(FJob))
        self.running = False

    def __dealloc__(self):
        _join(self.c.done, &self.running, True)
        free(self.c.sc)
        free(self.c.cur)
        if self.c.done != NULL:
            PyThread_free_lock(self.c.done)

    cdef int setup(self, st, list segs, Py_ssize_t k0) except -1:
        cdef Py_ssize_t k, tids = 0, tpost = 0, tblk = 0
        cdef Seg x, g = Seg()
        self.segs, self.k0 = segs, k0
        self.lo, self.hi = array("I", st.slot_lo), array("I", st.slot_hi)
        for o in segs:
            x = <Seg>o
            tids += len(x.ids)
            tpost += len(x.post)
            tblk += len(x.blk)
        g.ids, g.off, g.boff, g.post, g.blk = array("I"), array("I"), array("I"), array("I"), array("I")
        resize_smart(g.ids, tids)  # upper bounds (untouched capacity is not resident), trimmed after
        resize_smart(g.off, tids + 1)
        resize_smart(g.boff, tids + 1)
        resize_smart(g.post, tpost)
        resize_smart(g.blk, tblk)
        self.g = g
        self.c.sc = <SegC*>malloc((len(segs) + 1) * sizeof(SegC))
        self.c.cur = <Py_ssize_t*>calloc(len(segs) + 1, sizeof(Py_ssize_t))
        self.c.done = PyThread_allocate_lock()
        if self.c.sc == NULL or self.c.cur == NULL or self.c.done == NULL:
            raise MemoryError()
        _seg_views(segs, self.c.sc)
        self.c.nsegs = len(segs)
        self.c.lo_, self.c.hi_ = self.lo.data.as_uints, self.hi.data.as_uints
        self.c.ids, self.c.off, self.c.boff = g.ids.data.as_uints, g.off.data.as_uints, g.boff.data.as_uints
        self.c.sp.buf, self.c.sp.cap, self.c.sp.fd = g.post.data.as_uints, tpost, -1
        self.c.sb.buf, self.c.sb.cap, self.c.sb.fd = g.blk.data.as_uints, tblk, -1
        return 0

    cdef void start(self) noexcept:
        if _bg_threads:
            PyThread_acquire_lock(self.c.done, 1)
            if PyThread_start_new_thread(_fold_main, &self.c) != <unsigned long>-1:
                self.running = True
                return
            PyThread_release_lock(self.c.done)
        _fold_run(&self.c)

    cdef bint finished(self) noexcept:
        return _join(self.c.done, &self.running, False)

    cdef int install(self, L) except -1:
        """Wait, then segs[k0:k0 + SEG_FOLD] -> the folded Seg (the delta directory: their entries
        and the later Segs' cut back, the folded Seg's and the later ones' added)."""
        cdef Seg g = self.g
        cdef DeltaDir dd = L.ddir
        cdef list later
        cdef Py_ssize_t i, k0 = self.k0
        _join(self.c.done, &self.running, True)
        L.folding = None
        if self.c.err:
            raise RuntimeError("search fold: output larger than its bound")
        resize_smart(g.ids, self.c.m)
        resize_smart(g.off, self.c.m + 1)
        resize_smart(g.boff, self.c.m + 1)
        resize_smart(g.post, self.c.sp.n)
        resize_smart(g.blk, self.c.sb.n)
        later = L.segs[k0 + len(self.segs):]
        dd.truncate(L.ddir_mark, L.segs[k0:])
        L.segs[k0:] = [g] + later
        dd.add(k0, g)
        L.nfolded = k0 + 1
        L.ddir_mark = dd.n  # the folded Segs' entries end here
        for i in range(len(later)):
            dd.add(k0 + 1 + i, <Seg>later[i])
        return 0


cdef enum:
    SINK_ENTRIES = 1 << 17   # 512 KiB staging buffers (below the 1 MiB mmap threshold: heap, reused)


cdef bint _join(PyThread_type_lock done, bint* running, bint block) noexcept:
    """Whether a build thread that releases ``done`` when it ends has ended (waiting for it,
    without the GIL, if ``block``); clears running[0] then."""
    if running[0]:
        if block:
            with nogil:
                PyThread_acquire_lock(done, 1)
        elif not PyThread_acquire_lock(done, 0):
            return False
        PyThread_release_lock(done)
        running[0] = False
    return True


cdef struct MJob:       # a merge's C part (_merge_run), run by a build thread without the GIL
    const unsigned int* P   # the merged part: postings, block entries, their list offsets
    const unsigned int* B
    const unsigned int* PO
    const unsigned int* BO
    Py_ssize_t nold, nlists, nsegs
    SegC* sc                # the Segs merged in (a snapshot: later Segs are not touched)
    Py_ssize_t* cur
    const unsigned int* lo_  # the slot ranges when the merge started (a copy)
    const unsigned int* hi_
    unsigned long long* pc
    unsigned long long* bc
    unsigned int* poff      # the result's list offsets (nlists + 1 each)
    unsigned int* boff
    Sink sp, sb
    bint all_live
    unsigned long long np_, nbk
    int err                 # 0; the errno of a failed write; -1 sizes differ from the counts; -2 over 2**32
    PyThread_type_lock done


cdef void _merge_run(MJob* j) noexcept nogil:
    """Fold the merged part and the Segs into the output file -- the same CSR result as
    _index_py.merge, written list by list through two small staging buffers (postings from
    position 0, block entries after them) instead of being built in fresh arrays and then
    written: no new anonymous memory, page-cache writes only."""
    cdef Py_ssize_t t, r, start, end
    cdef unsigned long long np_ = 0, nbk = 0, w
    cdef unsigned int s
    cdef const unsigned int* P = j.P
    cdef const unsigned int* B = j.B
    cdef const unsigned int* PO = j.PO
    cdef const unsigned int* BO = j.BO
    cdef int e = 0
    _merge_count(P, PO, B, BO, j.nold, j.sc, j.nsegs, j.lo_, j.hi_, j.pc, j.bc, j.all_live)
    for t in range(j.nlists):
        j.poff[t] = <unsigned int>np_
        j.boff[t] = <unsigned int>nbk
        np_ += j.pc[t]
        nbk += j.bc[t]
    if np_ > 0xFFFFFFFFULL or nbk > 0xFFFFFFFFULL:
        j.err = -2
        return
    j.poff[j.nlists] = <unsigned int>np_
    j.boff[j.nlists] = <unsigned int>nbk
    j.sp.at, j.sb.at = 0, np_
    for t in range(j.nlists):  # list by list: the merged part's runs, then each Seg's, in order
        w = 0  # postings of list t written so far (block starts are relative to poff[t])
        if t < j.nold:
            if j.all_live:  # copied whole: it comes first, so its block starts stay as they are
                e = _sink_put(&j.sp, P + PO[t], PO[t + 1] - PO[t])
                if e == 0:
                    e = _sink_put(&j.sb, B + BO[t], BO[t + 1] - BO[t])
                w = PO[t + 1] - PO[t]
            else:
                for r in range(<Py_ssize_t>(BO[t + 1] - BO[t]) >> 1):
                    s = _csr_run(PO, B, BO, t, r, &start, &end)
                    if j.lo_[s] <= P[start] < j.hi_[s]:
                        e = _sink_pair(&j.sb, B[BO[t] + 2 * r], <unsigned int>w)
                        if e == 0:
                            e = _sink_put(&j.sp, P + start, end - start)
                        if e:
                            break
                        w += end - start
        if e == 0:
            e = _put_seg_runs(j.sc, j.nsegs, j.cur, t, j.lo_, j.hi_, &j.sp, &j.sb, &w)
        if e == 0 and w != j.pc[t]:
            e = -1
        if e:
            j.err = e
            return
    e = _sink_flush(&j.sp)
    if e == 0:
        e = _sink_flush(&j.sb)
    if e == 0 and (j.sp.at != np_ or j.sb.at != np_ + nbk):
        e = -1
    j.err = e
    j.np_, j.nbk = np_, nbk


cdef void _merge_main(void* arg) noexcept nogil:
    cdef MJob* j = <MJob*>arg
    _merge_run(j)
    PyThread_release_lock(j.done)


class _SlotRanges:
    """The slot ranges a merge ran with (PostFile.written records them)."""

    def __init__(self, lo, hi):
        self.slot_lo, self.slot_hi = lo, hi


cdef class MergeJob:
    """A merge of one posting set (L): the C part (MJob) runs on a build thread while share
    updates go on (their Segs are added after the snapshot; folds leave the snapshot's Segs
    alone) and queries read the merged part and Segs as they were, which the merge does not
    change. ``install`` (with the GIL) waits for it and swaps the result in; a failed write
    leaves L as it was and raises SearchIndexIOError."""
    cdef MJob c
    cdef bint running
    cdef object keep     # what the thread reads: the Segs, the old arrays, the slot-range copies
    cdef object mm       # the old postings file's read-only mapping (P, B point into it)
    cdef Py_buffer view
    cdef bint has_view
    cdef PostFile out
    cdef array poff, boff
    cdef object ranges
    cdef Py_ssize_t nsnap
    cdef unsigned long long ndelta
    cdef long long kills

    def __cinit__(self):
        memset(&self.c, 0, sizeof(MJob))
        self.running = self.has_view = False

    def __dealloc__(self):
        self.wait()
        self.release()
        free(self.c.sc)
        free(self.c.cur)
        free(self.c.pc)
        free(self.c.bc)
        free(self.c.sp.buf)
        free(self.c.sb.buf)
        if self.c.done != NULL:
            PyThread_free_lock(self.c.done)

    cdef void release(self) noexcept:
        if self.has_view:
            PyBuffer_Release(&self.view)
            self.has_view = False
            try:
                self.mm.close()
            except BaseException:
                pass

    cdef void wait(self) noexcept:
        _join(self.c.done, &self.running, True)

    cdef bint finished(self) noexcept:
        return _join(self.c.done, &self.running, False)

    cdef int setup(self, st, L) except -1:
        cdef list segs = list(L.segs)
        cdef array opoff = L.poff, oboff = L.boff, lo, hi
        cdef array post = L.post, blk = L.blk
        cdef PostFile f = L.disk
        cdef Seg g
        cdef Py_ssize_t m, nlists = len(opoff) - 1
        for o in segs:
            g = <Seg>o
            m = len(g.ids)
            if m and g.ids.data.as_uints[m - 1] + 1 > nlists:
                nlists = g.ids.data.as_uints[m - 1] + 1
        lo, hi = array("I", st.slot_lo), array("I", st.slot_hi)
        self.ranges = _SlotRanges(lo, hi)
        self.keep = (segs, opoff, oboff, post, blk, lo, hi)
        self.out = PostFile(L.doc_dir)
        self.poff, self.boff = array("I"), array("I")
        resize_smart(self.poff, nlists + 1)
        resize_smart(self.boff, nlists + 1)
        self.c.nold, self.c.nlists, self.c.nsegs = len(opoff) - 1, nlists, len(segs)
        self.c.PO, self.c.BO = opoff.data.as_uints, oboff.data.as_uints
        self.c.lo_, self.c.hi_ = lo.data.as_uints, hi.data.as_uints
        self.c.poff, self.c.boff = self.poff.data.as_uints, self.boff.data.as_uints
        self.c.all_live = L.kills_at_merge == st.kills
        self.c.pc = <unsigned long long*>calloc(nlists + 1, sizeof(unsigned long long))
        self.c.bc = <unsigned long long*>calloc(nlists + 1, sizeof(unsigned long long))
        self.c.sc = <SegC*>malloc((len(segs) + 1) * sizeof(SegC))
        self.c.cur = <Py_ssize_t*>calloc(len(segs) + 1, sizeof(Py_ssize_t))
        self.c.sp.buf = <unsigned int*>malloc(SINK_ENTRIES * sizeof(unsigned int))
        self.c.sb.buf = <unsigned int*>malloc(SINK_ENTRIES * sizeof(unsigned int))
        self.c.done = PyThread_allocate_lock()
        if self.c.pc == NULL or self.c.bc == NULL or self.c.sc == NULL or self.c.cur == NULL or \
                self.c.sp.buf == NULL or self.c.sb.buf == NULL or self.c.done == NULL:
            raise MemoryError()
        _seg_views(segs, self.c.sc)
        self.c.sp.cap = self.c.sb.cap = SINK_ENTRIES
        self.c.sp.fd = self.c.sb.fd = self.out.fd
        if f is not None and f.size:
            self.mm = f.mapped()
            PyObject_GetBuffer(self.mm, &self.view, PyBUF_SIMPLE)
            self.has_view = True
            self.c.P = <const unsigned int*>self.view.buf
            self.c.B = self.c.P + f.npost
        else:
            self.c.P, self.c.B = post.data.as_uints, blk.data.as_uints
        self.nsnap, self.ndelta, self.kills = len(segs), L.ndelta, st.kills
        return 0

    cdef void start(self) noexcept:
        if not _bg_threads:
            _merge_run(&self.c)
            return
        PyThread_acquire_lock(self.c.done, 1)
        if PyThread_start_new_thread(_merge_main, &self.c) == <unsigned long>-1:
            PyThread_release_lock(self.c.done)
            _merge_run(&self.c)  # no thread: here
        else:
            self.running = True

    cdef int install(self, st, L) except -1:
        cdef list rest
        cdef DeltaDir dd
        cdef Py_ssize_t i, nf
        self.wait()
        self.release()
        L.merging = None
        L.settle_fold(True)  # (on Segs after the snapshot: renumbered below)
        if self.c.err:
            if self.c.err == -2:
                raise SearchError("search index over 2**32 postings in one posting set")
            if self.c.err == -1:
                raise RuntimeError("search merge: streamed sizes differ from the counts")
            import os
            raise SearchIndexIOError(self.c.err, "search postings: " + os.strerror(self.c.err) +
                                     " (merge abandoned; the index is unchanged)")
        self.out.written(self.ranges, self.c.np_, self.c.nbk)
        rest = L.segs[self.nsnap:]
        nf = L.nfolded - self.nsnap  # folded since the merge started
        dd = DeltaDir()
        for i in range(len(rest)):
            if i == nf:
                L.ddir_mark = dd.n
            dd.add(i, <Seg>rest[i])
        if nf >= len(rest):
            L.ddir_mark = dd.n
        L.poff, L.boff, L.disk, L.post, L.blk = self.poff, self.boff, self.out, array("I"), array("I")
        L.segs, L.nfolded, L.ddir = rest, nf, dd
        L.ndelta -= self.ndelta
        L.kills_at_merge = self.kills
        self.keep = None
        return 0


def merge(st, L):
    """Fold L's deltas (its Segs) into its merged part, dropping block runs of dead shares (see
    _index_py.merge: the same result), written to a fresh postings file (_merge_run) that
    replaces the old one -- on a build thread: this starts the merge (or installs one that
    has finished; the caller asks again while the deltas are over the threshold) and flush
    waits for it. The old file is read through a read-only mapping (page-cache pages, no copy;
    unmapped after). Every run of the merged part is live if no share died since this merge
    made it (a fresh or loaded part, kills_at_merge = -1, is checked run by run)."""
    cdef MergeJob job = L.merging
    if job is not None:
        if job.finished():
            _flush_share(st)
            job.install(st, L)
        return  # (a merge still running leaves the pending share update running too)
    _flush_share(st)
    L.settle_fold(True)  # the merge takes every Seg there is
    job = MergeJob()
    job.setup(st, L)
    L.merging = job
    L.nfolded = len(L.segs)  # folds leave the merged Segs alone until it is installed
    L.ddir_mark = (<DeltaDir>L.ddir).n
    job.start()
    if not job.running:
        job.install(st, L)


# ---------------------------------------------------------------------- exact names
cdef inline unsigned int _hash(const unsigned int* ids, Py_ssize_t n) nogil:
    cdef unsigned long long h = 1469598103934665603ULL ^ <unsigned long long>n
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ ids[i]) * 1099511628211ULL
        h ^= h >> 29
    return <unsigned int>(h ^ (h >> 32))


cdef enum:
    EXACT_AHEAD = 8     # ExactNames.add_range: probes prefetched this many docs ahead


cdef struct XTab:       # ExactNames' table (plain C: the background build thread fills it)
    unsigned int* heads  # doc + 1, 0 = empty
    unsigned int* hashes
    unsigned int* nxt    # doc -> older doc + 1 with the same name, 0 = end
    size_t cap, n, ncap


cdef int _xt_grow(XTab* x) noexcept nogil:
    cdef size_t ncap = x.cap * 2 if x.cap else 1024, i, j
    cdef unsigned int* nd = <unsigned int*>calloc(ncap, sizeof(unsigned int))
    cdef unsigned int* nh = <unsigned int*>calloc(ncap, sizeof(unsigned int))
    if nd == NULL or nh == NULL:
        free(nd)
        free(nh)
        return -1
    for i in range(x.cap):
        if x.heads[i]:
            j = x.hashes[i] & (ncap - 1)
            while nd[j]:
                j = (j + 1) & (ncap - 1)
            nd[j] = x.heads[i]
            nh[j] = x.hashes[i]
    free(x.heads)
    free(x.hashes)
    x.heads, x.hashes, x.cap = nd, nh, ncap
    return 0


cdef inline void _xt_put(XTab* x, const unsigned int* F, const unsigned int* O, unsigned int d,
                         unsigned int h) noexcept nogil:
    """Doc d (its name's hash h) into the table: the head of its name's chain."""
    cdef unsigned int e
    cdef size_t j = h & (x.cap - 1)
    while x.heads[j]:
        e = x.heads[j] - 1
        if x.hashes[j] == h and O[e + 1] - O[e] == O[d + 1] - O[d] and \
                memcmp(F + O[e], F + O[d], (O[d + 1] - O[d]) * 4) == 0:
            x.nxt[d] = x.heads[j]
            x.heads[j] = d + 1
            return
        j = (j + 1) & (x.cap - 1)
    x.heads[j] = d + 1
    x.hashes[j] = h
    x.nxt[d] = 0
    x.n += 1


cdef int _xt_reserve(XTab* x, unsigned int lo, unsigned int hi) noexcept nogil:
    """Room for docs lo..hi (every name new): _xt_add then allocates nothing. -1: out of memory."""
    cdef size_t want
    cdef unsigned int* nn
    if hi > x.ncap:
        want = (<size_t>hi) if hi > 2 * x.ncap else 2 * x.ncap
        nn = <unsigned int*>realloc(x.nxt, want * sizeof(unsigned int))
        if nn == NULL:
            return -1
        x.nxt, x.ncap = nn, want
    while hi > lo and (x.n + (hi - lo) + 1) * 4 >= x.cap * 3:
        if _xt_grow(x) < 0:
            return -1
    return 0


cdef void _xt_add(XTab* x, const unsigned int* F, const unsigned int* O, unsigned int lo, unsigned int hi,
                  unsigned int* hs) noexcept nogil:
    """Docs lo..hi (names F / O) into the table (reserved by _xt_reserve; hs: scratch for hi - lo
    hashes)."""
    cdef unsigned int d
    cdef size_t j
    # every name's hash first, then the probes with the slots of the name EXACT_AHEAD docs on
    # prefetched (each probe is a cache miss in a table of ~1M slots at 1M items)
    for d in range(lo, hi):
        hs[d - lo] = _hash(F + O[d], O[d + 1] - O[d])
    for d in range(lo, hi):
        if d + EXACT_AHEAD < hi:
            j = hs[d + EXACT_AHEAD - lo] & (x.cap - 1)
            SCP2P_PREFETCH(&x.heads[j])
            SCP2P_PREFETCH(&x.hashes[j])
        _xt_put(x, F, O, d, hs[d - lo])


cdef class ExactNames:
    """Open-addressing table over *distinct* names (hash of the term-id sequence -> newest doc
    with that name); docs sharing a name are chained through ``nxt`` (so a name held by
    250,000 items is one slot, not a 250,000-slot probe cluster)."""

    cdef XTab x

    def __cinit__(self):
        self.x.cap = self.x.n = self.x.ncap = 0
        self.x.heads = self.x.hashes = self.x.nxt = NULL

    def __dealloc__(self):
        free(self.x.heads)
        free(self.x.hashes)
        free(self.x.nxt)

    def add_range(self, st, unsigned int lo, unsigned int hi):
        cdef array fwd = st.fwd, off = st.fwd_off
        cdef unsigned int* hs
        if hi <= lo:
            return
        hs = <unsigned int*>malloc((hi - lo) * sizeof(unsigned int))
        if hs == NULL or _xt_reserve(&self.x, lo, hi) < 0:
            free(hs)
            raise MemoryError()
        _xt_add(&self.x, fwd.data.as_uints, off.data.as_uints, lo, hi, hs)
        free(hs)

    cdef unsigned int _head(self, array fwd, array off, array ids):
        """The newest doc + 1 (live or dead) whose name's term-id sequence equals ids, 0 if none;
        the others follow through ``nxt``."""
        cdef Py_ssize_t n = len(ids)
        cdef unsigned int h = _hash(ids.data.as_uints, n), d
        cdef size_t j
        if not self.x.cap:
            return 0
        j = h & (self.x.cap - 1)
        while self.x.heads[j]:
            if self.x.hashes[j] == h:
                d = self.x.heads[j] - 1
                if off.data.as_uints[d + 1] - off.data.as_uints[d] == n and (n == 0 or memcmp(
                        fwd.data.as_uints + off.data.as_uints[d], ids.data.as_uints, n * 4) == 0):
                    return d + 1
            j = (j + 1) & (self.x.cap - 1)
        return 0

    cdef list _matches(self, array fwd, array off, array ids):
        """Doc ids (live or dead) whose name's term-id sequence equals ids."""
        cdef unsigned int e = self._head(fwd, off, ids)
        cdef list out = []
        while e:
            out.append(e - 1)
            e = self.x.nxt[e - 1]
        return out

    def lookup(self, st, array ids):
        cdef list out = self._matches(st.fwd, st.fwd_off, ids)
        out.sort()
        return out


# ---------------------------------------------------------------------- background build
cdef struct JobC:       # one share update's C part, run by a build thread without the GIL
    PBuf tb, pb         # the share's postings (terms, strict prefixes): gathered, then grouped by list
    unsigned int slot
    SegOut so[2]        # their Segs (allocated by the caller, like everything the thread writes)
    char* arena         # one block for tb, pb and so: big ones are mapped, handed back when freed
    XTab* xt            # the exact-name table: docs lo..hi added (hs: scratch for their hashes)
    const unsigned int* F    # what the thread reads of docs lo..hi: the forward index and its
    const unsigned int* O    # offsets, the docs' tagsets, the tagsets' tokens and offsets and
    const unsigned int* DT   # the terms' strict-prefix ids (entries that exist when it starts;
    const unsigned int* TT   # later appends never move them: see Dict.job)
    const unsigned long long* TO
    const unsigned int* TP
    int npl
    unsigned int* hs
    unsigned int lo, hi
    bint done_          # the work is done
    PyThread_type_lock done


cdef inline void _pput(PBuf* p, unsigned int t, unsigned int d, unsigned int flags) noexcept nogil:
    """Append a posting key (list id << 34 | doc << 2 | flags) to a buffer sized ahead (list ids
    are below 2**30: Dict.term_id_h checks terms and prefixes)."""
    p.v[p.n] = (<unsigned long long>t << 34) | (<unsigned long long>d << 2) | flags
    p.n += 1


cdef void _gather(JobC* j) noexcept nogil:
    """Docs lo..hi's postings: per doc its distinct name and tag terms (flags OR'ed; at most 512)
    into tb, then the strict prefixes of its tag and name terms into pb -- in doc order, each
    doc's lists in first-seen order (the buffers are sized by add_share's bounds)."""
    cdef unsigned int ids[512]
    cdef unsigned int fl[512]
    cdef int nids, m, q, npl = j.npl
    cdef unsigned int d, t, p
    cdef unsigned long long k, f0, f1, k0, k1
    for d in range(j.lo, j.hi):
        nids = 0
        f0, f1 = j.O[d], j.O[d + 1]
        k0, k1 = j.TO[j.DT[d]], j.TO[j.DT[d] + 1]
        for k in range(f0, f1):
            nids = _flag(ids, fl, nids, j.F[k], FN)
        for k in range(k0, k1):
            t = j.TT[k]
            if t:
                nids = _flag(ids, fl, nids, t, FT)
        for m in range(nids):
            _pput(&j.tb, ids[m], d, fl[m])
        nids = 0
        for k in range(k0, k1):
            t = j.TT[k]  # the tag tokens' prefixes (derived: see derive_ts_pfx)
            if t:
                for q in range(npl):
                    p = j.TP[npl * t + q]
                    if p:
                        nids = _flag(ids, fl, nids, p - 1, FT)
        for k in range(f0, f1):
            t = j.F[k]
            for q in range(npl):
                p = j.TP[npl * t + q]
                if p:
                    nids = _flag(ids, fl, nids, p - 1, FN)
        for m in range(nids):
            _pput(&j.pb, ids[m], d, fl[m])


cdef void _job_run(JobC* j) noexcept nogil:
    if j.done_:
        return
    if j.hi > j.lo:
        _gather(j)
    if j.tb.n:
        _seg_build(&j.tb, j.slot, &j.so[0])
    if j.pb.n:
        _seg_build(&j.pb, j.slot, &j.so[1])
    if j.xt != NULL:
        _xt_add(j.xt, j.F, j.O, j.lo, j.hi, j.hs)
    j.done_ = True


cdef void _job_main(void* arg) noexcept nogil:
    cdef JobC* j = <JobC*>arg
    _job_run(j)
    PyThread_release_lock(j.done)


cdef bint _bg_threads = True


def set_background(bint on):
    """Run share updates' C part on a build thread (default) or inline in flush (tests)."""
    global _bg_threads
    _bg_threads = on


cdef class BgJob:
    """One share update's C part (JobC) -- gathering its docs' postings and strict prefixes,
    sorting them into Segs and adding its names to the exact-name table -- started on a build
    thread when add_share returns, so the caller's next share update (its prepare, Python side
    and add_share's own loop) runs while it does. The next add_share waits for it at its end
    (``finish``: the Segs added, then that update's job starts); every read and every other
    update flushes first. The thread allocates nothing and writes only the job's own buffers and
    the exact-name table (reserved ahead). It reads the docs' entries of the forward index and
    its offsets, the doc tagsets, the tagset tokens and term_pfx: the next add_share only
    appends to those arrays, and an append that would move one (a realloc) waits for the thread
    first (Dict.job, settle_job)."""
    cdef JobC c
    cdef bint running
    cdef int added      # bit 0: the term Seg added, bit 1: the prefix Seg
    cdef object keep    # what the thread reads: (exact-name table, fwd, fwd_off)
    cdef object gt, gp  # the Segs once wrapped

    def __cinit__(self):
        memset(&self.c, 0, sizeof(JobC))
        self.running = False
        self.added = 0

    def __dealloc__(self):
        self.wait()  # never free what a running thread writes
        free(self.c.arena)
        free(self.c.hs)
        if self.c.done != NULL:
            PyThread_free_lock(self.c.done)

    cdef int prepare(self, st, ExactNames ex, unsigned int lo, unsigned int hi, size_t tbound,
                     size_t pbound) except -1:
        """Everything the thread will write, allocated here: the posting buffers for at most
        tbound / pbound postings and their Segs."""
        cdef array fwd = st.fwd, fwd_off = st.fwd_off, dt = st.doc_tagset, tt = st.ts_toks
        cdef array to = st.ts_toff, tp = st.term_pfx
        if hi <= lo:
            tbound = pbound = 0
        cdef char* at
        if tbound + pbound:
            self.c.arena = at = <char*>malloc(_pbuf_bytes(tbound) + _pbuf_bytes(pbound))
            if at == NULL:
                raise MemoryError()
            _pbuf_carve(&self.c.tb, &self.c.so[0], tbound, &at)
            _pbuf_carve(&self.c.pb, &self.c.so[1], pbound, &at)
        if hi > lo:
            self.c.hs = <unsigned int*>malloc((hi - lo) * sizeof(unsigned int))
            if self.c.hs == NULL or _xt_reserve(&ex.x, lo, hi) < 0:
                raise MemoryError()
            self.c.xt = &ex.x
            self.c.npl = len(PLENS)
            self.c.lo, self.c.hi = lo, hi
        self.keep = (ex, fwd, fwd_off, dt, tt, to, tp)
        self.bind()
        self.c.done = PyThread_allocate_lock()
        if self.c.done == NULL:
            raise MemoryError()
        return 0

    cdef void bind(self) noexcept:
        """Point the job at the arrays' data (again before it runs inline: they may have moved)."""
        cdef array fwd, fwd_off, dt, tt, to, tp
        _, fwd, fwd_off, dt, tt, to, tp = self.keep
        self.c.F, self.c.O = fwd.data.as_uints, fwd_off.data.as_uints
        self.c.DT, self.c.TT, self.c.TO = dt.data.as_uints, tt.data.as_uints, to.data.as_ulonglongs
        self.c.TP = tp.data.as_uints

    cdef void start(self) noexcept:
        if not _bg_threads:
            return  # runs in finish()
        PyThread_acquire_lock(self.c.done, 1)
        if PyThread_start_new_thread(_job_main, &self.c) == <unsigned long>-1:
            PyThread_release_lock(self.c.done)  # no thread: runs in finish()
        else:
            self.running = True

    cdef void wait(self) noexcept:
        _join(self.c.done, &self.running, True)

    cdef int finish(self, st) except -1:
        """Wait for the thread (or do the work here), add the Segs (a MemoryError there leaves the
        job pending: the next flush retries what is left)."""
        self.wait()
        if not self.c.done_:  # not run on a thread (inline, or no thread could start)
            self.bind()
            _job_run(&self.c)
        TL, PL = st.lists
        if self.c.tb.n and self.gt is None:
            self.gt = _seg_wrap(&self.c.so[0])
        if self.c.pb.n and self.gp is None:
            self.gp = _seg_wrap(&self.c.so[1])
        if self.gt is not None and not self.added & 1:
            TL.add_seg(st, self.gt)
            TL.ndelta += self.c.tb.n
            self.added |= 1
        if self.gp is not None and not self.added & 2:
            PL.add_seg(st, self.gp)
            PL.ndelta += self.c.pb.n
            self.added |= 2
        return 0


def _flush_share(st):
    """Finish the pending share update's background part (see BgJob)."""
    job = st.job
    if job is not None:
        (<Dict>st.dict).job = None
        (<BgJob>job).finish(st)
        st.job = None


def flush(st, bint wait=True):
    """Finish the pending share update and install the merges that have finished (``wait``:
    every merge, waiting for those still running). Reads need only the share update: while a
    merge runs, the merged part and Segs it started from stay as they were."""
    cdef MergeJob job
    err = None
    _flush_share(st)
    for L in st.lists:  # every merge is installed (or dropped, failed) before an error is raised
        L.settle_fold(wait)
        job = L.merging
        if job is not None and (wait or job.finished()):
            try:
                job.install(st, L)
            except Exception as exc:
                err = err or exc
    if err is not None:
        raise err


# ---------------------------------------------------------------------- query kernel
cdef struct TermC:
    int exact
    int pcol, pcode     # pcode > 0: strict prefix <=> term_pfx[tok * npl + pcol] == pcode; -1: none
    const char* pfx
    Py_ssize_t pfxlen
    const unsigned char* sd
    int l0, l1          # lists[l0:l1]

cdef struct ListC:
    const unsigned int* post     # NULL for an on-disk list read run by run (lazy)
    Py_ssize_t npost
    const unsigned int* blk
    Py_ssize_t nblk
    int strict
    void* disk                   # the PostFile of an on-disk list, else NULL
    unsigned long long at        # on disk: the list's first posting (file position, uint32 units)
    unsigned int run0            # on disk: the list's first run number (PostFile.live)
    unsigned int* own            # on disk: the block table (and, if not lazy, the postings) read
    unsigned int* srun           # lazy: per slot, 1 + the index of its live run (0: none)
    unsigned int* rbuf           # lazy: the postings of the last run read
    size_t rcap

cdef struct SeqC:       # a phrase (a, b) or an id sequence (ids[o0:o1])
    int a, b
    const unsigned char* smask
    int has_ids

cdef struct Ctx:
    TermC* terms
    int nt
    ListC* lists
    const unsigned int* fwd
    const unsigned int* fwd_off
    const unsigned int* doc_tagset
    const unsigned int* ts_toks
    const unsigned long long* ts_toff
    ExtC ext                         # doc_ext (2-bit codes + the forward index)
    const unsigned short* doc_size   # size classes (_size_class)
    unsigned int cmin, cmax          # the size filter's bounds' classes
    int sized                        # a size filter is set
    void* docs                       # the DocStore
    const unsigned char* term_blob
    const unsigned int* term_pfx
    int npl
    const unsigned long long* term_off
    const unsigned int* slot_wq
    const unsigned int* exts
    int nexts
    unsigned long long size_min, size_max
    const unsigned int* exact_ids
    int nexact
    int skip_exact     # 1 once the exact-name items were scored first: skip them in the shares


cdef inline int tmatch(Ctx* c, TermC* t, unsigned int tok) nogil:
    if <int>tok == t.exact:
        return NAME
    if t.pcode:
        if t.pcode > 0 and <int>c.term_pfx[tok * c.npl + t.pcol] == t.pcode:
            return NPFX
        return 0
    if t.pfx != NULL:
        if <Py_ssize_t>(c.term_off[tok + 1] - c.term_off[tok]) >= t.pfxlen and \
                memcmp(c.term_blob + c.term_off[tok], t.pfx, t.pfxlen) == 0:
            return NPFX
    return 0


cdef inline bint seq_at_terms(Ctx* c, int a, int b, const unsigned int* seq, Py_ssize_t i) nogil:
    cdef int j
    for j in range(b - a):
        if not tmatch(c, &c.terms[a + j], seq[i + j]):
            return False
    return True


cdef bint phrase_in(Ctx* c, int a, int b, const unsigned int* seq, Py_ssize_t n) nogil:
    """Terms a..b consecutive somewhere in seq (0 separates tag segments)."""
    cdef Py_ssize_t i, j
    cdef int m = b - a
    cdef bint ok
    for i in range(n - m + 1):
        ok = True
        for j in range(m):
            if seq[i + j] == 0 or not tmatch(c, &c.terms[a + j], seq[i + j]):
                ok = False
                break
        if ok:
            return True
    return False


cdef bint ids_in(const unsigned int* ids, int m, const unsigned int* seq, Py_ssize_t n) nogil:
    cdef Py_ssize_t i
    for i in range(n - m + 1):
        if memcmp(seq + i, ids, m * 4) == 0:
            return True
    return False


cdef long long score_doc(Ctx* c, object plan_phrases, object plan_excl, object plan_tags,
                         unsigned int d, unsigned int slot) except -2:
    cdef unsigned int ev, sc
    cdef const unsigned int* name = c.fwd + c.fwd_off[d]
    cdef Py_ssize_t nn = c.fwd_off[d + 1] - c.fwd_off[d], i
    cdef unsigned int ts = c.doc_tagset[d]
    cdef const unsigned int* tags = c.ts_toks + c.ts_toff[ts]
    cdef Py_ssize_t ntg = c.ts_toff[ts + 1] - c.ts_toff[ts]
    cdef long long raw = 0
    cdef int ti, cc, m, j
    cdef TermC* t
    cdef unsigned long long size
    cdef array ids
    cdef const unsigned char* sm
    if c.skip_exact and c.exact_ids != NULL and nn == c.nexact and memcmp(name, c.exact_ids, nn * 4) == 0:
        return -1  # scored (and counted) in the exact-name pass
    for ti in range(c.nt):
        t = &c.terms[ti]
        cc = t.sd[slot]
        for i in range(nn):
            m = tmatch(c, t, name[i])
            if m > cc:
                cc = m
                if cc == NAME:
                    break
        if cc < TAG:
            for i in range(ntg):
                if tags[i] and tmatch(c, t, tags[i]):
                    cc = TAG
                    break
        if not cc:
            return -1
        raw += cc
    if c.exts != NULL:
        ev = _ext_of(&c.ext, d)
        for j in range(c.nexts):
            if ev == c.exts[j]:
                break
        else:
            return -1
    if c.sized:
        sc = c.doc_size[d]
        if sc < c.cmin or sc > c.cmax:
            return -1
        if sc == c.cmin or sc == c.cmax:  # a bound's own class: the exact size decides
            size = sc if sc < SIZE_EXACT else (<DocStore>c.docs).size(d)
            if size < c.size_min or size > c.size_max:
                return -1
    if plan_phrases is not None:
        for a, b, smask in plan_phrases:
            sm = smask
            if sm[slot]:
                continue
            if not phrase_in(c, a, b, name, nn) and not phrase_in(c, a, b, tags, ntg):
                return -1
    if plan_excl is not None:
        for eids, smask in plan_excl:
            sm = smask
            if sm[slot]:
                return -1
            if eids is not None:
                ids = eids
                if ids_in(ids.data.as_uints, len(ids), name, nn) or ids_in(ids.data.as_uints, len(ids), tags, ntg):
                    return -1
    if plan_tags is not None:
        for tids in plan_tags:
            ids = tids
            if not ids_in(ids.data.as_uints, len(ids), tags, ntg):
                return -1
    if c.exact_ids != NULL and nn == c.nexact and memcmp(name, c.exact_ids, nn * 4) == 0:
        raw += EXACT
    return raw * c.slot_wq[slot]


cdef inline Py_ssize_t lower_bound(const unsigned int* a, Py_ssize_t lo, Py_ssize_t hi, unsigned int x) noexcept nogil:
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline int priority(Ctx* cx, unsigned int* cnt, int nt, int nslots, unsigned int s) noexcept nogil:
    """The term matching the share's title/description with the fewest postings there, or -1."""
    cdef int ti, pt = -1
    cdef unsigned int c, best = 0
    for ti in range(nt):
        c = cnt[ti * nslots + s]
        if cx.terms[ti].sd[s] and c and (pt < 0 or c < best):
            best = c
            pt = ti
    return pt


cdef inline int driver(Ctx* cx, unsigned int* cnt, int nt, int nslots, unsigned int s, unsigned int span,
                       unsigned int* best) noexcept nogil:
    cdef int ti, bt = -1
    cdef unsigned int c
    best[0] = span
    for ti in range(nt):
        if cx.terms[ti].sd[s]:
            continue
        c = cnt[ti * nslots + s]
        if (0 < c < best[0]) or (c and bt < 0 and c <= best[0]):
            best[0] = c
            bt = ti
    return bt


cdef long long _unvisited(Ctx* c, unsigned int* cnt, int nt, int nslots, const unsigned long long* order,
                          int first, int no, const unsigned int* rank_to_slot, const unsigned int* lo_,
                          const unsigned int* hi_) noexcept nogil:
    """The driving-term postings of the shares order[first:no] (the estimate for shares not visited)."""
    cdef long long rest = 0
    cdef unsigned int s, best
    cdef int j
    for j in range(first, no):
        s = rank_to_slot[<unsigned int>(order[j] & 0xFFFFFFFFULL)]
        driver(c, cnt, nt, nslots, s, hi_[s] - lo_[s], &best)
        rest += best
    return rest


def run(st, plan, bint exhaustive=False):
    """[(score, doc)] best first (at most plan.k), total, total_is_estimate (see _index_py.run)."""
    cdef int nslots = len(st.slot_ids), nt = len(plan.terms), ti, li, nl = 0, k = plan.k
    cdef array slot_lo = st.slot_lo, slot_hi = st.slot_hi, slot_wq = st.slot_wq, slot_rank = st.slot_rank
    cdef const unsigned int* lo_ = slot_lo.data.as_uints
    cdef const unsigned int* hi_ = slot_hi.data.as_uints
    cdef const unsigned int* rk = slot_rank.data.as_uints
    cdef DocRuns runs = st.runs
    cdef Py_ssize_t hint = 0
    cdef const unsigned char* mask = plan.mask
    cdef ExactNames ex = st.exact
    cdef unsigned int e
    cdef list keep = []
    cdef Ctx c
    cdef array a
    cdef Py_ssize_t r, nb, start, end, i, j
    cdef unsigned int key, s, cc, d, lo, hi, best
    cdef ListC* L
    cdef unsigned char* maxc = NULL
    cdef unsigned int* cnt = NULL
    cdef unsigned long long* order = NULL
    cdef unsigned long long bound, b
    cdef unsigned char* marks = NULL
    cdef unsigned int* cand = NULL
    cdef long long sc
    cdef unsigned long long* top_s = NULL
    cdef unsigned int* top_r = NULL
    cdef unsigned int* top_d = NULL
    cdef int ntop = 0, pos, no = 0, oi, bt
    cdef long long matched = 0, left
    cdef object blocked = plan.blocked
    cdef DocStore cids = st.docs
    cdef bint stopped = False, skipped = False
    cdef int pt
    cdef Py_ssize_t nfirst
    cdef unsigned int* rank_to_slot = NULL
    cdef object phrases = plan.phrases or None, excludes = plan.excludes or None, ptags = plan.tags or None
    cdef const unsigned int* rp
    for term in plan.terms:
        nl += len(term[3])
    c.terms = <TermC*>calloc(nt + 1, sizeof(TermC))
    c.lists = <ListC*>calloc(nl + 1, sizeof(ListC))
    maxc = <unsigned char*>calloc(<size_t>nt * nslots + 1, 1)
    cnt = <unsigned int*>calloc(<size_t>nt * nslots + 1, sizeof(unsigned int))
    order = <unsigned long long*>malloc((nslots + 1) * sizeof(unsigned long long))
    top_s = <unsigned long long*>malloc((k + 1) * sizeof(unsigned long long))
    top_r = <unsigned int*>malloc((k + 1) * sizeof(unsigned int))
    top_d = <unsigned int*>malloc((k + 1) * sizeof(unsigned int))
    try:
        if c.terms == NULL or c.lists == NULL or maxc == NULL or cnt == NULL or order == NULL or top_d == NULL \
                or top_s == NULL or top_r == NULL:
            raise MemoryError()
        c.nt = nt
        a = st.fwd; c.fwd = a.data.as_uints
        a = st.fwd_off; c.fwd_off = a.data.as_uints
        a = st.doc_tagset; c.doc_tagset = a.data.as_uints
        a = st.ts_toks; c.ts_toks = a.data.as_uints
        a = st.ts_toff; c.ts_toff = a.data.as_ulonglongs
        (<ExtCodes>st.exts).view(&c.ext, st.fwd, st.fwd_off)
        a = st.doc_size; c.doc_size = a.data.as_ushorts
        c.docs = <void*>cids
        a = st.term_off; c.term_off = a.data.as_ulonglongs
        a = st.term_pfx; c.term_pfx = a.data.as_uints
        c.npl = len(PLENS)
        c.term_blob = <const unsigned char*>(<char*>st.term_blob) if len(st.term_blob) else <const unsigned char*>""
        keep.append(st.term_blob)
        c.slot_wq = slot_wq.data.as_uints
        c.exts = NULL
        if plan.exts is not None:
            a = plan.exts; c.exts = a.data.as_uints; c.nexts = len(a)
        c.size_min = plan.size_min
        c.size_max = plan.size_max
        c.sized = c.size_min > 0 or c.size_max < 0xFFFFFFFFFFFFFFFFULL
        c.cmin = _size_class(c.size_min)
        c.cmax = _size_class(c.size_max)
        c.exact_ids = NULL
        if plan.exact_ids is not None:
            a = plan.exact_ids; c.exact_ids = a.data.as_uints; c.nexact = len(a)
        li = 0
        for ti in range(nt):
            term = plan.terms[ti]
            c.terms[ti].exact = term[0]
            c.terms[ti].pcol = term[5][0]
            c.terms[ti].pcode = term[5][1]
            if term[2] is not None:
                keep.append(term[2])
                c.terms[ti].pfx = <const char*>(<bytes>term[2])
                c.terms[ti].pfxlen = len(<bytes>term[2])
            else:
                c.terms[ti].pfx = NULL
            keep.append(term[4])
            c.terms[ti].sd = <const unsigned char*>(<bytes>term[4]) if nslots else <const unsigned char*>""
            c.terms[ti].l0 = li
            for post, p0, p1, blk, b0, b1, strict in term[3]:
                c.lists[li].npost = p1 - p0
                c.lists[li].nblk = b1 - b0
                c.lists[li].strict = strict
                if type(post) is PostFile:
                    _open_list(&c.lists[li], <PostFile>post, p0, b0, nslots)
                else:
                    a = post
                    c.lists[li].post = a.data.as_uints + <Py_ssize_t>p0
                    a = blk
                    c.lists[li].blk = a.data.as_uints + <Py_ssize_t>b0
                li += 1
            c.terms[ti].l1 = li
        # per-share bounds and counts from the block tables
        for ti in range(nt):
            for li in range(c.terms[ti].l0, c.terms[ti].l1):
                L = &c.lists[li]
                nb = L.nblk >> 1
                for r in range(nb):
                    key = L.blk[2 * r]
                    start = L.blk[2 * r + 1]
                    s = key >> 2
                    if L.post == NULL:
                        if not mask[s] or not (<PostFile>L.disk).live(L.run0 + <unsigned int>r, s, lo_, hi_):
                            continue
                        L.srun[s] = <unsigned int>r + 1
                    elif not mask[s] or not (lo_[s] <= L.post[start] < hi_[s]):
                        continue
                    end = L.blk[2 * r + 3] if r + 1 < nb else L.npost
                    cc = ((NPFX if L.strict else NAME) if key & FN else TAG)
                    if cc > maxc[ti * nslots + s]:
                        maxc[ti * nslots + s] = cc
                    cnt[ti * nslots + s] += end - start
            for s in range(nslots):
                if c.terms[ti].sd[s] > maxc[ti * nslots + s]:
                    maxc[ti * nslots + s] = c.terms[ti].sd[s]
        for s in range(nslots):
            if not mask[s] or lo_[s] == hi_[s]:
                continue
            b = 0
            for ti in range(nt):
                if not maxc[ti * nslots + s]:
                    break
                b += maxc[ti * nslots + s]
            else:
                b *= c.slot_wq[s]
                # sort key: bound desc, rank asc  ->  ascending sort of (~bound, rank)
                order[no] = ((0xFFFFFFFFULL - b) << 32) | rk[s]
                no += 1
        _sort_u64(order, no)
        # the items named exactly as the query first (their EXACT_NAME bonus is not in the share
        # bounds): they usually fill the top k, so the share loop below stops at once
        c.skip_exact = 0
        if c.exact_ids != NULL:
            e = ex._head(st.fwd, st.fwd_off, plan.exact_ids)
            while e:
                d = e - 1
                s = runs.slot_of(d, &hint)
                if mask[s] and lo_[s] <= d < hi_[s]:
                    if not exhaustive and k and ntop >= k and not _better(
                            (<unsigned long long>(nt * NAME + EXACT)) * c.slot_wq[s], rk[s], d,
                            top_s[k - 1], top_r[k - 1], top_d[k - 1]):
                        matched += 1  # cannot enter the top k even unfiltered: counted, as an estimate
                        skipped = True
                    else:
                        sc = score_doc(&c, phrases, excludes, ptags, d, s)
                        if sc >= 0:
                            ntop = _consider(&c, blocked, cids, d, sc, rk[s], top_s, top_r, top_d, ntop, k,
                                             &matched)
                e = ex.x.nxt[d]
            c.skip_exact = 1
        rank_to_slot = <unsigned int*>malloc((nslots + 1) * sizeof(unsigned int))
        if rank_to_slot == NULL:
            raise MemoryError()
        for s in range(nslots):
            rank_to_slot[rk[s]] = s
        for oi in range(no):
            s = rank_to_slot[<unsigned int>(order[oi] & 0xFFFFFFFFULL)]
            bound = 0xFFFFFFFFULL - (order[oi] >> 32)
            if not exhaustive and k and ntop >= k:
                if top_s[k - 1] > bound or (top_s[k - 1] == bound and top_r[k - 1] < rk[s]):
                    matched += _unvisited(&c, cnt, nt, nslots, order, oi, no, rank_to_slot, lo_, hi_)
                    stopped = True
                    break
            lo = lo_[s]
            hi = hi_[s]
            bt = driver(&c, cnt, nt, nslots, s, hi - lo, &best)
            pt = -1
            if bt < 0 and not exhaustive and k:
                pt = priority(&c, cnt, nt, nslots, s)
            if pt >= 0:
                # every term matches this share's title/description (see _index_py.run)
                marks = _mark_union(&c, pt, s, lo, hi)
                nfirst = 0
                for i in range(hi - lo):
                    nfirst += marks[i]
                ntop = _scan(&c, phrases, excludes, ptags, blocked, cids, lo, hi, marks, 1, s, rk[s],
                             top_s, top_r, top_d, ntop, k, &matched)
                b = 0
                for ti in range(nt):
                    b += maxc[ti * nslots + s]
                b = (b - maxc[pt * nslots + s] + c.terms[pt].sd[s]) * c.slot_wq[s]
                if ntop >= k and top_s[k - 1] > b:
                    matched += (hi - lo) - nfirst
                    skipped = True
                else:
                    ntop = _scan(&c, phrases, excludes, ptags, blocked, cids, lo, hi, marks, 0, s, rk[s],
                                 top_s, top_r, top_d, ntop, k, &matched)
                free(marks)
                marks = NULL
                continue
            if bt >= 0 and c.terms[bt].l1 - c.terms[bt].l0 > 1:
                if cnt[bt * nslots + s] * UNION_SPARSE < hi - lo:
                    # few candidates (a rare term): their sorted union, not a mark per doc of the share
                    cand = _union_posts(&c, bt, s, lo, hi, &j)
                else:
                    marks = _mark_union(&c, bt, s, lo, hi)
            left = -1  # candidates of this share left unscored when the k-th best beats them all
            if bt < 0 or marks != NULL:
                ntop = _scan(&c, phrases, excludes, ptags, blocked, cids, lo, hi, marks, 1, s, rk[s],
                             top_s, top_r, top_d, ntop, k, &matched, not exhaustive, bound, &left)
            if bt >= 0 and marks == NULL:
                if cand != NULL:
                    rp = cand
                else:
                    L = &c.lists[c.terms[bt].l0]
                    rp = _share_posts(L, s, lo, hi, &j)
                for i in range(j):
                    d = rp[i]
                    if not exhaustive and k and ntop >= k and \
                            not _better(bound, rk[s], d, top_s[k - 1], top_r[k - 1], top_d[k - 1]):
                        left = j - i
                        break
                    sc = score_doc(&c, phrases, excludes, ptags, d, s)
                    if sc >= 0:
                        ntop = _consider(&c, blocked, cids, d, sc, rk[s], top_s, top_r, top_d, ntop, k, &matched)
            free(marks)
            marks = NULL
            free(cand)
            cand = NULL
            if left >= 0:
                # no later candidate of this share (nor of a later share: bounds only fall, ranks
                # only grow) can enter the top k; count them as an estimate, like the stop above
                matched += left + _unvisited(&c, cnt, nt, nslots, order, oi + 1, no, rank_to_slot, lo_, hi_)
                stopped = True
                break
        return [(top_s[i], top_d[i]) for i in range(ntop)], matched, stopped or skipped
    finally:
        if c.lists != NULL:
            for li in range(nl):
                free(c.lists[li].own); free(c.lists[li].srun); free(c.lists[li].rbuf)
        free(c.terms); free(c.lists); free(maxc); free(cnt); free(order)
        free(top_s); free(top_r); free(top_d); free(marks); free(rank_to_slot); free(cand)


cdef enum:
    UNION_SPARSE = 16    # a term's postings in a share below 1/16 of its docs: walked as a sorted union


cdef int _cmp_u32(const void* a, const void* b) noexcept nogil:
    cdef unsigned int x = (<const unsigned int*>a)[0], y = (<const unsigned int*>b)[0]
    return (x > y) - (x < y)


cdef unsigned int* _union_posts(Ctx* c, int ti, unsigned int s, unsigned int lo, unsigned int hi,
                                Py_ssize_t* n) except NULL:
    """The docs of [lo, hi) in one of term ti's posting lists, ascending, each once (malloc'd; n
    = how many): the same candidates, in the same order, as _mark_union + _scan, without a pass
    over every doc of the share."""
    cdef ListC* L
    cdef const unsigned int* rp
    cdef Py_ssize_t m, i, tot = 0, cap = 64, w
    cdef int li, used = 0
    cdef unsigned int* out = <unsigned int*>malloc(cap * sizeof(unsigned int))
    cdef unsigned int* nb
    if out == NULL:
        raise MemoryError()
    try:
        for li in range(c.terms[ti].l0, c.terms[ti].l1):
            L = &c.lists[li]
            rp = _share_posts(L, s, lo, hi, &m)
            if m == 0:
                continue
            used += 1
            if tot + m > cap:
                cap = (tot + m) * 2
                nb = <unsigned int*>realloc(out, cap * sizeof(unsigned int))
                if nb == NULL:
                    raise MemoryError()
                out = nb
            memcpy(out + tot, rp, m * sizeof(unsigned int))
            tot += m
    except BaseException:
        free(out)
        raise
    if used > 1:  # several lists: sort, then keep each doc once
        qsort(out, tot, sizeof(unsigned int), _cmp_u32)
        w = 0
        for i in range(tot):
            if w == 0 or out[i] != out[w - 1]:
                out[w] = out[i]
                w += 1
        tot = w
    n[0] = tot
    return out


cdef unsigned char* _mark_union(Ctx* c, int ti, unsigned int s, unsigned int lo, unsigned int hi) except NULL:
    """A byte per doc of [lo, hi): 1 if it is in one of term ti's posting lists."""
    cdef unsigned char* marks = <unsigned char*>calloc(hi - lo + 1, 1)
    cdef ListC* L
    cdef Py_ssize_t i
    cdef int li
    if marks == NULL:
        raise MemoryError()
    cdef const unsigned int* rp
    cdef Py_ssize_t n
    try:
        for li in range(c.terms[ti].l0, c.terms[ti].l1):
            L = &c.lists[li]
            rp = _share_posts(L, s, lo, hi, &n)
            for i in range(n):
                marks[rp[i] - lo] = 1
    except BaseException:
        free(marks)
        raise
    return marks


cdef int _open_list(ListC* L, PostFile f, Py_ssize_t p0, Py_ssize_t b0, int nslots) except -1:
    """Set up an on-disk list: read its block table, and its postings too if it is short (else the
    bounds pass records each slot's live run in ``srun`` and _share_posts reads runs on demand)."""
    cdef bint lazy = L.npost > _eager_posts
    L.disk = <void*>f
    L.at = p0
    L.run0 = <unsigned int>(b0 >> 1)
    L.own = <unsigned int*>malloc((L.nblk + (0 if lazy else L.npost) + 1) * sizeof(unsigned int))
    if L.own == NULL:
        raise MemoryError()
    f.read(L.own, f.npost + b0, L.nblk)
    L.blk = L.own
    if lazy:
        L.srun = <unsigned int*>calloc(nslots + 1, sizeof(unsigned int))
        if L.srun == NULL:
            raise MemoryError()
        L.post = NULL
    else:
        f.read(L.own + L.nblk, p0, L.npost)
        L.post = L.own + L.nblk
    return 0


cdef const unsigned int* _share_posts(ListC* L, unsigned int s, unsigned int lo, unsigned int hi,
                                      Py_ssize_t* n) except? NULL:
    """The list's postings in share s's live range [lo, hi): a slice of the list in memory, or its
    live run of s read from disk (lazy lists; n = 0 if s has none)."""
    cdef Py_ssize_t i, j, r, nb
    cdef unsigned int* nbuf
    if L.post != NULL:
        i = lower_bound(L.post, 0, L.npost, lo)
        j = lower_bound(L.post, i, L.npost, hi)
        n[0] = j - i
        return L.post + i
    r = <Py_ssize_t>L.srun[s] - 1
    n[0] = 0
    if r < 0:
        return L.blk
    nb = L.nblk >> 1
    i = L.blk[2 * r + 1]
    j = L.blk[2 * r + 3] if r + 1 < nb else L.npost
    if <size_t>(j - i) > L.rcap:
        nbuf = <unsigned int*>realloc(L.rbuf, (j - i) * sizeof(unsigned int))
        if nbuf == NULL:
            raise MemoryError()
        L.rbuf, L.rcap = nbuf, j - i
    (<PostFile>L.disk).read(L.rbuf, L.at + i, j - i)
    n[0] = j - i
    return L.rbuf


cdef int _scan(Ctx* c, object phrases, object excludes, object ptags, object blocked, DocStore cids,
               unsigned int lo, unsigned int hi, unsigned char* marks, int want, unsigned int s, unsigned int rank,
               unsigned long long* top_s, unsigned int* top_r, unsigned int* top_d, int ntop, int k,
               long long* matched, bint stop=False, unsigned long long bound=0, long long* left=NULL) except -1:
    """Score the docs of [lo, hi) whose mark equals ``want`` (all of them without marks). With
    ``stop`` and the share's ``bound``, stop at the first doc that could not enter the top k even with
    that score; ``left`` = the candidates not scored (from that doc on)."""
    cdef unsigned int i, x
    cdef long long sc
    for i in range(lo, hi):
        if marks != NULL and marks[i - lo] != want:
            continue
        if stop and k and ntop >= k and not _better(bound, rank, i, top_s[k - 1], top_r[k - 1], top_d[k - 1]):
            left[0] = 0
            for x in range(i, hi):
                if marks == NULL or marks[x - lo] == want:
                    left[0] += 1
            return ntop
        sc = score_doc(c, phrases, excludes, ptags, i, s)
        if sc >= 0:
            ntop = _consider(c, blocked, cids, i, sc, rank, top_s, top_r, top_d, ntop, k, matched)
    return ntop


cdef int _consider(Ctx* c, object blocked, DocStore cids, unsigned int d, long long sc, unsigned int rank,
                   unsigned long long* top_s, unsigned int* top_r, unsigned int* top_d, int ntop, int k,
                   long long* matched) except -1:
    cdef int pos
    cdef unsigned long long s = <unsigned long long>sc
    if blocked is not None and cids.cid(d) in blocked:
        return ntop
    matched[0] += 1
    if k == 0:
        return 0
    if ntop >= k and not _better(s, rank, d, top_s[k - 1], top_r[k - 1], top_d[k - 1]):
        return ntop
    pos = ntop if ntop < k else k - 1
    while pos > 0 and _better(s, rank, d, top_s[pos - 1], top_r[pos - 1], top_d[pos - 1]):
        top_s[pos] = top_s[pos - 1]
        top_r[pos] = top_r[pos - 1]
        top_d[pos] = top_d[pos - 1]
        pos -= 1
    top_s[pos] = s
    top_r[pos] = rank
    top_d[pos] = d
    return ntop + 1 if ntop < k else k


cdef inline bint _better(unsigned long long s, unsigned int r, unsigned int d,
                         unsigned long long s2, unsigned int r2, unsigned int d2) nogil:
    if s != s2:
        return s > s2
    if r != r2:
        return r < r2
    return d < d2


cdef void _sort_u64(unsigned long long* a, Py_ssize_t n) noexcept nogil:
    # shell sort is enough here (n = number of shares)
    cdef Py_ssize_t gap = 1, i, j
    cdef unsigned long long v
    while gap < n // 3:
        gap = gap * 3 + 1
    while gap >= 1:
        for i in range(gap, n):
            v = a[i]
            j = i
            while j >= gap and a[j - gap] > v:
                a[j] = a[j - gap]
                j -= gap
            a[j] = v
        gap //= 3


# ---------------------------------------------------------------------- hits

_HIT_FIELDS = ("share_id", "content_id", "name", "size", "mime", "tags", "score", "_query", "_highlight")
cdef object _hit_type = None
cdef Py_ssize_t _hit_off[9]


cdef bint _hit_layout(Hit) except -1:
    """Read the slot offsets of Hit's fields from its member descriptors (a frozen slotted
    dataclass: every field is a T_OBJECT_EX slot). False if the layout is not that (then
    make_hits calls the constructor)."""
    global _hit_type
    cdef int i
    cdef PyMemberDef* m
    if _hit_type is Hit:
        return True
    if not isinstance(Hit, type) or Hit.__init__.__code__.co_argcount != 10:
        return False
    import dataclasses
    if tuple(f.name for f in dataclasses.fields(Hit)) != _HIT_FIELDS:
        return False
    for i in range(9):
        desc = Hit.__dict__.get(_HIT_FIELDS[i])
        if type(desc).__name__ != "member_descriptor":
            return False
        m = (<PyMemberDescrObject*><void*>desc).d_member
        if m.type != T_OBJECT_EX or m.flags & READONLY:
            return False
        _hit_off[i] = m.offset
    _hit_type = Hit
    return True


cdef inline void _put(object o, int i, object v):
    """Store v in field i of a fresh Hit (its slots are still NULL)."""
    Py_INCREF(v)
    (<PyObject**>((<char*><void*>o) + _hit_off[i]))[0] = <PyObject*><void*>v


def make_hits(st, list found, q, highlight, Hit):
    """Hit records for (score, doc) pairs (see _index_py.make_hits). The frozen dataclass's
    fields are written straight into its slots (what its __init__ does through nine
    object.__setattr__ calls), and tag tuples are cached per tagset."""
    cdef DocRuns runs = st.runs
    cdef Py_ssize_t hint = 0
    cdef array doc_tagset = st.doc_tagset
    cdef DocStore docs = st.docs
    cdef const char* rec
    cdef Py_ssize_t rlen
    cdef list slot_ids = st.slot_ids, mimes = st.mimes, out = []
    cdef dict tcache = st.tag_tuples
    cdef unsigned long long a, b
    cdef unsigned int doc, ts
    cdef double scale = ranking.WEIGHT_SCALE
    cdef bint fast = _hit_layout(Hit)
    tags_of = st.tags_of
    cdef Py_ssize_t n = len(found), i = 0
    cdef unsigned int* ds = <unsigned int*>malloc(n * sizeof(unsigned int) + 1)
    cdef const char** recs = <const char**>malloc(n * sizeof(char*) + 1)
    if ds == NULL or recs == NULL:
        free(ds)
        free(recs)
        raise MemoryError()
    try:
        for score, d in found:
            ds[i] = d
            i += 1
        docs.fetch(ds, n, recs)  # content id, mime id, size, name of every hit
        i = 0
        for score, d in found:
            doc = d
            rec = recs[i]
            i += 1
            rlen = _get_le(rec + 36, 4)
            ts = doc_tagset.data.as_uints[doc]
            tags = tcache.get(ts)
            if tags is None:
                tags = tags_of(ts)
            mime = mimes[_get_le(rec + 32, 4)] or None
            if fast:
                h = PyType_GenericAlloc(<void*>Hit, 0)
                _put(h, 0, slot_ids[runs.slot_of(doc, &hint)])
                _put(h, 1, PyBytes_FromStringAndSize(rec, 32))
                _put(h, 2, PyUnicode_DecodeUTF8(rec + REC_FIXED, rlen, NULL))
                _put(h, 3, _get_le(rec + 40, 8))
                _put(h, 4, mime)
                _put(h, 5, tags)
                _put(h, 6, PyFloat_FromDouble(<unsigned long long>score / scale))
                _put(h, 7, q)
                _put(h, 8, highlight)
            else:
                h = Hit(slot_ids[runs.slot_of(doc, &hint)], PyBytes_FromStringAndSize(rec, 32),
                        PyUnicode_DecodeUTF8(rec + REC_FIXED, rlen, NULL), _get_le(rec + 40, 8),
                        mime, tags, score / scale, q, highlight)
            out.append(h)
    finally:
        free(ds)
        free(recs)
        docs.release()
    return tuple(out)


# ---------------------------------------------------------------------- image validation
def derive_ts_pfx(st):
    """See _index_py.derive_ts_pfx (the same arrays)."""
    cdef array toks = st.ts_toks, toff = st.ts_toff, tp = st.term_pfx
    cdef array pfx = array("I"), poff = array("Q", [0])
    cdef Py_ssize_t ts, k, start, m
    cdef int j, npl = len(PLENS)
    cdef unsigned int t, p
    for ts in range(len(toff) - 1):
        start = len(pfx)
        for k in range(toff.data.as_ulonglongs[ts], toff.data.as_ulonglongs[ts + 1]):
            t = toks.data.as_uints[k]
            if not t:
                continue
            for j in range(npl):
                p = tp.data.as_uints[npl * t + j]
                if p:
                    for m in range(start, len(pfx)):
                        if pfx.data.as_uints[m] == p - 1:
                            break
                    else:
                        push(pfx, p - 1)
        push_q(poff, len(pfx))
    return pfx, poff


def max_of(array a):
    """The largest value of an array, -1 if it is empty."""
    cdef Py_ssize_t i, n = len(a)
    cdef unsigned long long m = 0
    if n == 0:
        return -1
    if a.ob_descr.typecode == b"I":
        for i in range(n):
            if a.data.as_uints[i] > m:
                m = a.data.as_uints[i]
    elif a.ob_descr.typecode == b"Q":
        for i in range(n):
            if a.data.as_ulonglongs[i] > m:
                m = a.data.as_ulonglongs[i]
    else:
        return max(a)
    return m


def is_monotonic(array a):
    cdef Py_ssize_t i, n = len(a)
    if a.ob_descr.typecode == b"I":
        for i in range(n - 1):
            if a.data.as_uints[i] > a.data.as_uints[i + 1]:
                return False
        return True
    if a.ob_descr.typecode == b"Q":
        for i in range(n - 1):
            if a.data.as_ulonglongs[i] > a.data.as_ulonglongs[i + 1]:
                return False
        return True
    return all(a[i] <= a[i + 1] for i in range(n - 1))


def check_blocks(array poff, array blk, array boff, unsigned long long nslots):
    """See _index_py.check_blocks."""
    cdef Py_ssize_t t, r
    cdef unsigned long long b0, b1, size, start
    cdef long long prev
    for t in range(len(poff) - 1):
        b0 = boff.data.as_ulonglongs[t]
        b1 = boff.data.as_ulonglongs[t + 1]
        size = poff.data.as_ulonglongs[t + 1] - poff.data.as_ulonglongs[t]
        if (b1 - b0) % 2 or (size and b1 == b0):
            return False
        prev = -1
        r = b0
        while r < <Py_ssize_t>b1:
            start = blk.data.as_uints[r + 1]
            if (blk.data.as_uints[r] >> 2) >= nslots or <long long>start <= prev or start >= size or \
                    (prev < 0 and start != 0):
                return False
            prev = start
            r += 2
    return True


class _Kernels:
    pass


_K = _Kernels()
_K.tokenize = tokenize
_K.add_share = add_share
_K.run = run
_K.prepare = prepare
_K.make_hits = make_hits
_K.max_of = max_of
_K.is_monotonic = is_monotonic
_K.check_blocks = check_blocks
_K.derive_ts_pfx = derive_ts_pfx
_K.merge = merge
_K.flush = flush
_K.ExactNames = ExactNames
_K.untrack = untrack
_K.State = NState
_K.MERGE_FRACTION = 8  # merges run on the build thread: smaller deltas (memory) for more, cheaper-to-wait-for merges


class Index(IndexBase):
    """The search index (native twin)."""

    _k = _K
