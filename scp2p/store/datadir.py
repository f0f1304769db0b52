"""Where a node keeps its state by default (overridable by argument or ``SCP2P_DATA_DIR``)."""

from __future__ import annotations

import logging
import os
import posixpath
import stat
import sys
from pathlib import Path
from typing import Mapping

from ..errors import StoreReadOnly

log = logging.getLogger(__name__)

APP_NAME = "scp2p"
#: the database file inside a data directory
DB_FILENAME = "scp2p.db"
ENV_VAR = "SCP2P_DATA_DIR"


def default_data_dir(
    *, env: Mapping[str, str] | None = None, platform: str | None = None, home: Path | None = None
) -> Path:
    """The per-user data directory, following each platform's convention.

    ``$SCP2P_DATA_DIR`` wins. Linux/BSD: ``$XDG_DATA_HOME/scp2p`` else ``~/.local/share/scp2p``;
    macOS/iOS: ``~/Library/Application Support/scp2p``; Windows: ``%LOCALAPPDATA%\\scp2p``
    (else ``~\\AppData\\Local\\scp2p``). Android apps pass their own private files dir.
    """
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    home = Path.home() if home is None else home
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR]).expanduser()
    if platform.startswith("win"):
        base = env.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / APP_NAME
    if platform in ("darwin", "ios"):
        return home / "Library" / "Application Support" / APP_NAME
    xdg = env.get("XDG_DATA_HOME")
    # the XDG spec says relative values are ignored; absolute by POSIX rules (whatever OS asks:
    # Windows' os.path.isabs("/x") is False from Python 3.13)
    if xdg and posixpath.isabs(xdg):
        return Path(xdg) / APP_NAME
    return home / ".local" / "share" / APP_NAME


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) owner-only (0700); warn if an existing one is group/world writable."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreReadOnly(path, f"cannot create the data directory: {exc.strerror or exc}") from exc
    if not path.is_dir():
        raise StoreReadOnly(path, "is not a directory")
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o022:
            log.warning("store: data directory %s is writable by others (mode %o)", path, mode)
