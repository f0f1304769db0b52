"""Control-channel commands of a running node (``scp2p`` subcommands forward to these)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..store import TrustLevel
from .control import Command
from ..catalog.invite import parse_invite
from .views import hits_view, peers_view, publish_view, shares_view, subscribe_view, subscription_view


def make_commands(node: Any, *, on_stop: Callable[[], None] | None = None) -> dict[str, Command]:
    async def status(args: dict, progress) -> Any:
        return await node.status()

    async def publish(args: dict, progress) -> Any:
        rec = [bytes.fromhex(r) for r in args["recommend"]] if args.get("recommend") else None
        res = await node.publish(Path(args["folder"]), title=args.get("title"), description=args.get("description"),
                                 tags=args.get("tags") or (), recommended=rec)  # fmt: skip
        return publish_view(res)

    async def shares(args: dict, progress) -> Any:
        return await node.store.run(shares_view)

    async def invite(args: dict, progress) -> Any:
        sid = bytes.fromhex(args["share_id"])
        return {"share_id": sid.hex(), "link": await node.invite(sid)}

    async def subscribe(args: dict, progress) -> Any:
        pk = bytes.fromhex(args["pubkey"]) if args.get("pubkey") else None
        res = await node.subscribe(args["target"], pubkey=pk, trust=TrustLevel(args.get("trust", "normal")),
                                   weight=float(args.get("weight", 1.0)), blocklist=bool(args.get("blocklist")))  # fmt: skip
        sub = await node.store.run(lambda s: s.subscription(res.share_id))
        target = args["target"].strip()
        peers = [p.url for p in parse_invite(target).peers] if target.lower().startswith("scp2p://") else []
        return subscribe_view(sub, peers, res.seq, res.error)

    async def subscriptions(args: dict, progress) -> Any:
        return [subscription_view(s) for s in await node.subscriptions()]

    async def unsubscribe(args: dict, progress) -> Any:
        sid = bytes.fromhex(args["share_id"])
        return {"share_id": sid.hex(), "removed": await node.unsubscribe(sid)}

    async def sync(args: dict, progress) -> Any:
        return await node.control_sync()

    async def peers(args: dict, progress) -> Any:
        rows = await node.store.run(peers_view)
        live = {f"{s.transport}://{a}" for s in node.endpoint.pool.sessions for a in [_hp(s)]}
        for r in rows:
            r["connected"] = r["address"] in live
        known = {r["address"] for r in rows}
        for s in node.endpoint.pool.sessions:
            addr = f"{s.transport}://{_hp(s)}"
            if addr not in known:
                rows.append({"address": addr, "node_id": s.remote_node_id.hex(), "last_seen": None, "failures": 0,
                             "score": None, "connected": True})  # fmt: skip
        return rows

    async def search(args: dict, progress) -> Any:
        page = await node.search(args["query"], limit=int(args.get("limit", 20)), offset=int(args.get("offset", 0)))
        return hits_view(page)

    async def download(args: dict, progress) -> Any:
        cid = bytes.fromhex(args["content_id"])
        handle = await node.download(cid, args.get("out"))
        return {"content_id": cid.hex(), "path": await handle.follow(progress)}

    async def recommended(args: dict, progress) -> Any:
        return await node.recommended()

    async def stop(args: dict, progress) -> Any:
        if on_stop is not None:
            on_stop()
        return {"stopping": True}

    return {"status": status, "publish": publish, "shares": shares, "invite": invite, "subscribe": subscribe,
            "subscriptions": subscriptions, "unsubscribe": unsubscribe, "sync": sync, "peers": peers, "search": search, "download": download, "recommended": recommended,
            "stop": stop}  # fmt: skip


def _hp(session: Any) -> str:
    addr = getattr(session, "remote_addr", None)
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)
