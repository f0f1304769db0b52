"""``scp2p demo`` and ``scp2p download`` in real processes on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_cli_node import Running, cli, short_dir  # noqa: F401 - fixture


def test_demo_runs_end_to_end():
    proc = subprocess.run([sys.executable, "-m", "scp2p", "demo", "--json"], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] and [s["step"] for s in result["steps"]][-2:] == ["download", "verify"]


def test_human_demo_prints_every_step():
    proc = subprocess.run([sys.executable, "-m", "scp2p", "demo"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for word in ("publish", "invite link", "subscribe + sync", "search", "download", "verify", "demo finished"):
        assert word in proc.stdout


def test_download_through_a_running_node_and_without_one(short_dir, tmp_path):  # noqa: F811
    folder = tmp_path / "share"
    folder.mkdir()
    data = os.urandom(600_000)
    (folder / "movie.mkv").write_bytes(data)
    a = Running(short_dir / "a")
    b = None
    try:
        sid = cli(a.data_dir, "publish", str(folder)).stdout.strip()
        link = cli(a.data_dir, "invite", sid).stdout.strip()
        # no node for b: subscribe offline, then sync/search/download each with a temporary node
        cli(short_dir / "b", "subscribe", link)
        cli(short_dir / "b", "sync")
        hits = json.loads(cli(short_dir / "b", "search", "movie", "--json").stdout)
        assert [h["name"] for h in hits] == ["movie.mkv"] and hits[0]["share_id"] == sid
        out1 = tmp_path / "one.mkv"
        res = json.loads(cli(short_dir / "b", "download", hits[0]["content_id"], "--out", str(out1), "--json").stdout)
        assert res["path"] == str(out1) and out1.read_bytes() == data
        # the same through a running node
        b = Running(short_dir / "b")
        out2 = tmp_path / "two.mkv"
        cli(b.data_dir, "download", hits[0]["content_id"], "--out", str(out2))
        assert out2.read_bytes() == data
        bad = cli(b.data_dir, "download", "00" * 32, check=False)
        assert bad.returncode == 1 and "no catalog" in bad.stderr
    finally:
        if b is not None:
            assert b.stop() == 0
        assert a.stop() == 0
