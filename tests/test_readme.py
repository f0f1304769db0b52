"""Every runnable code block of the README is executed (issue 10): ``sh`` and ``python`` blocks
here, ``sh ci`` blocks by .ci/run (checked below); ``text`` blocks are illustrations."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile

import pytest
from helpers import ROOT

BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [(lang, meta.strip(), body) for lang, meta, body in BLOCK.findall(text)]


RUNNABLE = [(i, lang, body) for i, (lang, meta, body) in enumerate(blocks()) if lang in ("sh", "python") and not meta]
POSIX = os.name == "posix"
#: the sh blocks are POSIX shell (mktemp, background jobs, cmp); on Windows runners "bash" resolves
#: to System32's WSL launcher before Git's bash, so they run on Linux and macOS only
NO_SH = pytest.mark.skipif(sys.platform == "win32",
                           reason="README sh blocks are POSIX shell; no usable bash on Windows")  # fmt: skip


def _env(home: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCP2P_") or k == "SCP2P_NO_EXTENSIONS"}
    env.update(HOME=home, SCP2P_DATA_DIR=os.path.join(home, "data"), PYTHONUNBUFFERED="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def test_readme_has_runnable_blocks():
    langs = [lang for _, lang, _ in RUNNABLE]
    assert langs.count("sh") >= 3 and langs.count("python") >= 1


@pytest.mark.parametrize(
    "index, lang, body",
    [pytest.param(i, lang, body, marks=[NO_SH] if lang == "sh" else []) for i, lang, body in RUNNABLE],
    ids=[f"block{i}-{lang}" for i, lang, _ in RUNNABLE],
)
def test_readme_block_runs(index, lang, body):
    # POSIX: a short /tmp path keeps control sockets under the Unix socket path limit (macOS's
    # $TMPDIR is long) and a new session lets the walkthrough's background nodes be killed together
    with tempfile.TemporaryDirectory(prefix="scp2p-readme-", dir="/tmp" if POSIX else None) as home:
        cmd = ["bash", "-euo", "pipefail", "-c", body] if lang == "sh" else [sys.executable, "-c", body]
        proc = subprocess.Popen(cmd, cwd=home, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=POSIX)  # fmt: skip
        try:
            out, err = proc.communicate(timeout=240)
        finally:
            if POSIX:
                try:  # nodes a failed walkthrough left running
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            elif proc.poll() is None:  # Windows (python blocks only): the block itself timed out
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, f"README block {index} failed:\n{body}\n--- stdout\n{out}\n--- stderr\n{err}"


def test_ci_runs_the_readme_setup_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    for lang, meta, body in blocks():
        if lang == "sh" and meta == "ci":
            for line in body.strip().splitlines():
                cmd = line.split("#")[0].strip()
                assert cmd in ci, f".ci/run does not run the README's {cmd!r}"
