"""Invite links: exact format, round trips, clear errors."""

from __future__ import annotations

import pytest

from scp2p.catalog.invite import Invite, InvitePeer, format_invite, parse_invite
from scp2p.errors import InvalidInvite, Scp2pError
from scp2p.identity import ShareKey

KEY = ShareKey(bytes(range(32)))
NODE_PK = bytes(range(32, 64))


def test_exact_format():
    inv = Invite(KEY.share_id, KEY.public_key, (InvitePeer("tcp://127.0.0.1:7001"), InvitePeer("quic://[::1]:9", NODE_PK)))
    link = format_invite(inv)
    assert link == (
        f"scp2p://share/{KEY.share_id.hex()}?pk={KEY.public_key.hex()}"
        f"&peer=tcp://127.0.0.1:7001&peer=quic://[::1]:9#{NODE_PK.hex()}"
    )
    assert parse_invite(link) == inv
    assert inv.peers[0].host == "127.0.0.1" and inv.peers[0].port == 7001 and inv.peers[1].host == "::1"


def test_percent_encoded_and_minimal_links():
    enc = (f"scp2p://share/{KEY.share_id.hex()}?pk={KEY.public_key.hex()}"
           f"&peer=tcp%3A%2F%2F127.0.0.1%3A7001%23{NODE_PK.hex()}&future=1")  # fmt: skip
    inv = parse_invite(enc)
    assert inv.peers == (InvitePeer("tcp://127.0.0.1:7001", NODE_PK),)
    bare = parse_invite(f"scp2p://share/{KEY.share_id.hex()}")
    assert bare.share_pubkey is None and bare.peers == ()
    assert format_invite(bare) == f"scp2p://share/{KEY.share_id.hex()}"


@pytest.mark.parametrize(
    "link, words",
    [
        ("http://share/00", "starts with"),
        ("scp2p://share/zz", "not hex"),
        ("scp2p://share/" + "00" * 31, "32 bytes"),
        (f"scp2p://share/{KEY.share_id.hex()}?pk=" + "00" * 32, "does not match"),
        (f"scp2p://share/{KEY.share_id.hex()}?pk={KEY.public_key.hex()}&pk={KEY.public_key.hex()}", "twice"),
        (f"scp2p://share/{KEY.share_id.hex()}?peer=udp://1.2.3.4:5", "must start with"),
        (f"scp2p://share/{KEY.share_id.hex()}?peer=tcp://1.2.3.4", "no port"),
        (f"scp2p://share/{KEY.share_id.hex()}?peer=tcp://1.2.3.4:70000", "bad port"),
        (f"scp2p://share/{KEY.share_id.hex()}?peer=tcp://1.2.3.4:1#abcd", "peer node key"),
        (f"scp2p://share/{KEY.share_id.hex()}?peer", "no '='"),
        ("scp2p://share/" + "a" * 9000, "longer than"),
    ],
)
def test_bad_links_say_what_is_wrong(link, words):
    with pytest.raises(InvalidInvite) as info:
        parse_invite(link)
    assert words in str(info.value)
    assert isinstance(info.value, Scp2pError)
