"""Search through the node: synced catalogs are searchable, blocklists honoured, the index persists."""

from __future__ import annotations

from nodetest_util import Cluster, async_test

from scp2p.catalog import build_manifest
from scp2p.catalog.blocklist import blocklist_items
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
        await pub.store.run(lambda s: s.add_share_key(bl_key))
        await pub.publish_manifest(build_manifest(bl_key, 1, blocklist_items(content_ids=[debian.content_id])))
        await sub.subscribe(await pub.invite(bl_key.share_id), blocklist=True)
        assert {h.name for h in (await sub.search("ext:iso")).hits} == {"ubuntu-24.04-desktop-amd64.iso"}


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


@async_test(120)
async def test_publish_manifest_blocklist_through_the_api(tmp_path):
    folder = _folder(tmp_path / "share", {"a/evil.exe": b"e" * 10, "a/good.txt": b"g"})
    async with Cluster(tmp_path) as c:
        pub, sub = await c.add("pub"), await c.add("sub")
        res = await pub.publish(folder)
        evil = next(i for i in res.manifest.items if i.name == "evil.exe")
        key = ShareKey.generate()
        await pub.store.run(lambda s: s.add_share_key(key, "blocklist"))
        bl = await pub.publish_manifest(build_manifest(key, 1, blocklist_items(content_ids=[evil.content_id])))
        await sub.subscribe(await pub.invite(res.share_id))
        assert {h.name for h in (await sub.search("a")).hits} == {"evil.exe", "good.txt"}
        await sub.subscribe(await pub.invite(bl.share_id), blocklist=True)
        assert {h.name for h in (await sub.search("a")).hits} == {"good.txt"}
        import pytest

        from scp2p.errors import NodeError

        with pytest.raises(NodeError, match="blocked"):
            await sub.download(evil.content_id)
        with pytest.raises(NodeError, match="not newer"):
            await pub.publish_manifest(build_manifest(key, 1, []))


@async_test(120)
async def test_resubscribing_changes_trust_in_the_index(tmp_path):
    folder = _folder(tmp_path / "share", {"song.mp3": b"s"})
    async with Cluster(tmp_path) as c:
        pub, sub = await c.add("pub"), await c.add("sub")
        res = await pub.publish(folder)
        link = await pub.invite(res.share_id)
        await sub.subscribe(link, trust="untrusted")
        assert (await sub.search("song")).total == 0  # untrusted shares are not searched by default
        await sub.subscribe(link, trust="trusted", sync=False)
        assert (await sub.search("song")).total == 1
