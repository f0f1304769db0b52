"""The twin selector and ``scp2p --version``."""

from __future__ import annotations

import os
import subprocess
import sys

import scp2p
from scp2p import _accel
from scp2p.wire import codec


def test_backend_matches_environment():
    """Native must be live unless SCP2P_NO_EXTENSIONS is set: a failed build must not pass silently."""
    if _accel.NO_EXTENSIONS:
        assert scp2p.backend() == "pure" and codec.BACKEND == "pure"
    else:
        assert scp2p.backend() == "native", "native extension did not load (build it: pip install -e .)"
        assert codec.BACKEND == "native"
        assert _accel.loaded["scp2p.wire._codec_c"] == "native"


def test_version_command_prints_version_and_backend():
    for args in (["-m", "scp2p", "--version"],):
        out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, check=True)
        assert scp2p.__version__ in out.stdout
        assert f"{scp2p.backend()} backend" in out.stdout


def test_environment_variable_forces_pure():
    env = dict(os.environ, SCP2P_NO_EXTENSIONS="1")
    out = subprocess.run([sys.executable, "-c", "import scp2p; print(scp2p.backend())"], env=env,
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert out.stdout.strip() == "pure"
