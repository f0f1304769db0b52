"""The local control channel: how ``scp2p`` commands talk to a running ``scp2p start``.

POSIX: a Unix socket ``control.sock`` in the data directory, mode 0600 inside the 0700
data directory, so only the owner can connect. Windows (no Unix sockets in asyncio's
default loop): a TCP listener on 127.0.0.1 with a random 32-byte token written to
``control.json`` (owner-only file); a client must send the token first.

Protocol: one JSON object per line. Request ``{"cmd": NAME, "args": {...}}``; reply
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": TEXT}``. Lines are limited to
1 MiB. Progress-reporting commands may send ``{"progress": {...}}`` lines before the reply.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

from ..errors import ControlError, NodeNotRunning, Scp2pError

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
TOKEN_FILE = "control.json"
MAX_LINE = 1 << 20

#: a command handler: args -> JSON-able result; may call ``progress(dict)`` for interim reports
Command = Callable[[dict, Callable[[dict], None]], Awaitable[Any]]

_USE_UNIX = sys.platform != "win32"


class ControlServer:
    def __init__(self, data_dir: Path, commands: dict[str, Command]) -> None:
        self.data_dir = Path(data_dir)
        self.commands = commands
        self._server: Optional[asyncio.AbstractServer] = None
        self._token = secrets.token_hex(32)
        self._conns: set[asyncio.Task] = set()

    @property
    def path(self) -> Path:
        return self.data_dir / (SOCKET_NAME if _USE_UNIX else TOKEN_FILE)

    async def start(self) -> None:
        if _USE_UNIX:
            sock = self.data_dir / SOCKET_NAME
            if sock.exists() or sock.is_symlink():
                if await _alive(self.data_dir):
                    raise ControlError(f"another node is already running for {self.data_dir}")
                sock.unlink()  # stale socket of a node that died
            if len(os.fsencode(sock)) > 100:
                raise ControlError(f"control socket path {sock} is too long for a Unix socket; use a shorter --data-dir")
            old = os.umask(0o077)
            try:
                self._server = await asyncio.start_unix_server(self._serve, path=str(sock), limit=MAX_LINE)
            except OSError as exc:
                raise ControlError(f"cannot create the control socket {sock}: {exc}") from exc
            finally:
                os.umask(old)
            os.chmod(sock, 0o600)
        else:  # Windows (tested on POSIX by forcing _USE_UNIX off)
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_LINE)
            port = self._server.sockets[0].getsockname()[1]
            tf = self.data_dir / TOKEN_FILE
            fd = os.open(tf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"port": port, "token": self._token, "pid": os.getpid()}, fh)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conns.add(task)
        try:
            if not _USE_UNIX:  # Windows: the token first (tested on POSIX by forcing _USE_UNIX off)
                first = json.loads(await reader.readline())
                token = first.get("token") if isinstance(first, dict) else None
                if not isinstance(token, str) or not secrets.compare_digest(token.encode(), self._token.encode()):
                    return
            line = await reader.readline()
            if not line:
                return
            try:
                req = json.loads(line)
                cmd = self.commands.get(req.get("cmd"))
                if cmd is None:
                    raise ControlError(f"unknown command {req.get('cmd')!r}")

                def progress(p: dict) -> None:
                    writer.write(json.dumps({"progress": p}).encode() + b"\n")

                result = await cmd(req.get("args") or {}, progress)
                reply = {"ok": True, "result": result}
            except (Scp2pError, ValueError, KeyError, TypeError) as exc:
                reply = {"ok": False, "error": str(exc) or type(exc).__name__}
            except Exception as exc:  # noqa: BLE001 - report, keep the node up
                log.exception("control command failed")
                reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
            writer.write(json.dumps(reply, default=_json_default).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # ValueError: bad JSON, or a line over MAX_LINE (StreamReader.readline)
        finally:
            self._conns.discard(task)
            writer.close()


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes):
        return o.hex()
    if hasattr(o, "value"):
        return o.value
    return str(o)


async def _open(data_dir: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    data_dir = Path(data_dir)
    try:
        if _USE_UNIX:
            sock = data_dir / SOCKET_NAME
            if not sock.exists():
                raise NodeNotRunning(f"no node is running for {data_dir} (start one with: scp2p start)")
            return await asyncio.open_unix_connection(str(sock), limit=MAX_LINE)
        try:  # Windows: a node that is starting may not have written all of it yet
            info = json.loads((data_dir / TOKEN_FILE).read_text(encoding="utf-8"))
            port, token = int(info["port"]), str(info["token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeNotRunning(f"no node is running for {data_dir} (unreadable {TOKEN_FILE}: {exc})") from exc
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=MAX_LINE)
        writer.write(json.dumps({"token": token}).encode() + b"\n")
        return reader, writer
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NodeNotRunning(f"no node is running for {data_dir} (start one with: scp2p start)") from exc


async def _alive(data_dir: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(_open(data_dir), 2)
    except (NodeNotRunning, OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


async def call(
    data_dir: Path, cmd: str, args: Optional[dict] = None, *, timeout: Optional[float] = None,
    on_progress: Optional[Callable[[dict], None]] = None,
) -> Any:  # fmt: skip
    """Run ``cmd`` on the node for ``data_dir``; raises :class:`NodeNotRunning` if there is none."""
    reader, writer = await _open(data_dir)
    try:
        async with asyncio.timeout(timeout):
            writer.write(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    raise ControlError("the node closed the control connection")
                msg = json.loads(line)
                if "progress" in msg:
                    if on_progress is not None:
                        on_progress(msg["progress"])
                    continue
                if not msg.get("ok"):
                    raise ControlError(msg.get("error", "command failed"))
                return msg.get("result")
    finally:
        writer.close()


def is_running(data_dir: Path) -> bool:
    return asyncio.run(_alive(Path(data_dir)))
