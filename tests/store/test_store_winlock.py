"""The single-owner lock where there is no ``fcntl`` (Windows): ``msvcrt.locking`` of the lock
file's first byte. Forced on POSIX with a stand-in ``msvcrt`` whose byte lock is a ``flock`` (per
open file, like a Windows handle's lock), so the store's own control flow is what is tested."""

from __future__ import annotations

import errno
import os
import sys

import pytest

from scp2p.errors import StoreLocked
from scp2p.store import Store
from scp2p.store import store as store_mod

fcntl = pytest.importorskip("fcntl")


class FakeMsvcrt:
    LK_UNLCK, LK_LOCK, LK_NLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4
    LK_NBLCK = LK_NLCK

    def __init__(self) -> None:
        self.calls: list = []

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1 and os.lseek(fd, 0, os.SEEK_CUR) == 0  # byte 0
        self.calls.append(mode)
        if mode == self.LK_UNLCK:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OSError(errno.EACCES, "Permission denied") from None  # what _locking reports


@pytest.mark.skipif(sys.platform == "win32", reason="the real msvcrt is tested by the rest of the suite there")
def test_lock_without_fcntl(tmp_path, monkeypatch):
    fake = FakeMsvcrt()
    monkeypatch.setattr(store_mod, "_fcntl", None)
    monkeypatch.setattr(store_mod, "_msvcrt", fake)
    db = tmp_path / "state.db"
    with Store.open(db):
        with pytest.raises(StoreLocked):
            Store.open(db)
    assert fake.calls == [fake.LK_NBLCK, fake.LK_NBLCK, fake.LK_UNLCK]
    with Store.open(db):  # released: reopens at once
        pass
    assert fake.calls[-2:] == [fake.LK_NBLCK, fake.LK_UNLCK]
