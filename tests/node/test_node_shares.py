"""Shares across real nodes on loopback (issue 6): convergence, publisher offline, hostile data."""

from __future__ import annotations

import asyncio
import dataclasses

from nodetest_util import Cluster, async_test

from scp2p.catalog import encode_manifest, manifest_id
from scp2p.errors import RemoteError
from scp2p.identity import share_head_key
from scp2p.node import events as ev
from scp2p.wire import codec
from scp2p.wire.messages import GetManifest, ManifestData, MsgType, Store


def _folder(tmp_path, name="share"):
    d = tmp_path / name
    (d / "music").mkdir(parents=True)
    (d / "music" / "song.mp3").write_bytes(b"\x01" * 1000)
    return d


@async_test(120)
async def test_five_nodes_converge_on_the_last_seq(tmp_path):
    folder = _folder(tmp_path)
    async with Cluster(tmp_path) as c:
        pub = await c.add("pub")
        subs = [await c.add(f"sub{i}") for i in range(3)]
        first = await pub.publish(folder, title="Tunes")
        link = await pub.invite(first.share_id)
        for s in subs:
            r = await s.subscribe(link)
            assert r.updated and r.seq == 1
        streams = [s.events() for s in subs]
        for i in range(2, 11):
            (folder / f"f{i}.txt").write_text(str(i))
            res = await pub.publish(folder)
            assert res.seq == i
        for s, stream in zip(subs, streams):
            # the publisher pushes each head to connected peers: subscribers sync without waiting
            updated = []
            async with asyncio.timeout(30):
                async for e in stream:
                    if isinstance(e, ev.ManifestUpdated):
                        updated.append(e.seq)
                        if e.seq == 10:
                            break
            # intermediate versions may be skipped, never delivered out of order
            assert updated == sorted(set(updated))
            results = await s.sync_subscriptions()
            assert [(r.seq, r.error) for r in results] == [(10, None)]
            m = await s.manifest(first.share_id)
            assert m.seq == 10 and len(m.items) == 10 and m.title == "Tunes"


@async_test(120)
async def test_subscribers_sync_from_each_other_when_the_publisher_is_offline(tmp_path):
    folder = _folder(tmp_path)
    async with Cluster(tmp_path) as c:
        pub = await c.add("pub")
        s1, s2 = await c.add("s1"), await c.add("s2")
        res = await pub.publish(folder)
        link = await pub.invite(res.share_id)
        assert (await s1.subscribe(link)).seq == 1
        await s1.catalog.wait_idle()  # s1 has announced itself as a holder of the manifest
        await pub.close()  # the publisher is gone; the head lives in the DHT, the manifest at s1
        r = await s2.subscribe(link)  # the link names only the (dead) publisher
        assert (r.updated, r.seq, r.error) == (True, 1, None), r
        assert (await s2.manifest(res.share_id)).seq == 1


@async_test(120)
async def test_forged_rolled_back_and_tampered_data_is_rejected(tmp_path):
    folder = _folder(tmp_path)
    async with Cluster(tmp_path) as c:
        pub = await c.add("pub")
        # the victim syncs only when told (no background sync, pushes ignored): every path is exercised
        evil, victim = await c.add("evil"), await c.add("victim", auto_sync=False)
        r1 = await pub.publish(folder)
        (folder / "x.txt").write_text("x")
        r2 = await pub.publish(folder)
        link = await pub.invite(r2.share_id)
        assert (await victim.subscribe(link)).seq == 2
        key = share_head_key(r2.share_id)
        evil_pool = evil.endpoint.pool

        # a forged head (bad signature, higher seq) and a rolled-back one, stored at the victim
        forged = dataclasses.replace(r2.head, latest_seq=99)
        for bad in (forged, r1.head):
            try:
                await evil_pool.request(victim.listen_urls[0], Store(key, codec.encode(bad), 3600), timeout=5)
            except RemoteError:
                pass  # refused outright is fine too
        r = await victim.sync_subscriptions()
        assert [(x.updated, x.seq) for x in r] == [(False, 2)]
        assert (await victim.subscriptions())[0].latest_seq == 2

        # a tampered manifest served for a real head: rejected, the good copy is still fetched elsewhere
        (folder / "y.txt").write_text("y")
        r3 = await pub.publish(folder)
        tampered = encode_manifest(dataclasses.replace(r3.manifest, title="evil"))

        async def serve_tampered(ctx, msg: GetManifest):
            return ManifestData(msg.manifest_id, tampered)

        evil.endpoint.dispatcher.register(MsgType.GET_MANIFEST, serve_tampered, replace=True)
        await evil.catalog.announce_manifest(r3.manifest_id)  # evil claims to hold it
        r = await victim.sync_subscriptions()
        assert [(x.updated, x.seq) for x in r] == [(True, 3)], r
        m = await victim.manifest(r3.share_id)
        assert m.title is None and manifest_id(m) == r3.manifest_id

        # a newer head whose manifest only the evil node (tampered) can serve: sync fails, state kept
        (folder / "z.txt").write_text("z")
        r4 = await pub.publish(folder)
        await evil.catalog.announce_manifest(r4.manifest_id)
        await pub.close()
        r = await victim.sync_subscriptions()
        assert (r[0].updated, r[0].seq) == (False, 3) and r[0].error is not None
        assert (await victim.subscriptions())[0].latest_seq == 3


@async_test(120)
async def test_recommended_shares_are_listed_for_the_subscriber(tmp_path):
    a, b = _folder(tmp_path, "a"), _folder(tmp_path, "b")
    async with Cluster(tmp_path) as c:
        pub, sub = await c.add("pub"), await c.add("sub")
        other = await pub.publish(b)
        main = await pub.publish(a, recommended=[other.share_id])
        again = await pub.publish(a)  # recommendations are kept on re-publishing
        assert again.manifest.recommended_shares == (other.share_id,)
        await sub.subscribe(await pub.invite(main.share_id))
        assert await sub.recommended() == [{"share_id": other.share_id.hex(),
                                            "recommended_by": [main.share_id.hex()]}]  # fmt: skip
        await sub.subscribe(await pub.invite(other.share_id))
        assert await sub.recommended() == []
