"""Child process for the SIGKILL resume test: downloads (rate-capped) and prints each persisted count.

argv: provider_url db target content_id_hex size source_path rate_bytes_per_s
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from transfer_util import client, make_file  # noqa: E402,F401

from scp2p.content.hashing import describe_file  # noqa: E402
from scp2p.store import Store  # noqa: E402
from scp2p.transfer import SchedulerConfig  # noqa: E402
from scp2p.transfer.downloader import Downloader, DownloadSpec  # noqa: E402


async def main() -> None:
    url, db, target, cid_hex, size, source, rate = sys.argv[1:8]
    d = describe_file(source)
    assert d.content_id.hex() == cid_hex
    spec = DownloadSpec(d.content_id, int(size), d.chunks, target)
    store = Store.open(db)

    def persisted(n: int) -> None:
        print("persisted", n, flush=True)

    async with client() as c:
        dl = Downloader(c.pool, spec, store=store, providers=[url], on_persist=persisted,
                        config=SchedulerConfig(rate_limit=float(rate), rate_burst=4 * 262144),
                        persist_chunks=16, persist_interval=0.2)  # fmt: skip
        await dl.run()
    print("done", flush=True)


asyncio.run(main())
