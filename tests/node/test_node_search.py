"""Search through the node: synced catalogs are searchable, blocklists honoured, the index persists."""

from __future__ import annotations

from nodetest_util import Cluster, async_test

from scp2p.catalog.blocklist import blocklist_items
from scp2p.catalog.publish import publish_folder
from scp2p.identity import ShareKey
from scp2p.node import events as ev
from scp2p.node.node import Node


def _folder(root, files):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


@async_test(120)
async def test_synced_catalog_is_searchable_and_blocklists_apply(tmp_path):
    folder = _folder(tmp_path / "share", {"Linux/ubuntu-24.04-desktop-amd64.iso": b"u" * 100,
                                          "Linux/debian-12-netinst.iso": b"d" * 100, "notes.txt": b"n"})  # fmt: skip
    async with Cluster(tmp_path) as c:
        pub, sub = await c.add("pub"), await c.add("sub")
        res = await pub.publish(folder, title="Distros")
        stream = sub.events()
        await sub.subscribe(await pub.invite(res.share_id))
        seen = [e async for e in _drain(stream)]
        kinds = [type(e) for e in seen if isinstance(e, (ev.ManifestUpdated, ev.SearchIndexUpdated))]
        assert kinds[:2] == [ev.ManifestUpdated, ev.SearchIndexUpdated]
        page = await sub.search("ubuntu iso")
        assert [h.name for h in page.hits] == ["ubuntu-24.04-desktop-amd64.iso"]
        assert page.hits[0].share_id == res.share_id and "[ubuntu]" in page.hits[0].snippet
        assert {h.name for h in (await sub.search("ext:iso")).hits} == {"ubuntu-24.04-desktop-amd64.iso",
                                                                         "debian-12-netinst.iso"}  # fmt: skip
        assert (await sub.search("ubuntu", trust_levels=("trusted",))).total == 0  # subscribed as normal

        # a blocklist share, honoured by the subscriber, hides one file
        debian = next(i for i in (await sub.manifest(res.share_id)).items if i.name.startswith("debian"))
        bl_key = ShareKey.generate()
        bl_res = await pub.store.run(lambda s: _publish_blocklist(s, bl_key, tmp_path / "bl", debian.content_id))
        await pub.catalog.announce(bl_res)
        await sub.subscribe(await pub.invite(bl_key.share_id), blocklist=True)
        assert {h.name for h in (await sub.search("ext:iso")).hits} == {"ubuntu-24.04-desktop-amd64.iso"}


def _publish_blocklist(store, key, folder, content_id):
    folder.mkdir()
    res = publish_folder(store, key, folder, title="blocklist")
    from dataclasses import replace

    from scp2p.catalog import build_manifest

    # a blocklist manifest lists what it blocks as marked items (docs/shares.md)
    m = build_manifest(key, res.seq + 1, blocklist_items(content_ids=[content_id]), title="blocklist")
    from scp2p.catalog import encode_manifest, manifest_id, sign_share_head
    from scp2p.identity import share_head_key
    from scp2p.store import ManifestRow, OwnedDhtValue, PublishedShare

    mid, wire = manifest_id(m), encode_manifest(m)
    head = sign_share_head(key, m.seq, mid, m.created_at)
    with store.transaction():
        store.put_manifest(ManifestRow(mid, key.share_id, m.seq, m.created_at, m.expires_at, wire, m.title,
                                       len(m.items)), pinned=True)  # fmt: skip
        store.put_published_share(PublishedShare(key.share_id, str(folder), "blocklist", None, m.seq, mid))
        from scp2p.wire import codec

        store.put_dht_value(OwnedDhtValue(share_head_key(key.share_id), codec.encode(head), 3600, 10**9))
    return replace(res, manifest=m, manifest_id=mid, wire=wire, head=head)


async def _drain(stream):
    while not stream._queue.empty():
        yield await anext(stream)


@async_test(120)
async def test_index_persists_across_restarts_without_reindexing(tmp_path):
    folder = _folder(tmp_path / "share", {f"dir/file-{i}.txt": str(i).encode() for i in range(50)})
    async with Cluster(tmp_path) as c:
        pub = await c.add("pub")
        res = await pub.publish(folder)
        cfg = pub.config
        await pub.close()
        again = Node(cfg)
        stream = again.events()  # subscribed before start: would see any re-indexing
        async with again:
            assert (await again.search("file")).total == 50
            indexed = [e for e in [x async for x in _drain(stream)] if isinstance(e, ev.SearchIndexUpdated)]
            assert indexed == []  # loaded from the store, not rebuilt
            assert again._indexed_seq == {res.share_id: 1}
