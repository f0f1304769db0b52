"""The ``scp2p`` command.

Global options: ``--data-dir DIR`` (default: the platform data directory, or
``$SCP2P_DATA_DIR``), ``--json`` (machine-readable output on every command that
prints data), ``--passphrase-env VAR`` (read the key passphrase from ``$VAR``;
``$SCP2P_PASSPHRASE`` is used when set), ``-v`` (log to stderr).
Exit status: 0 on success, 1 on an error (printed to stderr, or as ``{"error": ...}``
with ``--json``), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from .. import __version__
from .._accel import backend
from ..catalog.invite import Invite, InvitePeer, format_invite, parse_invite
from ..catalog.publish import publish_folder
from ..errors import InvalidInvite, Scp2pError
from ..identity import ShareKey, node_id as node_id_of, share_id as share_id_of
from ..errors import NodeNotRunning
from ..node import control
from ..node.config import NodeConfig
from ..node.views import (
    hits_view,
    honoured_blocklist,
    peers_view,
    publish_view,
    recommended_view,
    shares_view,
    subscribe_view,
    subscription_view,
)
from ..store import PeerRecord, Store, Subscription, TrustLevel
from ..store.records import BlocklistRole
from .output import Output

log = logging.getLogger("scp2p.cli")

Handler = Callable[[argparse.Namespace, NodeConfig, Output], int]
COMMANDS: dict[str, Handler] = {}


class UsageError(Scp2pError):
    """A command was given arguments it cannot use."""


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


def _open_store(cfg: NodeConfig) -> Store:
    return Store.open(cfg.db_path, passphrase=cfg.passphrase)


def _node_call(cfg: NodeConfig, cmd: str, args: Optional[dict] = None, *, timeout: Optional[float] = None,
               on_progress=None):  # fmt: skip
    """Run ``cmd`` on the running node for this data dir; raises NodeNotRunning if there is none."""
    return asyncio.run(control.call(cfg.data_dir, cmd, args, timeout=timeout, on_progress=on_progress))


def _running(cfg: NodeConfig) -> bool:
    return (cfg.data_dir / control.SOCKET_NAME).exists() or (cfg.data_dir / control.TOKEN_FILE).exists()


def _node_or_store(cfg: NodeConfig, cmd: str, local, args: Optional[dict] = None):
    """``cmd`` on the running node for this data dir, else ``local(store)`` on the store itself
    (also when a node died and left its control socket behind)."""
    if _running(cfg):
        try:
            return _node_call(cfg, cmd, args)
        except NodeNotRunning:
            pass
    with _open_store(cfg) as store:
        return local(store)


def _hex_id(text: str, n: int = 32, what: str = "share id") -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise UsageError(f"{what} must be hex, got {text!r}") from None
    if len(raw) != n:
        raise UsageError(f"{what} must be {n} bytes ({2 * n} hex digits)")
    return raw


# ----------------------------------------------------------------------------- commands
@command("init")
def cmd_init(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Create the data directory, the store and the node identity (never replaces an existing one)."""
    with _open_store(cfg) as store:
        existed = store.node_key() is not None
        key = store.ensure_node_key()
        out.data(
            {"node_id": key.node_id.hex(), "node_pubkey": key.public_key.hex(), "data_dir": str(cfg.data_dir),
             "created": not existed, "encrypted": store.encrypted},  # fmt: skip
            f"{'created' if not existed else 'existing'} node {key.node_id.hex()} in {cfg.data_dir}"
            + (" (keys encrypted)" if store.encrypted else ""),
        )
    return 0


def _share_for_folder(store: Store, folder: Path, share_hex: Optional[str]) -> ShareKey:
    if share_hex:
        owned = store.share_key(_hex_id(share_hex))
        if owned is None:
            raise UsageError(f"no share key for {share_hex} in this data directory")
        return owned.key
    for pub in store.published_shares():
        if pub.root_path and Path(pub.root_path) == folder:
            owned = store.share_key(pub.share_id)
            if owned is not None:
                return owned.key
    return ShareKey.generate()


@command("publish")
def cmd_publish(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Publish FOLDER as a share (a re-run updates it); prints the share id."""
    folder = Path(args.folder).expanduser().resolve()
    if _running(cfg):
        res = _node_call(cfg, "publish", {"folder": str(folder), "title": args.title, "description": args.description,
                                          "tags": args.tag, "recommend": args.recommend or None})  # fmt: skip
        out.data(res, res["share_id"])
        return 0
    with _open_store(cfg) as store:
        store.ensure_node_key()
        key = _share_for_folder(store, folder, args.share)
        bar = out.progress("hashing", None, " files")
        try:
            rec = [_hex_id(r) for r in args.recommend] if args.recommend else None
            res = publish_folder(store, key, folder, title=args.title, description=args.description, tags=args.tag,
                                 recommended=rec, progress=lambda done, total, _b: bar.update(done, total))  # fmt: skip
        finally:
            bar.close()
    out.data(publish_view(res), res.share_id.hex())
    return 0


@command("shares")
def cmd_shares(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """List the shares this node publishes."""
    rows = _node_or_store(cfg, "shares", shares_view)
    out.table(rows, [("share_id", "SHARE ID"), ("seq", "SEQ"), ("items", "ITEMS"), ("title", "TITLE"),
                     ("folder", "FOLDER")], "no shares published yet")  # fmt: skip
    return 0


@command("invite")
def cmd_invite(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Print the invite link of one of our shares (peers: --peer, else our advertised listeners)."""
    sid = _hex_id(args.share_id)
    if _running(cfg) and not args.peer:
        res = _node_call(cfg, "invite", {"share_id": sid.hex()})
        out.data(res, res["link"])
        return 0
    with _open_store(cfg) as store:
        owned = store.share_key(sid)
        if owned is None:
            raise UsageError(f"share {args.share_id} is not published from this data directory")
        node = store.ensure_node_key()
    urls = args.peer or list(cfg.advertised())
    link = format_invite(Invite(sid, owned.public_key, tuple(InvitePeer(u, node.public_key) for u in urls)))
    out.data({"share_id": sid.hex(), "link": link}, link)
    return 0


@command("subscribe")
def cmd_subscribe(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Subscribe to a share by invite link or by id (+ --pubkey)."""
    text = args.target.strip()
    if _running(cfg):
        res = _node_call(cfg, "subscribe", {"target": text, "pubkey": args.pubkey, "trust": args.trust,
                                            "weight": args.weight, "blocklist": args.blocklist})  # fmt: skip
        out.data(res, res["share_id"])
        return 0
    if text.lower().startswith("scp2p://"):
        inv = parse_invite(text)
    else:
        sid = _hex_id(text)
        inv = Invite(sid)
    pk = inv.share_pubkey
    if args.pubkey:
        given = _hex_id(args.pubkey, 32, "public key")
        if pk is not None and given != pk:
            raise UsageError("--pubkey differs from the key in the invite link")
        if share_id_of(given) != inv.share_id:
            raise InvalidInvite("the public key does not match the share id (SHA-256)")
        pk = given
    sub = Subscription(inv.share_id, pk, TrustLevel(args.trust), args.weight,
                       blocklist=BlocklistRole.HONOURED if args.blocklist else BlocklistRole.NONE)  # fmt: skip
    with _open_store(cfg) as store:
        with store.transaction():
            store.put_subscription(sub)
            store.upsert_peers(
                PeerRecord(p.host, p.port, p.transport, node_id=node_id_of(p.node_pubkey) if p.node_pubkey else None,
                           pubkey_hint=p.node_pubkey)
                for p in inv.peers
            )
        stored = store.subscription(inv.share_id)
    view = subscribe_view(stored, [p.url for p in inv.peers], None, "no running node: syncs when the node starts")
    out.data(view, inv.share_id.hex())
    return 0


@command("subscriptions")
def cmd_subscriptions(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """List subscriptions."""
    rows = _node_or_store(cfg, "subscriptions", lambda store: [subscription_view(s) for s in store.subscriptions()])
    out.table(rows, [("share_id", "SHARE ID"), ("trust", "TRUST"), ("weight", "WEIGHT"), ("seq", "SEQ"),
                     ("blocklist", "BLOCKLIST")], "no subscriptions")  # fmt: skip
    return 0


@command("recommended")
def cmd_recommended(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Shares recommended by the catalogs you follow, not yet subscribed."""
    rows = _node_or_store(cfg, "recommended", recommended_view)
    view = [dict(r, recommended_by=", ".join(x[:16] for x in r["recommended_by"])) for r in rows]
    if out.json:
        out.data(rows)
    else:
        out.table(view, [("share_id", "SHARE ID"), ("recommended_by", "RECOMMENDED BY")], "no recommendations")
    return 0


@command("unsubscribe")
def cmd_unsubscribe(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Forget a subscription."""
    sid = _hex_id(args.share_id)
    removed = _node_or_store(cfg, "unsubscribe", lambda store: {"removed": store.delete_subscription(sid)},
                             {"share_id": sid.hex()})["removed"]  # fmt: skip
    if not removed:
        raise UsageError(f"not subscribed to {sid.hex()}")
    out.data({"share_id": sid.hex(), "removed": True}, f"unsubscribed from {sid.hex()}")
    return 0


@command("start")
def cmd_start(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Run the node in the foreground until Ctrl-C / SIGTERM, with a one-line live status."""
    from ..node.node import Node

    changes: dict = {"control": True}
    if args.outbound_only:
        changes["listen"] = ()
    elif args.listen:
        changes["listen"] = tuple(args.listen)
    if args.bootstrap:
        changes["bootstrap"] = tuple(args.bootstrap)
    if args.advertise:
        changes["advertise"] = tuple(args.advertise)
    if args.relay:
        changes["relay"] = True
    if args.sync_interval is not None:
        changes["sync_interval"] = args.sync_interval
    cfg = cfg.replace(**changes)
    live = sys.stderr.isatty() and not out.json

    async def run() -> None:
        async with Node(cfg) as node:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, node.stop_requested.set)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                    pass
            st = await node.status()
            out.data({"event": "started", "node_id": st["node_id"], "listen": st["listen"],
                      "data_dir": str(cfg.data_dir)},  # fmt: skip
                     f"node {st['node_id']} listening on {', '.join(st['listen'])} (data {cfg.data_dir}); "
                     "Ctrl-C to stop")  # fmt: skip
            while not node.stop_requested.is_set():
                if live:
                    st = await node.status()
                    line = (f"\rpeers {st['peers']}  dht {st['dht_contacts']}  shares {st['shares']}  "
                            f"subscriptions {st['subscriptions']}  served {st['counters']['manifests_served']}  "
                            f"up {int(st['uptime_s'])}s")  # fmt: skip
                    sys.stderr.write(line.ljust(100)[:120])
                    sys.stderr.flush()
                try:
                    async with asyncio.timeout(1.0):
                        await node.stop_requested.wait()
                except TimeoutError:
                    pass
            if live:
                sys.stderr.write("\n")
            out.data({"event": "stopped"}, "stopping...")

    asyncio.run(run())
    return 0


@command("status")
def cmd_status(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Status of the running node for this data dir (exit 1 if none is running)."""
    st = _node_call(cfg, "status", timeout=30)
    c = st["counters"]
    out.data(st, "\n".join([
        f"node        {st['node_id']}",
        f"listening   {', '.join(st['listen'])}",
        f"peers       {st['peers']} connected, {st['known_peers']} known, {st['dht_contacts']} in the DHT table",
        f"shares      {st['shares']} published",
        f"subscribed  {st['subscriptions']}",
        f"served      {c['manifests_served']} manifests, {c['chunks_served']} chunks, "
        f"{c['requests_handled']} requests; {_size(c['bytes_out'])} out, {_size(c['bytes_in'])} in",
        f"downloads   {c['downloads_completed']} completed, {c['downloads_active']} active",
        *[f"  {t['content_id'][:16]}  {_size(t['done'])}/{_size(t['total'] or 0)}  {t['target']}"
          for t in st["transfers"]],
        f"uptime      {st['uptime_s']}s",
    ]))  # fmt: skip
    return 0


@command("stop")
def cmd_stop(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Ask the running node for this data dir to shut down cleanly (exit 1 if none is running)."""
    _node_call(cfg, "stop", timeout=30)
    for _ in range(300):  # wait (at most 30 s) until it has released the data dir
        if not _running(cfg):
            break
        time.sleep(0.1)
    out.data({"stopped": not _running(cfg)}, "stopped" if not _running(cfg) else "stop requested")
    return 0


@command("sync")
def cmd_sync(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Sync every subscription now (through the running node, or a temporary one) and wait."""
    if _running(cfg):
        rows = _node_call(cfg, "sync")
    else:
        rows = asyncio.run(_with_temporary_node(cfg, lambda n: n.control_sync()))
    out.table(rows, [("share_id", "SHARE ID"), ("updated", "UPDATED"), ("seq", "SEQ"), ("error", "ERROR")],
              "no subscriptions")  # fmt: skip
    return 1 if any(r["error"] for r in rows) else 0


async def _with_temporary_node(cfg: NodeConfig, work):
    """Start a node on a loopback port just for ``work`` (no node running for this data dir)."""
    from ..node.node import Node

    async with Node(cfg.replace(listen=("tcp://127.0.0.1:0",), control=False, auto_sync=False)) as node:
        return await work(node)


@command("peers")
def cmd_peers(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Known peers (and, with a running node, which are connected)."""
    rows = _node_or_store(cfg, "peers", peers_view)
    out.table(rows, [("address", "ADDRESS"), ("node_id", "NODE ID"), ("connected", "CONNECTED"),
                     ("failures", "FAILURES")], "no known peers")  # fmt: skip
    return 0


@command("search")
def cmd_search(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Search the local index of subscribed (and own) catalogs."""
    q = {"query": args.query, "limit": args.limit, "offset": args.offset}
    if _running(cfg):
        res = _node_call(cfg, "search", q)
    else:
        from ..node.indexing import index_image, load_index, save_image

        with _open_store(cfg) as store:
            index, seqs, changed = load_index(store)
            if changed:
                save_image(store, index_image(index, seqs))
            bl = honoured_blocklist(store)
            res = hits_view(index.search(args.query, limit=args.limit, offset=args.offset, blocklist=bl))
    if out.json:
        out.data(res["hits"])
        return 0
    est = "~" if res["total_is_estimate"] else ""
    lines = [f"{est}{res['total']} results"]
    for h in res["hits"]:
        lines.append(f"{h['score']:8.2f}  {h['content_id'][:16]}  {_size(h['size']):>9}  {h['snippet']}")
    out.data(res, "\n".join(lines))
    return 0


@command("download")
def cmd_download(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Download a content id from the catalogs we hold: verified, resumable, with a progress bar."""
    cid = _hex_id(args.content_id, 32, "content id")
    target = str(Path(args.out).expanduser().absolute()) if args.out else None
    bar = out.progress("downloading", None, "")

    def show(p: dict) -> None:
        rate = p.get("rate") or 0.0
        bar.update(p["done"], p["total"], f"{_size(int(rate))}/s")

    try:
        if _running(cfg):
            res = _node_call(cfg, "download", {"content_id": cid.hex(), "out": target}, on_progress=show)
        else:
            async def work(node):
                handle = await node.download(cid, target)
                return {"content_id": cid.hex(), "path": await handle.follow(show)}

            res = asyncio.run(_with_temporary_node(cfg, work))
    finally:
        bar.close()
    out.data(res, res["path"])
    return 0


@command("demo")
def cmd_demo(args: argparse.Namespace, cfg: NodeConfig, out: Output) -> int:
    """Three real nodes on loopback: publish, invite, subscribe, sync, search, download, verify."""
    from .demo import run_demo

    asyncio.run(run_demo(out, keep=args.keep))
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scp2p", description="SCP2P: signed catalogs, local search, verified downloads")
    p.add_argument("--version", action="store_true", help="print the version and the codec backend")
    p.add_argument("--data-dir", type=Path, help="data directory (default: platform data dir or $SCP2P_DATA_DIR)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--passphrase-env", metavar="VAR", help="read the key passphrase from environment variable VAR")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv for debug)")
    # the same options are accepted after the command name too (``scp2p search x --json``)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add = sub.add_parser

    def add_parser(name: str, **kw) -> argparse.ArgumentParser:
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    s = sub.add_parser("init", help="create identity and store (idempotent)")
    s.add_argument("--passphrase-env", dest="init_passphrase_env", metavar="VAR",
                   help="encrypt the private keys with the passphrase in $VAR")  # fmt: skip

    s = sub.add_parser("publish", help="publish a folder as a share; prints the share id")
    s.add_argument("folder")
    s.add_argument("--title")
    s.add_argument("--description")
    s.add_argument("--tag", action="append", default=[], help="a tag for every item (repeatable)")
    s.add_argument("--share", help="publish under this existing share id")
    s.add_argument("--recommend", action="append", default=[], metavar="SHARE_ID",
                   help="recommend another share in this catalog (repeatable; kept on later publishes)")  # fmt: skip

    sub.add_parser("shares", help="list published shares")

    s = sub.add_parser("invite", help="print a share's scp2p:// invite link")
    s.add_argument("share_id")
    s.add_argument("--peer", action="append", default=[], help="peer URL to put in the link (repeatable)")

    s = sub.add_parser("subscribe", help="subscribe by invite link or share id")
    s.add_argument("target", metavar="LINK_OR_ID")
    s.add_argument("--pubkey", help="the share public key (hex), to verify heads")
    s.add_argument("--trust", default="normal", choices=[t.value for t in TrustLevel])
    s.add_argument("--weight", type=float, default=1.0, help="ranking weight of this share (default 1)")
    s.add_argument("--blocklist", action="store_true", help="honour this share as a blocklist")

    s = sub.add_parser("start", help="run the node in the foreground")
    s.add_argument("--listen", action="append", default=[], metavar="URL",
                   help="listener URL, e.g. tcp://0.0.0.0:7001 (repeatable; default tcp://0.0.0.0:7001)")  # fmt: skip
    s.add_argument("--bootstrap", action="append", default=[], metavar="URL",
                   help="seed peer URL, optionally with #<node_pubkey_hex> (repeatable)")  # fmt: skip
    s.add_argument("--advertise", action="append", default=[], metavar="URL",
                   help="address others should dial (for invite links; repeatable)")  # fmt: skip
    s.add_argument("--outbound-only", action="store_true", help="no listener (behind NAT): register with a relay")
    s.add_argument("--relay", action="store_true", help="offer relaying to NAT-ed peers")
    s.add_argument("--sync-interval", type=float, default=None, metavar="SECONDS")
    sub.add_parser("status", help="status of the running node")
    sub.add_parser("stop", help="stop the running node")
    sub.add_parser("sync", help="sync all subscriptions now")
    sub.add_parser("peers", help="known and connected peers")
    s = sub.add_parser("demo", help="run three nodes on loopback: publish, subscribe, search, download")
    s.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    s = sub.add_parser("download", help="download a file by content id (verified, resumable)")
    s.add_argument("content_id")
    s.add_argument("--out", help="target file or folder (default: <data dir>/downloads/<name>)")
    s = sub.add_parser("search", help="search subscribed catalogs")
    s.add_argument("query")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--offset", type=int, default=0)
    sub.add_parser("subscriptions", help="list subscriptions")
    sub.add_parser("recommended", help="shares recommended by the catalogs you follow")
    s = sub.add_parser("unsubscribe", help="forget a subscription")
    s.add_argument("share_id")
    return p


def _config(args: argparse.Namespace) -> NodeConfig:
    var = getattr(args, "init_passphrase_env", None) or args.passphrase_env
    passphrase = None
    if var:
        passphrase = os.environ.get(var)
        if passphrase is None:
            raise UsageError(f"environment variable {var} is not set")
    elif os.environ.get("SCP2P_PASSPHRASE"):
        passphrase = os.environ["SCP2P_PASSPHRASE"]
    kw = {"passphrase": passphrase}
    if args.data_dir is not None:
        kw["data_dir"] = args.data_dir
    return NodeConfig(**kw)


def _tolerant_output() -> None:
    """Print what the console's encoding cannot show escaped instead of failing the command:
    a Windows console or pipe writes in the ANSI code page (cp1252...), where a share or file
    name in another script raised UnicodeEncodeError (so did undecodable POSIX names)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def main(argv: Optional[list[str]] = None) -> int:
    _tolerant_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    out = Output(args.json)
    if args.version:
        out.data({"version": __version__, "backend": backend(), "python": sys.version.split()[0]},
                 f"scp2p {__version__} ({backend()} backend, Python {sys.version.split()[0]})")  # fmt: skip
        return 0
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args, _config(args), out)
    except Scp2pError as exc:
        out.error(str(exc))
        return 1
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
