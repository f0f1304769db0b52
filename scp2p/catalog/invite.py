"""Invite links: ``scp2p://share/<share_id_hex>?pk=<share_pubkey_hex>&peer=<url>[&peer=<url>...]``.

Each peer url is a listener URL such as ``tcp://127.0.0.1:7001`` (``quic://``, ``tls://``
too), optionally followed by ``#<node_pubkey_hex>``. The link is written exactly so; the
parser splits the query itself (a ``#`` inside a peer value is not a URL fragment) and also
accepts percent-encoded values (``%3A``, ``%2F``, ``%23``), so links that passed through
a URL encoder still work.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote

from ..errors import InvalidInvite
from ..limits import ID_LEN, PUBKEY_LEN

SCHEME = "scp2p://share/"
PEER_SCHEMES = ("tcp", "tls", "quic")
MAX_INVITE_PEERS = 16
MAX_INVITE_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class InvitePeer:
    """A peer to bootstrap from: its listener URL and, if known, its node public key."""

    url: str
    node_pubkey: Optional[bytes] = None

    def __post_init__(self) -> None:
        _check_url(self.url)
        if self.node_pubkey is not None and len(self.node_pubkey) != PUBKEY_LEN:
            raise InvalidInvite(f"peer node key must be {PUBKEY_LEN} bytes")

    @property
    def transport(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def host(self) -> str:
        return _split_hostport(self.url.split("://", 1)[1])[0]

    @property
    def port(self) -> int:
        return _split_hostport(self.url.split("://", 1)[1])[1]


@dataclass(frozen=True, slots=True)
class Invite:
    share_id: bytes
    share_pubkey: Optional[bytes] = None
    peers: tuple[InvitePeer, ...] = ()

    def __post_init__(self) -> None:
        if len(self.share_id) != ID_LEN:
            raise InvalidInvite(f"share id must be {ID_LEN} bytes")
        if self.share_pubkey is not None:
            if len(self.share_pubkey) != PUBKEY_LEN:
                raise InvalidInvite(f"share public key must be {PUBKEY_LEN} bytes")
            if hashlib.sha256(self.share_pubkey).digest() != self.share_id:
                raise InvalidInvite("share public key does not match the share id (SHA-256)")
        object.__setattr__(self, "peers", tuple(self.peers))
        if len(self.peers) > MAX_INVITE_PEERS:
            raise InvalidInvite(f"at most {MAX_INVITE_PEERS} peers in an invite")

    def to_link(self) -> str:
        return format_invite(self)


def format_invite(invite: Invite) -> str:
    parts = []
    if invite.share_pubkey is not None:
        parts.append(f"pk={invite.share_pubkey.hex()}")
    for p in invite.peers:
        parts.append(f"peer={p.url}" + (f"#{p.node_pubkey.hex()}" if p.node_pubkey is not None else ""))
    query = "?" + "&".join(parts) if parts else ""
    return f"{SCHEME}{invite.share_id.hex()}{query}"


def parse_invite(link: str) -> Invite:
    """Parse an invite link; :class:`InvalidInvite` says what is wrong with a bad one."""
    if not isinstance(link, str):
        raise InvalidInvite("an invite link is text")
    link = link.strip()
    if len(link) > MAX_INVITE_LENGTH:
        raise InvalidInvite(f"invite link longer than {MAX_INVITE_LENGTH} characters")
    if not link.lower().startswith(SCHEME):
        raise InvalidInvite(f"an invite link starts with {SCHEME!r}")
    rest = link[len(SCHEME) :]
    sid_hex, _, query = rest.partition("?")
    sid = _hex(sid_hex.rstrip("/"), ID_LEN, "share id")
    pk: Optional[bytes] = None
    peers: list[InvitePeer] = []
    if query:
        for part in query.split("&"):
            if not part:
                continue
            name, eq, value = part.partition("=")
            if not eq:
                raise InvalidInvite(f"query part {part!r} has no '='")
            value = unquote(value)
            if name == "pk":
                if pk is not None:
                    raise InvalidInvite("'pk' given twice")
                pk = _hex(value, PUBKEY_LEN, "share public key (pk)")
            elif name == "peer":
                url, hash_, key_hex = value.partition("#")
                key = _hex(key_hex, PUBKEY_LEN, "peer node key") if hash_ else None
                peers.append(InvitePeer(url, key))
            # unknown parameters are ignored (forward compatibility)
    return Invite(sid, pk, tuple(peers))


def _hex(text: str, n: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvalidInvite(f"{what} is not hex: {text[:80]!r}") from None
    if len(raw) != n:
        raise InvalidInvite(f"{what} must be {n} bytes ({2 * n} hex digits), got {len(raw)}")
    return raw


def _split_hostport(hostport: str) -> tuple[str, int]:
    if hostport.startswith("["):
        host, sep, port = hostport[1:].partition("]:")
        if not sep:
            raise InvalidInvite(f"bad IPv6 peer address {hostport!r} (use [addr]:port)")
    else:
        host, sep, port = hostport.rpartition(":")
        if not sep:
            raise InvalidInvite(f"peer address {hostport!r} has no port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInvite(f"bad port in peer address {hostport!r}")
    if not host:
        raise InvalidInvite(f"peer address {hostport!r} has no host")
    return host, int(port)


def _check_url(url: str) -> None:
    scheme, sep, hostport = url.partition("://")
    if not sep or scheme not in PEER_SCHEMES:
        raise InvalidInvite(f"peer url {url!r} must start with one of {', '.join(s + '://' for s in PEER_SCHEMES)}")
    host, _port = _split_hostport(hostport.rstrip("/"))
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(c.isalnum() or c in "-." for c in host):
            raise InvalidInvite(f"bad host in peer url {url!r}") from None
