"""Transfer benchmark: a file (default 1 GiB) over loopback, verified and written to disk.

Runs, in one invocation, each case in separate processes (server/seeder vs downloader):

* ``scp2p-1`` / ``scp2p-4``: scp2p providers (1 or 4 endpoints in one server process)
  -> ``Downloader`` (BLAKE3 per chunk, whole-file content id, pwrite, atomic rename);
* ``asyncio-baseline``: a plain asyncio length-prefixed chunk protocol (request = 4-byte
  index, response = 4-byte length + chunk; 32 requests pipelined; the client also hashes
  each chunk and pwrites it, so it does the same disk and hash work minus the whole-file hash);
* ``raw-tcp``: ``iperf3`` when installed, else blocking sockets (sendall / recv_into), memory
  to memory - the ceiling;
* ``libtorrent``: seed -> download of the same file, when the ``libtorrent`` package imports;
* ``raw-chunks`` / ``raw-sendfile`` (diagnostics: the kernel work of a chunked file transfer,
  no protocol, hashing or disk): the sender reads the source file in 256 KiB chunks -
  ``os.preadv`` into one buffer + ``sendall``, or ``os.sendfile`` - and the receiver reads
  each chunk with ``recv_into`` into the next of 64 rotating 256 KiB buffers (the receive
  pattern of a pipelined downloader, whose chunks wait for hashing and disk in their buffers).

Reports GB/s (10^9 bytes/s) and CPU seconds per GiB for the sending and the receiving process,
as a table and as JSON lines (for scp2p also per downloader thread: ``recv_threads_cpu_s_per_gib``
= event loop, verify thread, write threads). ``--repeat N`` runs each case N times and reports the best and the
median wall time (the machine is shared).

    python benchmarks/transfer_bench.py --size-mib 1024 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "transfer"))

GIB = 1 << 30
CHUNK = 262_144


def cpu() -> float:
    t = os.times()
    return t.user + t.system


# ----------------------------------------------------------------------------- child roles
async def role_scp2p_server(path: str, n: int) -> None:
    from transfer_util import make_file, provider  # noqa: F401

    from scp2p.content.hashing import describe_file

    d = describe_file(path)
    from scp2p.transfer.downloader import DownloadSpec

    spec = DownloadSpec(d.content_id, d.size, d.chunks, path)
    eps = [await provider(path, spec) for _ in range(n)]
    print(json.dumps({"urls": [ep.listen_addrs[0] for ep, _ in eps], "cid": d.content_id.hex(),
                      "chunks": [c.hex() for c in d.chunks]}), flush=True)  # fmt: skip
    c0 = cpu()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(json.dumps({"cpu": cpu() - c0}), flush=True)
    for ep, srv in eps:
        await ep.close()
        srv.close()


async def role_scp2p_client(info_path: str, target: str, size: int) -> None:
    from transfer_util import client

    from scp2p.transfer.downloader import Downloader, DownloadSpec

    with open(info_path) as fh:
        info = json.load(fh)
    spec = DownloadSpec(bytes.fromhex(info["cid"]), size, tuple(bytes.fromhex(c) for c in info["chunks"]), target)
    threads = _thread_cpu()
    c0, t0, u0, l0 = cpu(), time.perf_counter(), os.times(), time.thread_time()
    async with client() as c:
        dl = Downloader(c.pool, spec, providers=info["urls"])
        await dl.run()
    t1 = os.times()
    threads["loop"] = time.thread_time() - l0
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu() - c0, "user": t1.user - u0.user, "sys": t1.system - u0.system,
                      "read_back": dl.part.read_back, "direct_writes": dl.part.direct_writes, "threads": threads}), flush=True)  # fmt: skip


def _thread_cpu() -> dict:
    """CPU seconds of the chunk worker's threads, summed by kind ("verify", "write"), recorded as each
    thread ends (a diagnostic: the thread bodies are wrapped, nothing else changes)."""
    from scp2p.transfer import writer

    out: dict = {"verify": 0.0, "write": 0.0}

    def wrap(fn, kind):
        def body(self):
            try:
                fn(self)
            finally:
                out[kind] += time.thread_time()

        return body

    writer.ChunkWorker._verify = wrap(writer.ChunkWorker._verify, "verify")
    writer.ChunkWorker._write = wrap(writer.ChunkWorker._write, "write")
    return out


async def role_base_server(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size

    async def serve(reader, writer):
        try:
            while True:
                idx = int.from_bytes(await reader.readexactly(4), "big")
                data = os.pread(fd, CHUNK, idx * CHUNK)
                writer.write(len(data).to_bytes(4, "big"))
                writer.write(data)
                if writer.transport.get_write_buffer_size() > 4 << 20:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1], "size": size}), flush=True)
    c0 = cpu()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(json.dumps({"cpu": cpu() - c0}), flush=True)
    server.close()


async def role_base_client(port: int, target: str, size: int) -> None:
    from blake3 import blake3

    n = (size + CHUNK - 1) // CHUNK
    c0, t0 = cpu(), time.perf_counter()
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.posix_fallocate(fd, 0, size)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    depth = 32
    sent = 0
    for _ in range(min(depth, n)):
        writer.write(sent.to_bytes(4, "big"))
        sent += 1
    for i in range(n):
        ln = int.from_bytes(await reader.readexactly(4), "big")
        data = await reader.readexactly(ln)
        blake3(data).digest()
        os.pwrite(fd, data, i * CHUNK)
        if sent < n:
            writer.write(sent.to_bytes(4, "big"))
            sent += 1
    os.fsync(fd)
    os.close(fd)
    writer.close()
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu() - c0}), flush=True)


def _serve_once(send) -> None:
    """Accept one connection, run ``send(conn)``, report the CPU it took when asked (stdin)."""
    srv = socket.create_server(("127.0.0.1", 0))
    print(json.dumps({"port": srv.getsockname()[1]}), flush=True)
    conn, _ = srv.accept()
    c0 = cpu()
    send(conn)
    conn.close()
    sys.stdin.readline()
    print(json.dumps({"cpu": cpu() - c0}), flush=True)


def role_raw_server(size: int) -> None:
    def send(conn: socket.socket) -> None:
        buf = memoryview(bytearray(1 << 20))
        left = size
        while left:
            k = min(left, len(buf))
            conn.sendall(buf[:k])
            left -= k

    _serve_once(send)


def role_raw_client(port: int, size: int) -> None:
    s = socket.create_connection(("127.0.0.1", port))
    c0, t0 = cpu(), time.perf_counter()
    buf = memoryview(bytearray(1 << 20))
    got = 0
    while got < size:
        k = s.recv_into(buf)
        if not k:
            break
        got += k
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu() - c0, "bytes": got}), flush=True)


def role_chunks_server(path: str, mode: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size

    def send(conn: socket.socket) -> None:
        buf = memoryview(bytearray(CHUNK))
        out = conn.fileno()
        for off in range(0, size, CHUNK):
            n = min(CHUNK, size - off)
            if mode == "sendfile":
                done = 0
                while done < n:
                    done += os.sendfile(out, fd, off + done, n - done)
            else:
                os.preadv(fd, [buf[:n]], off)
                conn.sendall(buf[:n])

    _serve_once(send)


def role_chunks_client(port: int, size: int) -> None:
    s = socket.create_connection(("127.0.0.1", port))
    c0, t0 = cpu(), time.perf_counter()
    bufs = [memoryview(bytearray(CHUNK)) for _ in range(64)]
    got = i = 0
    while got < size:
        mv = bufs[i]
        i = (i + 1) % len(bufs)
        k = 0
        while k < CHUNK and got + k < size:
            r = s.recv_into(mv[k:])
            if not r:
                raise SystemExit("short stream")
            k += r
        got += k
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu() - c0, "bytes": got}), flush=True)


def case_chunks(path: str, size: int, mode: str) -> dict:
    r = _pair(["chunks-server", path, mode], lambda info: ["chunks-client", str(json.loads(info)["port"]), str(size)])
    r["tool"] = mode
    return r


# ----------------------------------------------------------------------------- orchestration
def _spawn(*args: str, script: str = __file__) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _pair(server_args: list[str], client_args_of, script: str = __file__) -> dict:
    """Run a server role and a client role of ``script`` (this file, or another bench reusing it)."""
    srv = _spawn(*server_args, script=script)
    info = srv.stdout.readline()
    cli = _spawn(*client_args_of(info), script=script)
    out = json.loads(cli.stdout.readline())
    cli.wait()
    srv.stdin.write("stats\n")
    srv.stdin.flush()
    sout = json.loads(srv.stdout.readline())
    srv.wait()
    if out.get("errors"):
        raise SystemExit(f"verification failed: {out['errors']}")
    r = {"wall": out["wall"], "recv_cpu": out["cpu"], "send_cpu": sout["cpu"]}
    r.update({f"recv_{k}": out[k] for k in ("user", "sys") if k in out})
    if "threads" in out:  # the downloader's threads: event loop, verify, write
        r["recv_threads"] = out["threads"]
    if "direct_writes" in out:
        r["direct_writes"] = out["direct_writes"]
    return r


def case_scp2p(path: str, size: int, n: int, tmp: str) -> dict:
    target = os.path.join(tmp, f"dl-{n}.bin")
    info_path = os.path.join(tmp, "info.json")

    def client_args(info: str) -> list[str]:
        with open(info_path, "w") as fh:  # too long for argv (64 hex digits per chunk)
            fh.write(info)
        return ["scp2p-client", info_path, target, str(size)]

    r = _pair(["scp2p-server", path, str(n)], client_args)
    os.unlink(target)
    return r


def case_baseline(path: str, size: int, tmp: str) -> dict:
    target = os.path.join(tmp, "base.bin")
    r = _pair(["base-server", path], lambda info: ["base-client", str(json.loads(info)["port"]), target, str(size)])
    os.unlink(target)
    return r


def case_raw(size: int) -> dict:
    if shutil.which("iperf3"):
        port = "52011"
        s = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", port], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", port, "-n", str(size), "-J"],
                             capture_output=True, text=True, check=True)  # fmt: skip
        s.wait()
        j = json.loads(out.stdout)["end"]
        bps = j["sum_received"]["bytes"] / j["sum_received"]["seconds"]
        cpu_u = j.get("cpu_utilization_percent", {})
        wall = size / bps
        return {"wall": wall, "recv_cpu": wall * cpu_u.get("remote_total", 0) / 100,
                "send_cpu": wall * cpu_u.get("host_total", 0) / 100, "tool": "iperf3"}
    r = _pair(["raw-server", str(size)], lambda info: ["raw-client", str(json.loads(info)["port"]), str(size)])
    r["tool"] = "blocking sockets"
    return r


def case_libtorrent(path: str, size: int, tmp: str) -> dict | None:
    try:
        import libtorrent  # noqa: F401
    except ImportError:
        return None
    dl_dir = os.path.join(tmp, "lt")
    r = _pair(["lt-seed", path, os.path.join(tmp, "bench.torrent")],
              lambda info: ["lt-leech", json.loads(info)["torrent"], str(json.loads(info)["port"]), dl_dir])  # fmt: skip
    shutil.rmtree(dl_dir, ignore_errors=True)
    return r


#: libtorrent tuned for one fast loopback peer: TCP only (uTP on loopback is slow), deep request
#: queues and send buffers, more disk threads, no rate limits, no DHT/LSD/UPnP/NAT-PMP
LT_SETTINGS = {
    "listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
    "enable_natpmp": False, "allow_multiple_connections_per_ip": True,
    "enable_outgoing_utp": False, "enable_incoming_utp": False,
    "max_out_request_queue": 1500, "max_allowed_in_request_queue": 2000, "request_queue_time": 10,
    "send_buffer_watermark": 8 << 20, "send_buffer_low_watermark": 1 << 20, "send_buffer_watermark_factor": 150,
    "max_queued_disk_bytes": 64 << 20, "aio_threads": 4, "hashing_threads": 2,
    "send_socket_buffer_size": 4 << 20, "recv_socket_buffer_size": 4 << 20,
    "download_rate_limit": 0, "upload_rate_limit": 0, "unchoke_slots_limit": -1,
    "alert_mask": 0,
}  # fmt: skip


def role_lt_seed(path: str, torrent_path: str) -> None:  # pragma: no cover - only with libtorrent
    import warnings

    import libtorrent as lt

    warnings.simplefilter("ignore", DeprecationWarning)
    fs = lt.file_storage()
    lt.add_files(fs, path)
    t = lt.create_torrent(fs, piece_size=CHUNK)
    lt.set_piece_hashes(t, os.path.dirname(path))
    with open(torrent_path, "wb") as fh:
        fh.write(lt.bencode(t.generate()))
    ses = lt.session(LT_SETTINGS)
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(torrent_path)
    p.save_path = os.path.dirname(path)
    h = ses.add_torrent(p)
    while not h.status().is_seeding:  # the seed checks its file first (not timed)
        time.sleep(0.05)
    print(json.dumps({"port": ses.listen_port(), "torrent": torrent_path}), flush=True)
    c0 = cpu()
    sys.stdin.readline()
    print(json.dumps({"cpu": cpu() - c0}), flush=True)


def role_lt_leech(torrent_path: str, port: int, dl_dir: str) -> None:  # pragma: no cover - only with libtorrent
    import libtorrent as lt

    os.makedirs(dl_dir, exist_ok=True)
    ses = lt.session(LT_SETTINGS)
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(torrent_path)
    p.save_path = dl_dir
    c0, t0 = cpu(), time.perf_counter()
    h = ses.add_torrent(p)
    last = 0.0
    while True:
        st = h.status()
        if st.is_seeding:  # every piece hash-checked and written
            break
        now = time.perf_counter()
        if st.num_peers == 0 and now - last > 0.5:  # (re)connect once the torrent is ready
            h.connect_peer(("127.0.0.1", port))
            last = now
        time.sleep(0.01)
    h.flush_cache()
    wall = time.perf_counter() - t0
    print(json.dumps({"wall": wall, "cpu": cpu() - c0}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--dir", default=None, help="where to put the files (default: a temp dir)")
    ap.add_argument("--cases", default=None, help="comma-separated subset of the cases to run")
    a = ap.parse_args()
    size = a.size_mib << 20
    tmp = tempfile.mkdtemp(prefix="scp2p-bench-", dir=a.dir)
    try:
        from transfer_util import make_file

        path = os.path.join(tmp, "source.bin")
        make_file(path, size)
        cases = {
            "raw-tcp": lambda: case_raw(size),
            "asyncio-baseline": lambda: case_baseline(path, size, tmp),
            "scp2p-1": lambda: case_scp2p(path, size, 1, tmp),
            "scp2p-4": lambda: case_scp2p(path, size, 4, tmp),
            "libtorrent": lambda: case_libtorrent(path, size, tmp),
            "raw-chunks": lambda: case_chunks(path, size, "preadv"),
            "raw-sendfile": lambda: case_chunks(path, size, "sendfile"),
        }
        if a.cases:
            cases = {k: v for k, v in cases.items() if k in a.cases.split(",")}
        rows = []
        for name, fn in cases.items():
            runs = []
            for _ in range(a.repeat):
                r = fn()
                if r is None:
                    break
                runs.append(r)
            if not runs:
                print(json.dumps({"case": name, "skipped": "libtorrent not installed"}))
                continue
            best = min(runs, key=lambda r: r["wall"])
            med = statistics.median(r["wall"] for r in runs)
            gib = size / GIB
            row = {"case": name, "size": size, "runs": len(runs), "best_gbps": size / best["wall"] / 1e9,
                   "median_gbps": size / med / 1e9, "recv_cpu_s_per_gib": best["recv_cpu"] / gib,
                   "send_cpu_s_per_gib": best["send_cpu"] / gib,
                   **{k: v for k, v in best.items() if k in ("tool", "note", "recv_user", "recv_sys", "direct_writes")}}  # fmt: skip
            if "recv_threads" in best:  # CPU-s/GiB per thread kind of the best run's downloader
                row["recv_threads_cpu_s_per_gib"] = {k: round(v / gib, 3) for k, v in best["recv_threads"].items()}
            rows.append(row)
            print(json.dumps(row), flush=True)
        print()
        print(f"{'case':18} {'best GB/s':>10} {'median GB/s':>12} {'recv CPU-s/GiB':>15} {'send CPU-s/GiB':>15}")
        for r in rows:
            print(f"{r['case']:18} {r['best_gbps']:10.2f} {r['median_gbps']:12.2f} "
                  f"{r['recv_cpu_s_per_gib']:15.2f} {r['send_cpu_s_per_gib']:15.2f}")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("scp2p-server", "scp2p-client", "base-server", "base-client",
                                               "raw-server", "raw-client", "lt-seed", "lt-leech",
                                               "chunks-server", "chunks-client"):  # fmt: skip
        role, args = sys.argv[1], sys.argv[2:]
        if role == "scp2p-server":
            asyncio.run(role_scp2p_server(args[0], int(args[1])))
        elif role == "scp2p-client":
            asyncio.run(role_scp2p_client(args[0], args[1], int(args[2])))
        elif role == "base-server":
            asyncio.run(role_base_server(args[0]))
        elif role == "base-client":
            asyncio.run(role_base_client(int(args[0]), args[1], int(args[2])))
        elif role == "raw-server":
            role_raw_server(int(args[0]))
        elif role == "lt-seed":
            role_lt_seed(args[0], args[1])
        elif role == "lt-leech":
            role_lt_leech(args[0], int(args[1]), args[2])
        elif role == "chunks-server":
            role_chunks_server(args[0], args[1])
        elif role == "chunks-client":
            role_chunks_client(int(args[0]), int(args[1]))
        else:
            role_raw_client(int(args[0]), int(args[1]))
    else:
        main()
