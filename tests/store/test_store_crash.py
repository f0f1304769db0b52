"""Crash safety: SIGKILL (Windows: TerminateProcess) a writer subprocess at random moments; the
database must stay consistent.

Each kill is followed by: the store opens (WAL recovery), ``PRAGMA integrity_check`` is ok, and
the invariants of every kind of multi-row write hold (crash_writer.check_invariants).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import crash_writer

from scp2p.errors import StoreLocked

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
KILLS_PER_KIND = 8  # 7 kinds -> 56 kills
POSIX = os.name == "posix"
log = logging.getLogger(__name__)


class _Lines:
    """The writer's stdout lines, read by a thread (select() does not take pipes on Windows)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.lines: list[bytes] = []  # everything read, for the post-mortem
        self._queue: queue.Queue[bytes] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in iter(stream.readline, b""):
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(b"")

    def next(self, deadline: float) -> str:
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("writer produced no output in time") from None
        if not line:
            raise AssertionError(f"writer exited early: {self.proc.wait()} {self.proc.stderr.read()}")
        return line.decode().strip()

    def all_output(self) -> str:
        """After the process has exited: everything it printed."""
        self._thread.join(30)
        return b"".join(self.lines).decode()


def _open_after_kill(db: str):
    """Open the store the killed writer held. Windows releases a dead process's byte-range locks
    (the single-owner lock) "eventually", not at exit: retry StoreLocked there, bounded."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return crash_writer.open_store(db)
        except StoreLocked:
            if POSIX or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


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
        reader = _Lines(proc)
        try:
            deadline = time.monotonic() + 60
            if i % 10 == 3:
                during_open += 1  # kill right after spawn: during start-up, open, recovery or setup
            else:
                assert reader.next(deadline) == "ready"
                for _ in range(rng.randrange(0, 6)):  # let some transactions commit
                    reader.next(deadline)
                time.sleep(rng.uniform(0, 0.004))  # jitter the kill moment (not synchronisation)
        finally:
            proc.kill()  # POSIX: SIGKILL; Windows: TerminateProcess - no clean-up in the writer either way
            proc.wait()
            out = reader.all_output()
            proc.stdout.close()
            proc.stderr.close()
        if POSIX:
            assert proc.returncode == -signal.SIGKILL
        else:  # TerminateProcess's exit code (1), not one the writer chose
            assert proc.returncode == 1
        lines = out.split()
        if lines and lines[-2:-1] == ["begin"]:
            mid_transaction += 1
        s = _open_after_kill(str(db))
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
