"""A publisher behind NAT (no listener) reached through a relay with no explicit relay calls:
sync and download go through the pool's relay fallback."""

from __future__ import annotations

import os

from nodetest_util import FAST_DHT, async_test, node_config, seed_url

from scp2p.node.node import Node


@async_test(120)
async def test_natted_publisher_synced_and_downloaded_through_a_relay(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    data = os.urandom(700_000)
    (share / "behind-nat.bin").write_bytes(data)
    relay_cfg = node_config(tmp_path, "relay", relay=True, relay_content="all")
    async with Node(relay_cfg, dht_config=FAST_DHT) as relay:
        seed = seed_url(relay)
        pub_cfg = node_config(tmp_path, "pub", bootstrap=[seed], relays=(relay.listen_urls[0],)).replace(listen=())
        async with Node(pub_cfg, dht_config=FAST_DHT) as pub:
            await pub.relay.client.wait_registered(1, timeout=10)
            assert pub.reachable_addrs(), "the publisher advertises its relay slot"
            res = await pub.publish(share)
            link = await pub.invite(res.share_id)  # no listener: the link carries no dialable peer
            async with Node(node_config(tmp_path, "sub", bootstrap=[seed]), dht_config=FAST_DHT) as sub:
                r = await sub.subscribe(link)
                assert (r.updated, r.seq, r.error) == (True, 1, None)
                cid = res.manifest.items[0].content_id
                path = await (await sub.download(cid, tmp_path / "copy.bin"))
                assert open(path, "rb").read() == data
                assert relay.relay.server.stats()["forwarded_bytes"] > len(data)
