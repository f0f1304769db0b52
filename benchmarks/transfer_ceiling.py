"""The ceiling of a verified download on this machine: the same kernel, hash and disk work as
scp2p's downloader, with no protocol and almost no interpreter work per chunk.

Issue 8 asks for single-provider throughput of at least 0.4x raw loopback TCP. This script
measures, in one run and in separate processes, how fast any implementation could go that
does the work the protocol requires of a downloader:

* ``raw``: raw loopback TCP, blocking sockets, 1 MiB ``sendall`` / ``recv_into``, memory to
  memory (the benchmark's ``raw-tcp`` case when ``iperf3`` is absent);
* ``ceiling``: the sender ``preadv``'s each 256 KiB chunk of the source file into a buffer and
  sends it with a 16-byte header (one ``sendmsg``); the receiver ``recv_into``'s each chunk into
  the next of 64 page-aligned buffers, and two threads (the ``blake3`` package releases the GIL
  on big inputs) do, per chunk: the chunk's BLAKE3 against the list computed before the
  timer starts and the whole-file BLAKE3 ``update`` (one verify thread, in chunk order), then
  ``O_DIRECT`` ``pwritev``'s of 8 consecutive chunks into a preallocated file (two write
  threads) -- the same thread layout as scp2p's ``PartFile``, with a queue operation per
  chunk (per group for the writers) and nothing else. No envelopes, no requests, no event loop;
* ``ceiling-nohash`` / ``ceiling-nodisk``: the same without the two hash passes / without the
  disk write, to show what each costs.

The target ratio is then read off directly: if ``ceiling`` is below 0.4x ``raw``, no
implementation of the protocol's downloader reaches the target on this machine, because
scp2p does strictly more work per chunk than the ceiling does.

    python benchmarks/transfer_ceiling.py --size-mib 1024 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import queue
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time

from transfer_bench import CHUNK, GIB, _pair, _serve_once, cpu, role_raw_client, role_raw_server  # the bench's raw-tcp case

NBUF = 64
HEADER = struct.Struct(">QQ")  # chunk index, length
WRITERS = 2  # as scp2p's PartFile: two write threads,
WRITE_GROUP = 8  # each writing up to 8 consecutive chunks (2 MiB) with one pwritev


def role_chunk_server(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size

    def send(conn: socket.socket) -> None:
        buf = memoryview(bytearray(CHUNK))
        for i, off in enumerate(range(0, size, CHUNK)):
            n = min(CHUNK, size - off)
            os.preadv(fd, [buf[:n]], off)
            hdr = HEADER.pack(i, n)
            sent = conn.sendmsg([hdr, buf[:n]])
            if sent < n + HEADER.size:  # a partial send: finish it
                rest = (hdr + bytes(buf[:n]))[sent:]
                conn.sendall(rest)

    _serve_once(send)


def role_chunk_client(port: int, path: str, target: str, mode: str) -> None:
    import blake3

    size = os.path.getsize(path)
    with open(path, "rb") as fh:  # the manifest's chunk hashes, before the timer
        expected = []
        content_id = blake3.blake3()
        while block := fh.read(CHUNK):
            expected.append(blake3.blake3(block).digest())
            content_id.update(block)
        content_id = content_id.digest()
    hash_on = mode != "nohash"
    disk_on = mode != "nodisk"
    region = mmap.mmap(-1, CHUNK * NBUF)  # page-aligned, as O_DIRECT needs
    bufs = [memoryview(region)[i * CHUNK:(i + 1) * CHUNK] for i in range(NBUF)]
    free: queue.SimpleQueue = queue.SimpleQueue()
    for i in range(NBUF):
        free.put(i)
    to_hash: queue.SimpleQueue = queue.SimpleQueue()
    to_write: queue.SimpleQueue = queue.SimpleQueue()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.posix_fallocate(fd, 0, size)
    os.close(fd)
    dfd = os.open(target, os.O_WRONLY | os.O_DIRECT)
    whole = blake3.blake3()
    errors: list[str] = []

    def verifier() -> None:  # in chunk order: the chunk's hash, then the whole-file hash
        group: list = []
        while (job := to_hash.get()) is not None:
            b, idx, n = job
            mv = bufs[b][:n]
            if hash_on:
                if blake3.blake3(mv).digest() != expected[idx]:
                    errors.append(f"chunk {idx} mismatch")
                whole.update(mv)
            group.append(job)
            if len(group) == WRITE_GROUP:
                to_write.put(group)
                group = []
        if group:
            to_write.put(group)
        for _ in range(WRITERS):
            to_write.put(None)

    def writer() -> None:  # one vectored O_DIRECT write per group of consecutive chunks
        while (group := to_write.get()) is not None:
            if disk_on:
                os.pwritev(dfd, [bufs[b][:n] for b, _, n in group], group[0][1] * CHUNK)
            for b, _, _ in group:
                free.put(b)

    s = socket.create_connection(("127.0.0.1", port))
    c0, t0 = cpu(), time.perf_counter()
    th = [threading.Thread(target=verifier)] + [threading.Thread(target=writer) for _ in range(WRITERS)]
    for t in th:
        t.start()
    hdr = bytearray(HEADER.size)
    got = 0
    while got < size:
        k = 0
        while k < HEADER.size:
            r = s.recv_into(memoryview(hdr)[k:])
            if not r:
                raise SystemExit("short stream")
            k += r
        idx, n = HEADER.unpack(hdr)
        b = free.get()
        mv = bufs[b]
        k = 0
        while k < n:
            r = s.recv_into(mv[k:n])
            if not r:
                raise SystemExit("short stream")
            k += r
        to_hash.put((b, idx, n))
        got += n
    to_hash.put(None)
    for t in th:
        t.join()
    if hash_on and whole.digest() != content_id:  # the whole-file check against the content id
        errors.append("content id mismatch")
    wall = time.perf_counter() - t0
    used = cpu() - c0
    os.close(dfd)
    print(json.dumps({"wall": wall, "cpu": used, "errors": errors[:3]}), flush=True)


def _port(info: str) -> str:
    return str(json.loads(info)["port"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](*sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cases", default="raw,ceiling,ceiling-nohash,ceiling-nodisk")
    ap.add_argument("--dir", default=None, help="where the source and target files go (default: a temp dir)")
    args = ap.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        src = os.path.join(tmp, "src.bin")
        with open(src, "wb") as fh:
            left = size
            while left:
                k = min(left, 1 << 24)
                fh.write(os.urandom(k))
                left -= k
        target = os.path.join(tmp, "dst.bin")
        rows = {}
        for case in args.cases.split(","):
            walls = []
            for _ in range(args.repeat):
                if case == "raw":
                    r = _pair(["raw-server", str(size)], lambda info: ["raw-client", _port(info), str(size)], __file__)
                else:
                    mode = case.partition("-")[2] or "full"
                    r = _pair(["chunk-server", src], lambda info, m=mode: ["chunk-client", _port(info), src, target, m],
                              __file__)
                walls.append(r)
            best = min(walls, key=lambda r: r["wall"])
            med = statistics.median(r["wall"] for r in walls)
            row = {"case": case, "size": size, "gbps_best": size / best["wall"] / 1e9, "gbps_median": size / med / 1e9,
                   "recv_cpu_s_per_gib": best["recv_cpu"] * GIB / size, "send_cpu_s_per_gib": best["send_cpu"] * GIB / size}
            rows[case] = row
            print(json.dumps(row), flush=True)
        raw = rows.get("raw")
        print(f"{'case':16} {'GB/s best':>9} {'median':>7} {'x raw':>6} {'recv CPU-s/GiB':>15} {'send CPU-s/GiB':>15}")
        for case, row in rows.items():
            ratio = f"{row['gbps_best'] / raw['gbps_best']:.2f}" if raw else "-"
            print(f"{case:16} {row['gbps_best']:9.2f} {row['gbps_median']:7.2f} {ratio:>6} "
                  f"{row['recv_cpu_s_per_gib']:15.2f} {row['send_cpu_s_per_gib']:15.2f}")


ROLES = {
    "raw-server": lambda size: role_raw_server(int(size)),
    "raw-client": lambda port, size: role_raw_client(int(port), int(size)),
    "chunk-server": role_chunk_server,
    "chunk-client": lambda port, path, target, mode: role_chunk_client(int(port), path, target, mode),
}

if __name__ == "__main__":
    main()
