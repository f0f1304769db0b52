"""``scp2p start`` and the commands that talk to it over the control channel (real processes, loopback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from scp2p.node import control

POSIX = os.name == "posix"
#: what a running node leaves in its data dir: the Unix socket, or (Windows) the port + token file
CONTROL_FILE = control.SOCKET_NAME if control._USE_UNIX else control.TOKEN_FILE


def cli(data_dir, *args, check=True, timeout=120):
    env = {k: v for k, v in os.environ.items() if k != "SCP2P_PASSPHRASE"}
    proc = subprocess.run([sys.executable, "-m", "scp2p", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"scp2p {args}: rc={proc.returncode} {proc.stdout} {proc.stderr}")
    return proc


class Running:
    """``scp2p start --json`` in a subprocess; waits for its 'started' line (bounded)."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scp2p", "--data-dir", str(data_dir), "--json", "start",
             "--listen", "tcp://127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline()  # the node prints 'started' once listening (or exits)
        if not line:
            raise AssertionError(f"node did not start: {self.proc.stderr.read()}")
        self.info = json.loads(line)
        assert self.info["event"] == "started"

    @property
    def url(self) -> str:
        return self.info["listen"][0]

    def stop(self) -> int:
        if POSIX:
            self.proc.send_signal(signal.SIGTERM)
        else:  # Windows: no SIGTERM to catch (send_signal would TerminateProcess); ask over the control channel
            cli(self.data_dir, "stop")
        rc = self.proc.wait(timeout=30)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc


@pytest.fixture
def short_dir():
    # Unix socket paths are limited to ~100 bytes: keep data dirs short
    with tempfile.TemporaryDirectory(prefix="scp2p-", dir="/tmp" if POSIX else None) as d:
        yield Path(d)


def test_start_status_publish_subscribe_sync_stop(short_dir, tmp_path):
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    a = Running(short_dir / "a")
    b = None
    try:
        st = json.loads(cli(a.data_dir, "status", "--json").stdout)
        assert st["node_id"] == a.info["node_id"] and st["listen"] == a.info["listen"]
        sid = cli(a.data_dir, "publish", str(folder)).stdout.strip()
        link = cli(a.data_dir, "invite", sid).stdout.strip()
        assert f"peer={a.url}#" in link
        assert json.loads(cli(a.data_dir, "shares", "--json").stdout)[0]["share_id"] == sid

        b = Running(short_dir / "b", "--bootstrap", a.url)
        res = json.loads(cli(b.data_dir, "subscribe", link, "--json").stdout)
        assert res["synced_seq"] == 1 and res["sync_error"] is None
        (folder / "b.txt").write_text("more")
        assert json.loads(cli(a.data_dir, "publish", str(folder), "--json").stdout)["seq"] == 2
        rows = json.loads(cli(b.data_dir, "sync", "--json").stdout)
        assert [(r["share_id"], r["seq"], r["error"]) for r in rows] == [(sid, 2, None)]
        peers = json.loads(cli(b.data_dir, "peers", "--json").stdout)
        assert any(p["connected"] and p["address"] == a.url for p in peers)
        status_b = json.loads(cli(b.data_dir, "status", "--json").stdout)
        assert status_b["subscriptions"] == 1 and status_b["counters"]["syncs"] >= 1
    finally:
        if b is not None:
            assert b.stop() == 0
        assert a.stop() == 0
    gone = cli(a.data_dir, "status", check=False)
    assert gone.returncode == 1 and "no node is running" in gone.stderr
    assert not (a.data_dir / CONTROL_FILE).exists()


def test_sync_without_a_running_node_uses_a_temporary_one(short_dir, tmp_path):
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "x.bin").write_bytes(b"x" * 1000)
    a = Running(short_dir / "a")
    try:
        sid = cli(a.data_dir, "publish", str(folder)).stdout.strip()
        link = cli(a.data_dir, "invite", sid).stdout.strip()
        sub = json.loads(cli(short_dir / "b", "subscribe", link, "--json").stdout)
        assert sub["synced_seq"] is None and "no running node" in sub["sync_error"]
        rows = json.loads(cli(short_dir / "b", "sync", "--json").stdout)
        assert [(r["updated"], r["seq"]) for r in rows] == [(True, 1)]
    finally:
        assert a.stop() == 0


def test_second_node_on_the_same_data_dir_is_refused(short_dir):
    a = Running(short_dir / "a")
    try:
        second = subprocess.run([sys.executable, "-m", "scp2p", "--data-dir", str(a.data_dir), "start",
                                 "--listen", "tcp://127.0.0.1:0"], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert second.returncode == 1 and "error" in second.stderr
    finally:
        assert a.stop() == 0
