"""Crash safety: SIGKILL a writer subprocess at random moments; the database must stay consistent.

Each kill is followed by: the store opens (WAL recovery), ``PRAGMA integrity_check`` is ok, and
the invariants of every kind of multi-row write hold (crash_writer.check_invariants).
"""

from __future__ import annotations

import logging
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import crash_writer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
KILLS_PER_KIND = 8  # 7 kinds -> 56 kills
log = logging.getLogger(__name__)


def _read_line(proc: subprocess.Popen, deadline: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        raise AssertionError("writer produced no output in time")
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"writer exited early: {proc.wait()} {proc.stderr.read()}")
    return line.decode().strip()


def test_sigkill_at_random_moments_never_breaks_the_store(tmp_path):
    rng = random.Random(int(os.environ.get("SCP2P_CRASH_SEED", "1234")))
    db = tmp_path / "crash" / "scp2p.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    schedule = [kind for _ in range(KILLS_PER_KIND) for kind in crash_writer.KINDS]
    mid_transaction = 0
    during_open = 0
    started = time.monotonic()
    for i, kind in enumerate(schedule):
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "crash_writer.py"), str(db), kind, str(i + 1)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        try:
            deadline = time.monotonic() + 60
            if i % 10 == 3:
                during_open += 1  # kill right after spawn: during start-up, open, recovery or setup
            else:
                assert _read_line(proc, deadline) == "ready"
                for _ in range(rng.randrange(0, 6)):  # let some transactions commit
                    _read_line(proc, deadline)
                time.sleep(rng.uniform(0, 0.004))  # jitter the kill moment (not synchronisation)
        finally:
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        lines = out.decode().split()
        if lines and lines[-2:-1] == ["begin"]:
            mid_transaction += 1
        s = crash_writer.open_store(str(db))
        try:
            assert s.integrity_check() == ["ok"], f"kill {i} ({kind})"
            crash_writer.check_invariants(s)
        finally:
            s.close()
    elapsed = time.monotonic() - started
    msg = (f"crash test: {len(schedule)} SIGKILLs over {len(crash_writer.KINDS)} write kinds in {elapsed:.1f}s; "
           f"{mid_transaction} landed after a 'begin' with no 'done', {during_open} right after spawn")
    print(msg)
    log.info(msg)
    # the last state is still a working, writable store
    s = crash_writer.open_store(str(db))
    try:
        crash_writer.setup(s)
        crash_writer.write(s, "peers", 10**9, rng)
        assert crash_writer.check_invariants(s)["peers"] == crash_writer.N_PEERS
    finally:
        s.close()
