"""Transport benchmark: request/response round trips and 256 KiB CHUNK_DATA bulk throughput per
transport (tcp, tls, quic) on loopback, against a plain asyncio length-prefixed echo baseline
measured in the same run.

    python benchmarks/transport_bench.py                    # 3 repeats, table + JSON lines
    python benchmarks/transport_bench.py --repeat 5 --seconds 3
    python benchmarks/transport_bench.py --profile tls      # where the time goes (cProfile top)

Server and client share one event loop and one process, for the baseline and for every
transport alike. Measurements:
  rtt     sequential round trips/s (one request at a time, PEX_REQUEST -> PEX_OFFER)
  rps     pipelined round trips/s (64 requests in flight on one session)
  bulk    MB/s of 256 KiB CHUNK_DATA responses (8 GET_CHUNK requests in flight)
The baseline does the same with raw frames: 13-byte request frames, 4-byte-prefixed responses
of the same size as our encoded envelopes, read with StreamReader.readexactly.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scp2p.identity import NodeKey  # noqa: E402
from scp2p.transport import Dispatcher, Endpoint, TransportConfig  # noqa: E402
from scp2p.wire import messages as m  # noqa: E402
from scp2p.wire.records import Capabilities  # noqa: E402

CHUNK = 262_144
CID = bytes(range(32))
BULK_INFLIGHT = 8
PIPE_INFLIGHT = 64


# --------------------------------------------------------------------------- baseline
async def baseline_server():
    small = (20).to_bytes(4, "big") + bytes(20)
    big_body = bytes(CHUNK + 120)
    big = len(big_body).to_bytes(4, "big") + big_body

    async def handle(r, w):
        try:
            while True:
                n = int.from_bytes(await r.readexactly(4), "big")
                body = await r.readexactly(n)
                w.write(big if body[:1] == b"B" else small)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


class BaselineClient:
    def __init__(self, r, w):
        self.r, self.w = r, w
        self.lock = asyncio.Lock()
        self.waiters: asyncio.Queue = asyncio.Queue()
        self.reader_task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self):
        while True:
            n = int.from_bytes(await self.r.readexactly(4), "big")
            body = await self.r.readexactly(n)
            fut = await self.waiters.get()
            fut.set_result(body)

    async def request(self, kind: bytes):
        fut = asyncio.get_running_loop().create_future()
        self.waiters.put_nowait(fut)
        self.w.write((13).to_bytes(4, "big") + kind + bytes(12))
        return await fut

    async def close(self):
        self.reader_task.cancel()
        try:
            await self.reader_task
        except (asyncio.CancelledError, asyncio.IncompleteReadError, ConnectionError):
            pass
        self.w.close()
        await self.w.wait_closed()


# --------------------------------------------------------------------------- measurements
async def _timed(seconds: float, inflight: int, call) -> tuple[int, float]:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return done, time.perf_counter() - t0


async def measure_baseline(seconds: float) -> dict:
    server, port = await baseline_server()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    c = BaselineClient(r, w)
    await c.request(b"S")
    n, dt = await _timed(seconds, 1, lambda: c.request(b"S"))
    rtt = n / dt
    n, dt = await _timed(seconds, PIPE_INFLIGHT, lambda: c.request(b"S"))
    rps = n / dt
    n, dt = await _timed(seconds, BULK_INFLIGHT, lambda: c.request(b"B"))
    bulk = n * CHUNK / dt / 1e6
    await c.close()
    server.close()
    await server.wait_closed()
    return {"rtt": rtt, "rps": rps, "bulk": bulk}


def _dispatcher() -> Dispatcher:
    d = Dispatcher()
    data = bytes(CHUNK)
    offer = m.PexOffer(())

    async def pex(ctx, msg):
        return offer

    async def chunk(ctx, msg):
        return m.ChunkData(msg.content_id, msg.chunk_index, data)

    d.register(m.MsgType.PEX_REQUEST, pex)
    d.register(m.MsgType.GET_CHUNK, chunk)
    return d


async def measure_transport(scheme: str, seconds: float) -> dict:
    cfg = TransportConfig(keepalive_interval=None, idle_timeout=None, max_in_flight=PIPE_INFLIGHT)
    async with Endpoint(NodeKey.generate(), Capabilities.desktop(), [f"{scheme}://127.0.0.1:0"], _dispatcher(), cfg) as a:
        async with Endpoint(NodeKey.generate(), Capabilities.desktop(), [], Dispatcher(), cfg) as b:
            s = await b.pool.session(a.listen_addrs[0])
            req = m.PexRequest(1)
            await s.request(req)
            n, dt = await _timed(seconds, 1, lambda: s.request(req))
            rtt = n / dt
            n, dt = await _timed(seconds, PIPE_INFLIGHT, lambda: s.request(req))
            rps = n / dt
            get = m.GetChunk(CID, 0)
            n, dt = await _timed(seconds, BULK_INFLIGHT, lambda: s.request(get))
            bulk = n * CHUNK / dt / 1e6
            return {"rtt": rtt, "rps": rps, "bulk": bulk}


def profile(scheme: str, seconds: float, top: int = 15) -> str:
    pr = cProfile.Profile()

    async def run():
        cfg = TransportConfig(keepalive_interval=None, idle_timeout=None)
        async with Endpoint(NodeKey.generate(), Capabilities.desktop(), [f"{scheme}://127.0.0.1:0"], _dispatcher(), cfg) as a:
            async with Endpoint(NodeKey.generate(), Capabilities.desktop(), [], Dispatcher(), cfg) as b:
                s = await b.pool.session(a.listen_addrs[0])
                get = m.GetChunk(CID, 0)
                pr.enable()
                await _timed(seconds, BULK_INFLIGHT, lambda: s.request(get))
                pr.disable()

    asyncio.run(run())
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--transports", default="tcp,tls,quic")
    ap.add_argument("--profile", metavar="SCHEME", help="profile the bulk run of one transport and exit")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.profile:
        print(profile(args.profile, args.seconds))
        return
    schemes = ["baseline"] + args.transports.split(",")
    runs: dict[str, list[dict]] = {k: [] for k in schemes}
    for _ in range(args.repeat):
        for k in schemes:
            coro = measure_baseline(args.seconds) if k == "baseline" else measure_transport(k, args.seconds)
            runs[k].append(asyncio.run(coro))
    base_best = max(r["bulk"] for r in runs["baseline"])
    base_med = statistics.median(r["bulk"] for r in runs["baseline"])
    print(f"{'transport':<10} {'rtt/s best':>11} {'rtt/s med':>10} {'pipelined/s best':>17} {'pipelined/s med':>16}"
          f" {'bulk MB/s best':>15} {'bulk MB/s med':>14} {'bulk vs base (med)':>19}")  # fmt: skip
    lines = []
    for k in schemes:
        rs = runs[k]
        best = {f: max(r[f] for r in rs) for f in ("rtt", "rps", "bulk")}
        med = {f: statistics.median(r[f] for r in rs) for f in ("rtt", "rps", "bulk")}
        ratio = med["bulk"] / base_med
        print(f"{k:<10} {best['rtt']:>11.0f} {med['rtt']:>10.0f} {best['rps']:>17.0f} {med['rps']:>16.0f}"
              f" {best['bulk']:>15.1f} {med['bulk']:>14.1f} {ratio:>18.2f}x")  # fmt: skip
        lines.append({"bench": "transport", "transport": k, "repeat": len(rs), "seconds": args.seconds,
                      "rtt_best": best["rtt"], "rtt_median": med["rtt"], "pipelined_best": best["rps"],
                      "pipelined_median": med["rps"], "bulk_mb_s_best": best["bulk"],
                      "bulk_mb_s_median": med["bulk"], "bulk_vs_baseline_median": ratio,
                      "bulk_vs_baseline_best": best["bulk"] / base_best})  # fmt: skip
    for line in lines:
        print(json.dumps(line))


if __name__ == "__main__":
    main()
