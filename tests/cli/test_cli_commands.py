"""The ``scp2p`` command end to end in subprocesses: the commands that work on the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run(*args, data_dir, env=None, check=True):
    full_env = dict(os.environ)
    full_env.pop("SCP2P_PASSPHRASE", None)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "scp2p", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120, env=full_env)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"scp2p {args} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc


def jrun(*args, data_dir, **kw):
    return json.loads(run(*args, "--json", data_dir=data_dir, **kw).stdout)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "share"
    (root / "Docs").mkdir(parents=True)
    (root / "Docs" / "guide.pdf").write_bytes(b"%PDF" + os.urandom(300_000))
    (root / "song.mp3").write_bytes(os.urandom(5000))
    return root


def test_init_is_idempotent(tmp_path):
    d = tmp_path / "node"
    first = jrun("init", data_dir=d)
    again = jrun("init", data_dir=d)
    assert first["created"] and not again["created"]
    assert first["node_id"] == again["node_id"] and len(first["node_id"]) == 40
    if os.name == "posix":  # Windows has no POSIX permission bits
        assert oct((d / "scp2p.db").stat().st_mode & 0o777) == "0o600"


def test_publish_invite_subscribe_roundtrip(tmp_path, folder):
    pub, sub = tmp_path / "pub", tmp_path / "sub"
    sid = run("publish", str(folder), "--title", "Docs", "--tag", "mine", data_dir=pub).stdout.strip()
    assert len(sid) == 64 and bytes.fromhex(sid)
    again = jrun("publish", str(folder), data_dir=pub)
    assert again["share_id"] == sid and again["seq"] == 2 and again["hashed_files"] == 0 and again["items"] == 2
    shares = jrun("shares", data_dir=pub)
    assert shares == [{"share_id": sid, "seq": 2, "items": 2, "title": "Docs", "folder": str(folder)}]
    link = run("invite", sid, "--peer", "tcp://127.0.0.1:7123", data_dir=pub).stdout.strip()
    node_pk = jrun("init", data_dir=pub)["node_pubkey"]
    assert link.startswith(f"scp2p://share/{sid}?pk=") and link.endswith(f"&peer=tcp://127.0.0.1:7123#{node_pk}")
    res = jrun("subscribe", link, "--trust", "trusted", "--weight", "2", data_dir=sub)
    assert res == {"share_id": sid, "trust": "trusted", "weight": 2.0, "seq": None, "blocklist": False,
                   "has_pubkey": True, "peers": ["tcp://127.0.0.1:7123"], "synced_seq": None,
                   "sync_error": "no running node: syncs when the node starts"}  # fmt: skip
    subs = jrun("subscriptions", data_dir=sub)
    assert [s["share_id"] for s in subs] == [sid] and subs[0]["has_pubkey"]
    assert "SHARE ID" in run("subscriptions", data_dir=sub).stdout
    assert jrun("unsubscribe", sid, data_dir=sub)["removed"]
    gone = run("unsubscribe", sid, data_dir=sub, check=False)
    assert gone.returncode == 1 and "not subscribed" in gone.stderr


def test_subscribe_by_id_and_key(tmp_path, folder):
    sid = run("publish", str(folder), data_dir=tmp_path / "p").stdout.strip()
    link = run("invite", sid, data_dir=tmp_path / "p").stdout.strip()
    pk = link.split("pk=")[1].split("&")[0]
    assert jrun("subscribe", sid, "--pubkey", pk, data_dir=tmp_path / "s")["has_pubkey"]
    bad = run("subscribe", sid, "--pubkey", "00" * 32, data_dir=tmp_path / "s2", check=False)
    assert bad.returncode == 1 and "does not match" in bad.stderr


@pytest.mark.parametrize("target", ["scp2p://share/zz", "nothex", "scp2p://share/" + "00" * 32 + "?peer=udp://x:1"])
def test_bad_subscribe_targets(tmp_path, target):
    res = run("subscribe", target, "--json", data_dir=tmp_path / "n", check=False)
    assert res.returncode == 1 and "error" in json.loads(res.stdout)


def test_passphrase_protects_keys(tmp_path, folder):
    d = tmp_path / "enc"
    env = {"MYPASS": "correct horse"}
    assert jrun("init", "--passphrase-env", "MYPASS", data_dir=d, env=env)["encrypted"]
    denied = run("publish", str(folder), data_dir=d, check=False)
    assert denied.returncode == 1 and "passphrase" in denied.stderr
    wrong = run("--passphrase-env", "MYPASS", "shares", data_dir=d, env={"MYPASS": "nope"}, check=False)
    assert wrong.returncode == 1 and "wrong passphrase" in wrong.stderr
    ok = run("--passphrase-env", "MYPASS", "publish", str(folder), data_dir=d, env=env)
    assert len(ok.stdout.strip()) == 64
    missing = run("--passphrase-env", "UNSET_VAR_X", "shares", data_dir=d, check=False)
    assert missing.returncode == 1 and "UNSET_VAR_X" in missing.stderr


def test_version_and_usage(tmp_path):
    out = jrun("--version", data_dir=tmp_path)
    assert out["backend"] in ("native", "pure") and out["version"]
    assert run(data_dir=tmp_path, check=False).returncode == 2


def test_names_the_console_cannot_encode_are_escaped_not_fatal(tmp_path, folder):
    # Windows writes to consoles and pipes in the ANSI code page (cp1252): a title in another script
    title = "\u65e5\u672c\u306e\u97f3\u697d"
    run("publish", str(folder), "--title", title, data_dir=tmp_path / "p")
    shown = run("shares", data_dir=tmp_path / "p", env={"PYTHONIOENCODING": "cp1252"})
    assert "\\u65e5\\u672c" in shown.stdout
    assert jrun("shares", data_dir=tmp_path / "p", env={"PYTHONIOENCODING": "cp1252"})[0]["title"] == title
