from __future__ import annotations

from pathlib import Path

from scp2p.store import DB_FILENAME, Store, default_data_dir

HOME = Path("/home/u")


def test_platform_defaults():
    assert default_data_dir(env={}, platform="linux", home=HOME) == HOME / ".local/share/scp2p"
    assert default_data_dir(env={"XDG_DATA_HOME": "/x"}, platform="linux", home=HOME) == Path("/x/scp2p")
    assert default_data_dir(env={"XDG_DATA_HOME": "rel"}, platform="freebsd14", home=HOME) == HOME / ".local/share/scp2p"
    assert default_data_dir(env={}, platform="darwin", home=HOME) == HOME / "Library/Application Support/scp2p"
    assert default_data_dir(env={"LOCALAPPDATA": "C:/L"}, platform="win32", home=HOME) == Path("C:/L/scp2p")
    assert default_data_dir(env={}, platform="win32", home=HOME) == HOME / "AppData/Local/scp2p"
    assert default_data_dir(env={"SCP2P_DATA_DIR": "/d", "XDG_DATA_HOME": "/x"}, platform="linux", home=HOME) == Path("/d")


def test_open_without_path_uses_the_default_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SCP2P_DATA_DIR", str(tmp_path / "nested" / "dir"))
    with Store.open() as s:
        assert s.path == tmp_path / "nested" / "dir" / DB_FILENAME
    assert (tmp_path / "nested" / "dir" / DB_FILENAME).is_file()
