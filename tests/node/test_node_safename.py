"""safe_name: a manifest item's name (from the network) becomes one harmless file name."""

import pytest

from scp2p.node.downloads import MAX_NAME_BYTES, safe_name


@pytest.mark.parametrize("name, expected", [
    ("song.mp3", "song.mp3"),
    ("dir/sub/file.txt", "file.txt"),
    ("..\\..\\evil.exe", "evil.exe"),          # Windows separators climb out of the folder there
    ("a\\b/../c.txt", "c.txt"),
    ("C:\\Windows\\system32\\x.dll", "x.dll"),
    ("C:evil.bat", "C_evil.bat"),              # drive-relative path on Windows
    ("..", "download"), (".", "download"), ("", "download"), ("   ", "download"), ("a/", "download"),
    ("name. . ", "name"),                      # Windows drops trailing dots and spaces
    ("con", "_con"), ("NUL.txt", "_NUL.txt"), ("com1.tar.gz", "_com1.tar.gz"), ("lpt9", "_lpt9"),
    ("CONSOLE", "CONSOLE"), ("com10", "com10"), ("nullable.txt", "nullable.txt"),
    ("a\x00b\nc", "a_b_c"), ('what?<"|*>', "what______"),
])
def test_safe_name(name, expected):
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", ["x" * 300, "é" * 300 + ".mkv", "ü" * 113 + "a" * 200, "a." + "b" * 400])
def test_long_names_fit_with_the_part_suffix(name):
    out = safe_name(name)
    assert 0 < len(out.encode()) <= MAX_NAME_BYTES
    assert len(f".{out}.{'0' * 16}.scp2p-part".encode()) <= 255
    out.encode().decode()  # never a cut UTF-8 sequence
    if name.endswith(".mkv"):
        assert out.endswith(".mkv")


def test_never_a_path():
    for name in ["../../etc/passwd", "..\\..\\..\\boot.ini", "/abs/path", "\\\\server\\share\\f", "a/b\\c/.."]:
        out = safe_name(name)
        assert "/" not in out and "\\" not in out and out not in ("", ".", "..")


def test_file_id_fits_the_store():
    import os

    from scp2p.node.downloads import file_id

    st = os.stat(__file__)
    assert file_id(st) == st.st_ino
    big = os.stat_result((0o100644, 2**64 + 5, 0, 1, 0, 0, 10, 0, 0, 0))
    assert big.st_ino == 2**64 + 5 and file_id(big) == 0
