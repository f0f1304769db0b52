"""Node configuration: one frozen dataclass with embedded defaults."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..store.datadir import DB_FILENAME, default_data_dir
from ..wire.records import Capabilities

DEFAULT_PORT = 7001


class Profile(str, enum.Enum):
    """``desktop``: dht, store, content_seed (relay when enabled); ``light``: content_seed, mobile_light."""

    DESKTOP = "desktop"
    LIGHT = "light"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a node needs to start. Defaults are usable as they are."""

    data_dir: Path = field(default_factory=default_data_dir)
    listen: tuple[str, ...] = (f"tcp://0.0.0.0:{DEFAULT_PORT}",)
    #: addresses put into invite links and provider hints; empty: derived from ``listen``
    advertise: tuple[str, ...] = ()
    bootstrap: tuple[str, ...] = ()
    profile: Profile = Profile.DESKTOP
    relay: bool = False
    #: relay URLs to register with when this node cannot be dialled (others are found among peers)
    relays: tuple[str, ...] = ()
    #: as a relay, carry content (chunks) too: "off" (control only), "trusted" or "all"
    relay_content: str = "off"
    sync_interval: float = 300.0
    #: sync subscriptions in the background (at start and every ``sync_interval``)
    auto_sync: bool = True
    #: upload cap in bytes per second (None: unlimited)
    upload_rate: Optional[float] = None
    #: serve the local control channel (``scp2p`` commands talk to the node through it)
    control: bool = False
    passphrase: Optional[str] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        object.__setattr__(self, "profile", Profile(self.profile))
        for name in ("listen", "advertise", "bootstrap", "relays"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILENAME

    @property
    def capabilities(self) -> Capabilities:
        if self.profile is Profile.LIGHT:
            return Capabilities.light()
        return Capabilities.desktop(relay=self.relay)

    def advertised(self) -> tuple[str, ...]:
        """Where peers can reach us: ``advertise`` if set, else ``listen`` with wildcard hosts as loopback."""
        if self.advertise:
            return self.advertise
        out = []
        for url in self.listen:
            scheme, _, rest = url.partition("://")
            host, _, port = rest.rpartition(":")
            if host in ("0.0.0.0", ""):
                host = "127.0.0.1"
            elif host in ("[::]", "::"):
                host = "[::1]"
            out.append(f"{scheme}://{host}:{port}")
        return tuple(out)

    def replace(self, **changes) -> "NodeConfig":
        return dataclasses.replace(self, **changes)
