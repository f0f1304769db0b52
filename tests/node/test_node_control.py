"""The control channel's Windows form (loopback TCP + token file), run here by forcing it on POSIX."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest
from nodetest_util import async_test

from scp2p.errors import ControlError, NodeNotRunning
from scp2p.node import control


@pytest.fixture
def token_channel(monkeypatch):
    monkeypatch.setattr(control, "_USE_UNIX", False)


async def _echo(args: dict, progress) -> dict:
    progress({"step": 1})
    return args


async def _closed_after(data: bytes, port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await reader.read()
    finally:
        writer.close()


@async_test(30)
async def test_token_channel_round_trip_and_refusals(tmp_path, token_channel):
    srv = control.ControlServer(tmp_path, {"echo": _echo})
    await srv.start()
    try:
        assert srv.path == tmp_path / control.TOKEN_FILE
        info = json.loads(srv.path.read_text(encoding="utf-8"))
        assert info["pid"] == os.getpid() and len(info["token"]) == 64
        seen: list[dict] = []
        assert await control.call(tmp_path, "echo", {"x": 1}, timeout=10, on_progress=seen.append) == {"x": 1}
        assert seen == [{"step": 1}]
        with pytest.raises(ControlError, match="unknown command"):
            await control.call(tmp_path, "nope", timeout=10)
        # without the right token first, nothing runs and the connection is closed
        req = b'{"cmd": "echo", "args": {}}\n'
        firsts = (b'{"token": "00"}\n', b'{"token": 5}\n', b"[1]\n", b"not json\n", '{"token": "\u00e9"}\n'.encode())
        for first in firsts:
            assert await _closed_after(first + req, info["port"]) == b""
    finally:
        await srv.close()
    assert not srv.path.exists()
    with pytest.raises(NodeNotRunning):
        await control.call(tmp_path, "echo", timeout=10)


@async_test(30)
async def test_stale_or_partial_token_file_means_not_running(tmp_path, token_channel):
    with socket.socket() as s:  # a port nothing listens on: a node that died
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tf = tmp_path / control.TOKEN_FILE
    for text in (json.dumps({"port": port, "token": "ab", "pid": 1}), "", '{"port": 1', "[]", '{"token": "x"}'):
        tf.write_text(text, encoding="utf-8")  # stale, or being written by a node that is starting
        with pytest.raises(NodeNotRunning):
            await control.call(tmp_path, "status", timeout=10)
