"""Downloads through the node (issue 8 wiring): verified, served onwards, blocklists, events."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from nodetest_util import Cluster, async_test

from scp2p.errors import NodeError
from scp2p.node import events as ev


@async_test(120)
async def test_download_verified_then_served_onwards_after_restart(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    data = os.urandom(3 * 262_144 + 17)
    (share / "clip.bin").write_bytes(data)
    async with Cluster(tmp_path) as c:
        pub, sub, third = await c.add("pub"), await c.add("sub"), await c.add("third")
        res = await pub.publish(share)
        link = await pub.invite(res.share_id)
        await sub.subscribe(link)
        cid = res.manifest.items[0].content_id
        stream = sub.events()
        (tmp_path / "got").mkdir()
        path = await (await sub.download(cid, tmp_path / "got"))  # a folder: the item name is used
        assert open(path, "rb").read() == data and Path(path).parts[-2:] == ("got", "clip.bin")
        kinds = []
        while not stream._queue.empty():
            e = await anext(stream)
            if isinstance(e, (ev.DownloadProgress, ev.DownloadCompleted, ev.DownloadFailed)):
                kinds.append(type(e))
        assert kinds[-1] is ev.DownloadCompleted and ev.DownloadFailed not in kinds

        # the subscriber serves it after a restart, even with the publisher gone
        cfg = sub.config
        await sub.close()
        await pub.close()
        from nodetest_util import FAST_DHT

        from scp2p.node.node import Node

        async with Node(cfg, dht_config=FAST_DHT) as sub2:
            await third.subscribe(link)  # the manifest comes from sub2 (it holds a copy)
            got = await (await third.download(cid, tmp_path / "third.bin"))
            assert open(got, "rb").read() == data


@async_test(60)
async def test_unknown_and_blocked_content_is_refused(tmp_path):
    async with Cluster(tmp_path) as c:
        node = await c.add("x")
        with pytest.raises(NodeError, match="no catalog"):
            await node.download(b"\x01" * 32)


@async_test(60)
async def test_publishing_tells_connected_peers_have_content(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "x.bin").write_bytes(b"x" * 1000)
    async with Cluster(tmp_path) as c:
        pub, peer = await c.add("pub"), await c.add("peer")
        await peer.connect(pub.listen_urls[0])
        res = await pub.publish(share)
        await pub.catalog.wait_idle()
        cid = res.manifest.items[0].content_id
        async with asyncio.timeout(10):
            while not peer.chunks.book.get(cid):  # the announcement is fire-and-forget: poll, bounded
                await asyncio.sleep(0.01)
        assert any(pk == pub.key.public_key for pk, _addr in peer.chunks.book.get(cid))
