#ifndef SCP2P_PIO_H
#define SCP2P_PIO_H
/* Positioned file I/O shared by the native twins (the search index's document store and
   postings files, the data path's chunk reads): POSIX pread/pwrite, or ReadFile/WriteFile with
   an OVERLAPPED offset on Windows (no POSIX headers there). */
#ifdef _WIN32
#include <io.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>
/* The CRT calls its invalid-parameter handler for a descriptor that is not open (the default
   handler ends the process); CPython silences it around such calls (its _Py_BEGIN_SUPPRESS_IPH,
   same condition), so do we: a closed fd then gives EBADF, as on POSIX. */
#if defined(_MSC_VER) && _MSC_VER >= 1900
static void __cdecl scp2p_no_iph(const wchar_t* e, const wchar_t* f, const wchar_t* fn, unsigned int l, uintptr_t r) {
    (void)e; (void)f; (void)fn; (void)l; (void)r;
}
#define SCP2P_IPH_OFF _invalid_parameter_handler scp2p_old_iph = _set_thread_local_invalid_parameter_handler(scp2p_no_iph);
#define SCP2P_IPH_ON _set_thread_local_invalid_parameter_handler(scp2p_old_iph);
#else
#define SCP2P_IPH_OFF
#define SCP2P_IPH_ON
#endif
static HANDLE scp2p_handle(int fd) {
    HANDLE h;
    SCP2P_IPH_OFF
    h = (HANDLE)_get_osfhandle(fd);
    SCP2P_IPH_ON
    return h;
}
static int scp2p_close(int fd) {
    int r;
    SCP2P_IPH_OFF
    r = _close(fd);
    SCP2P_IPH_ON
    return r;
}
static Py_ssize_t scp2p_prw(int fd, void* buf, size_t n, unsigned long long off, int wr) {
    HANDLE h = scp2p_handle(fd);
    OVERLAPPED ov;
    DWORD done = 0;
    BOOL ok;
    if (h == INVALID_HANDLE_VALUE) { errno = EBADF; return -1; }
    memset(&ov, 0, sizeof ov);
    ov.Offset = (DWORD)off;
    ov.OffsetHigh = (DWORD)(off >> 32);
    if (n > 0x40000000u) n = 0x40000000u;
    ok = wr ? WriteFile(h, buf, (DWORD)n, &done, &ov) : ReadFile(h, buf, (DWORD)n, &done, &ov);
    if (!ok) {
        if (!wr && GetLastError() == ERROR_HANDLE_EOF) return 0;
        errno = GetLastError() == ERROR_DISK_FULL ? ENOSPC : EIO;
        return -1;
    }
    return (Py_ssize_t)done;
}
#define scp2p_pread(fd, b, n, o) scp2p_prw((fd), (b), (n), (o), 0)
#define scp2p_pwrite(fd, b, n, o) scp2p_prw((fd), (void*)(b), (n), (o), 1)
#else
#include <unistd.h>
#define scp2p_pread(fd, b, n, o) pread((fd), (b), (n), (off_t)(o))
#define scp2p_pwrite(fd, b, n, o) pwrite((fd), (b), (n), (off_t)(o))
#define scp2p_close(fd) close(fd)
#endif
#endif
