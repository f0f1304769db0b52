"""Positioned file I/O and the file capabilities of this platform, chosen once at import.

The data path reads chunks at an offset (the chunk server, the download's read-back) and writes
them at an offset from several threads at once (the download's write threads). POSIX has
``pread``/``pwrite`` and their vectored forms; Python exposes them as far as the platform and the
build do. This module is the one place that knows which exist; callers use its names in place
of the ``os`` ones, with the same signatures and results:

* :func:`preadv` ``(fd, buffers, offset) -> int`` reads into the writable ``buffers`` from
  ``offset``; fewer bytes than they hold only at the end of the file (the fallbacks keep reading
  until the buffers are full; ``os.preadv`` may return short in principle, which callers treat as
  a changed file);
* :func:`pwritev` ``(fd, buffers, offset) -> int`` and :func:`pwrite` ``(fd, data, offset) -> int``
  write at ``offset`` (the fallbacks write everything or raise);

with :data:`KIND` naming the implementation:

* ``"vector"``: ``os.preadv``/``os.pwritev``/``os.pwrite`` themselves (Linux, the BSDs, macOS 11+
  with a Python built for it): the functions *are* the ``os`` builtins - no wrapper, no cost;
* ``"pread"``: ``os.pread``/``os.pwrite`` without the vectored forms (macOS before 11, some Python
  builds): a read is one ``pread`` per buffer plus one copy into it; writes loop over the buffers;
* ``"seek"``: neither (Windows): ``lseek`` then ``read``/``write``. The file position belongs to the
  descriptor, so the seek and the transfer must not interleave with another thread's on the same
  descriptor: each descriptor maps to one of :data:`_STRIPES` locks (``fd % _STRIPES``) held for
  the whole operation. This is correct only if *every* positioned access to such a descriptor goes
  through this module (the data path's do); the native twin's ``ReadFile`` at an OVERLAPPED offset
  (``_native/scp2p_pio.h``) does not depend on the position.

Also: :data:`OPEN_FLAGS` (``O_CLOEXEC`` on POSIX, ``O_BINARY`` on Windows - without it ``os.open``
gives a *text-mode* descriptor there, whose reads and writes translate line ends and stop at
Ctrl-Z), :data:`O_DIRECT` (Linux only, else 0), :func:`preallocate` (``posix_fallocate``, else
``ftruncate``: macOS and Windows have no ``posix_fallocate``) and :func:`fdatasync` (``os.fsync``
where there is no ``os.fdatasync``: macOS, Windows).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Sequence

__all__ = ["KIND", "O_DIRECT", "OPEN_FLAGS", "fdatasync", "preadv", "preallocate", "pwrite", "pwritev"]

#: flags every data-path ``os.open`` adds: close-on-exec (POSIX), binary mode (Windows)
OPEN_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
#: ``os.O_DIRECT`` on Linux (ext4, xfs, btrfs take it; tmpfs refuses at open), else 0: the writer
#: then has no direct descriptor and every chunk goes through the page cache
O_DIRECT = getattr(os, "O_DIRECT", 0) if sys.platform.startswith("linux") else 0
#: ``os.fdatasync`` where it exists, else ``os.fsync``
fdatasync = getattr(os, "fdatasync", None) or os.fsync

#: descriptor locks of the ``"seek"`` implementation
_STRIPES = 64
_LOCKS = tuple(threading.Lock() for _ in range(_STRIPES))


def _bytes_view(b) -> memoryview:
    mv = memoryview(b)
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")


# ----------------------------------------------------------------------------- "pread"
def _fill(buffers: Sequence, read) -> int:
    """Fill ``buffers`` in order with ``read(n, done)`` (at most ``n`` bytes; ``done`` read so
    far); stops early only at an empty read (the end of the file)."""
    total = 0
    for b in buffers:
        mv = _bytes_view(b)
        n = len(mv)
        pos = 0
        while pos < n:
            data = read(n - pos, total)
            if not data:
                return total
            k = len(data)
            mv[pos : pos + k] = data
            pos += k
            total += k
    return total


def _preadv_pread(fd: int, buffers: Sequence, offset: int) -> int:
    return _fill(buffers, lambda n, done: os.pread(fd, n, offset + done))


def _pwrite_pwrite(fd: int, data, offset: int) -> int:
    mv = _bytes_view(data)
    n = len(mv)
    pos = 0
    while pos < n:
        pos += os.pwrite(fd, mv[pos:], offset + pos)
    return n


def _pwritev_pwrite(fd: int, buffers: Sequence, offset: int) -> int:
    total = 0
    for b in buffers:  # one call per buffer, each as it is: O_DIRECT buffers stay aligned
        total += _pwrite_pwrite(fd, b, offset + total)
    return total


# ----------------------------------------------------------------------------- "seek"
def _preadv_seek(fd: int, buffers: Sequence, offset: int) -> int:
    with _LOCKS[fd % _STRIPES]:
        os.lseek(fd, offset, os.SEEK_SET)
        return _fill(buffers, lambda n, _done: os.read(fd, n))


def _write_all(fd: int, mv: memoryview) -> None:
    pos, n = 0, len(mv)
    while pos < n:
        pos += os.write(fd, mv[pos:])


def _pwritev_seek(fd: int, buffers: Sequence, offset: int) -> int:
    views = [_bytes_view(b) for b in buffers]
    with _LOCKS[fd % _STRIPES]:
        os.lseek(fd, offset, os.SEEK_SET)
        for mv in views:
            _write_all(fd, mv)
    return sum(len(mv) for mv in views)


def _pwrite_seek(fd: int, data, offset: int) -> int:
    return _pwritev_seek(fd, (data,), offset)


# ----------------------------------------------------------------------------- the choice
def _select(names) -> tuple:
    """(kind, preadv, pwritev, pwrite) for a platform whose ``os`` has ``names``."""
    if {"preadv", "pwritev", "pwrite"} <= names:
        return "vector", os.preadv, os.pwritev, os.pwrite
    if {"pread", "pwrite"} <= names:
        return "pread", _preadv_pread, _pwritev_pwrite, _pwrite_pwrite
    return "seek", _preadv_seek, _pwritev_seek, _pwrite_seek


#: ``"vector"``, ``"pread"`` or ``"seek"`` (see the module docstring)
KIND, preadv, pwritev, pwrite = _select({n for n in ("preadv", "pwritev", "pread", "pwrite") if hasattr(os, n)})

_fallocate = getattr(os, "posix_fallocate", None)


def preallocate(fd: int, size: int) -> None:
    """Give the file ``size`` bytes: a larger one is cut, a smaller one allocated with
    ``posix_fallocate`` where the platform and the filesystem have it, else extended (sparse)
    with ``ftruncate``."""
    st = os.fstat(fd)
    if st.st_size == size:
        return
    if st.st_size > size or not size or _fallocate is None:
        os.ftruncate(fd, size)
        return
    try:
        _fallocate(fd, 0, size)
    except OSError:  # e.g. a filesystem without fallocate
        os.ftruncate(fd, size)
