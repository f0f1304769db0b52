"""Relay benchmark: request round trips and 256 KiB chunk throughput, relayed vs direct, loopback.

    python benchmarks/relay_bench.py                 # 3 repeats, table + JSON lines
    python benchmarks/relay_bench.py --repeat 5 --seconds 3

Three endpoints in one process and event loop: a relay R (tcp listener, content relaying on,
generous caps), an owner O serving PEX_REQUEST and GET_CHUNK (256 KiB CHUNK_DATA from memory)
and a requester Q. ``direct``: Q -> O over TCP (O listens for this mode only). ``relay``: Q ->
R -> O through RELAY_STREAM (O registered at R without using its listener). Measurements:
  rtt    sequential round trips/s (PEX_REQUEST -> PEX_OFFER, one at a time)
  bulk   MB/s of 256 KiB CHUNK_DATA (8 GET_CHUNK in flight on one session)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scp2p.identity import NodeKey  # noqa: E402
from scp2p.relay import RelayLimits, RelayPolicy, RelayService  # noqa: E402
from scp2p.transport import Endpoint  # noqa: E402
from scp2p.wire import messages as m  # noqa: E402
from scp2p.wire.records import Capabilities  # noqa: E402

CHUNK = 262_144
CID = bytes(range(32))
DATA = bytes(CHUNK)
BIG = RelayLimits(content=True, control_bytes_per_day=1 << 50, content_bytes_per_day=1 << 50, concurrent_streams=64)


async def _pex(ctx, msg):
    return m.PexOffer(())


async def _chunk(ctx, msg):
    return m.ChunkData(msg.content_id, msg.chunk_index, DATA)


async def _measure(session, seconds: float) -> tuple[float, float]:
    end = time.perf_counter() + seconds
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        await session.request(m.PexRequest(8), timeout=10)
        n += 1
    rtt = n / (time.perf_counter() - t0)
    payload = m.encode_payload(m.GetChunk(CID, 0))
    got = 0
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()

    async def worker():
        nonlocal got
        while time.perf_counter() < end:
            env = await session.request_raw(m.MsgType.GET_CHUNK, payload, timeout=30)
            got += len(env.payload)

    await asyncio.gather(*(worker() for _ in range(8)))
    return rtt, got / (time.perf_counter() - t0) / 1e6


async def run(seconds: float) -> dict:
    out = {}
    R = Endpoint(NodeKey.generate(), Capabilities.desktop(relay=True), ["tcp://127.0.0.1:0"])
    O = Endpoint(NodeKey.generate(), Capabilities.desktop(), ["tcp://127.0.0.1:0"])
    Q = Endpoint(NodeKey.generate(), Capabilities.desktop(), [])
    for ep in (R, O, Q):
        await ep.start()
    O.dispatcher.register(m.MsgType.PEX_REQUEST, _pex)
    O.dispatcher.register(m.MsgType.GET_CHUNK, _chunk)
    rs = await RelayService(R, serve=True, policy=RelayPolicy(content="all", default=BIG)).start()
    os_ = await RelayService(O, relays=[R.listen_addrs[0]], register=True).start()
    qs = await RelayService(Q, register=False).start()
    try:
        [addr] = await os_.client.wait_registered(1, timeout=10)
        direct = await Q.pool.session(O.listen_addrs[0])
        out["direct"] = await _measure(direct, seconds)
        await direct.close()
        relayed = await qs.connect(addr)
        assert relayed.transport == "relay"
        out["relay"] = await _measure(relayed, seconds)
    finally:
        for svc in (qs, os_, rs):
            await svc.close()
        for ep in (Q, O, R):
            await ep.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    runs = [asyncio.run(run(args.seconds)) for _ in range(args.repeat)]
    print(f"{'path':<8} {'rtt/s best':>11} {'rtt/s med':>10} {'bulk MB/s best':>15} {'bulk MB/s med':>14}")
    for mode in ("direct", "relay"):
        rtts = [r[mode][0] for r in runs]
        bulks = [r[mode][1] for r in runs]
        print(f"{mode:<8} {max(rtts):>11.0f} {statistics.median(rtts):>10.0f} {max(bulks):>15.1f} {statistics.median(bulks):>14.1f}")
    for mode in ("direct", "relay"):
        print(json.dumps({"bench": "relay", "path": mode, "rtt_per_s": [round(r[mode][0]) for r in runs],
                          "bulk_mb_s": [round(r[mode][1], 1) for r in runs]}))  # fmt: skip
    med = {k: statistics.median(r[k][1] for r in runs) for k in ("direct", "relay")}
    medr = {k: statistics.median(r[k][0] for r in runs) for k in ("direct", "relay")}
    print(json.dumps({"bench": "relay", "relay_vs_direct_rtt": round(medr["relay"] / medr["direct"], 3),
                      "relay_vs_direct_bulk": round(med["relay"] / med["direct"], 3)}))  # fmt: skip


if __name__ == "__main__":
    main()
