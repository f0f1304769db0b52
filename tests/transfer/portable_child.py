"""Child process for the import-time detection test: removes what Windows' ``os`` lacks, then
imports scp2p and downloads a file over loopback through whatever it picked.

argv: source_path target_path. Prints ``kind <KIND> direct <O_DIRECT> ok``.
"""

from __future__ import annotations

import os
import sys

for _name in ("preadv", "pwritev", "pread", "pwrite", "posix_fallocate", "O_DIRECT", "fdatasync"):
    if hasattr(os, _name):
        delattr(os, _name)

sys.path.insert(0, os.path.dirname(__file__))

import asyncio  # noqa: E402

from transfer_util import client, make_file, provider, same_file  # noqa: E402

from scp2p.transfer.downloader import Downloader, DownloadSpec  # noqa: E402
from scp2p.transport import pio  # noqa: E402


async def main(source: str, target: str) -> None:
    src = make_file(source, 3 * 1024 * 1024 + 777)
    ep, srv = await provider(source, src)
    try:
        async with client() as c:
            spec = DownloadSpec(src.content_id, src.size, src.chunk_hashes, target)
            dl = Downloader(c.pool, spec, providers=[ep.listen_addrs[0]])
            out = await asyncio.wait_for(dl.run(), 60)
    finally:
        await ep.close()
        srv.close()
    assert same_file(out, source)
    assert dl.part.direct_writes == 0


print("kind", pio.KIND, "direct", pio.O_DIRECT)
asyncio.run(main(sys.argv[1], sys.argv[2]))
print("ok", flush=True)
