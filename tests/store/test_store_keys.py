"""Identity and share keys, encrypted at rest under a passphrase."""

from __future__ import annotations

import pytest

from scp2p.errors import KeyFormatError, PassphraseRequired, StoreCorrupt, StoreError, WrongPassphrase
from scp2p.store import Store
from scp2p.identity import node_id as node_id_of

from storetest_util import FAST_KDF, file_snapshot, seed


def _raw(db_path) -> bytes:
    return file_snapshot(db_path)[0]


def test_ensure_node_key_is_stable_and_valid(store):
    k1 = store.ensure_node_key()
    assert store.ensure_node_key() == k1 == store.node_key()
    assert k1.node_id == node_id_of(k1.public_key) and len(k1.node_id) == 20
    with pytest.raises(StoreError, match="already exists"):
        store.set_node_key(seed(9))
    assert store.set_node_key(seed(9), replace=True).seed == seed(9)


def test_known_ed25519_public_key_is_derived(store):
    # RFC 8032 test 1
    sk = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert store.set_node_key(sk).public_key.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    with pytest.raises(KeyFormatError):
        store.add_share_key(b"short")


def test_plain_keys_without_passphrase(db_path):
    with Store.open(db_path) as s:
        s.set_node_key(seed(1))
        s.add_share_key(seed(2), "a")
        s.checkpoint(truncate=True)
        assert not s.encrypted
    assert seed(1) in _raw(db_path)  # documented: plain, protected only by 0600


def test_passphrase_encrypts_keys_and_unlocks_them(db_path):
    with Store.open(db_path, passphrase="correct horse", kdf=FAST_KDF) as s:
        assert s.encrypted
        node = s.set_node_key(seed(1))
        share = s.add_share_key(seed(2), "music")
        s.checkpoint(truncate=True)
    raw = _raw(db_path)
    assert seed(1) not in raw and seed(2) not in raw
    with Store.open(db_path, passphrase="correct horse") as s:
        assert s.node_key() == node
        assert s.share_keys() == [share] and s.share_key(share.share_id).label == "music"


def test_wrong_or_missing_passphrase_is_a_clear_error_and_no_new_identity(db_path):
    with Store.open(db_path, passphrase="pw", kdf=FAST_KDF) as s:
        node = s.ensure_node_key()
    before = _raw(db_path)
    with pytest.raises(WrongPassphrase) as e:
        Store.open(db_path, passphrase="PW")
    assert str(db_path) in str(e.value) and "wrong passphrase" in str(e.value)
    with pytest.raises(PassphraseRequired):
        Store.open(db_path)
    assert _raw(db_path) == before  # nothing written, no new identity
    with Store.open(db_path, passphrase="pw") as s:
        assert s.ensure_node_key() == node


def test_unicode_passphrase_is_normalised(db_path):
    with Store.open(db_path, passphrase="caf\u00e9", kdf=FAST_KDF) as s:
        s.set_node_key(seed(4))
    with Store.open(db_path, passphrase="cafe\u0301") as s:  # NFD form of the same text
        assert s.node_key().seed == seed(4)


def test_adopting_and_changing_and_removing_passphrase(db_path):
    with Store.open(db_path) as s:
        s.set_node_key(seed(1))
        s.add_share_key(seed(2))
    with Store.open(db_path, passphrase="one", kdf=FAST_KDF) as s:  # adopts: encrypts existing keys
        assert s.encrypted and s.node_key().seed == seed(1)
    assert seed(1) not in _raw(db_path) and seed(2) not in _raw(db_path)
    with Store.open(db_path, passphrase="one") as s:
        s.change_passphrase("two", kdf=FAST_KDF)
    with pytest.raises(WrongPassphrase):
        Store.open(db_path, passphrase="one")
    with Store.open(db_path, passphrase="two") as s:
        s.change_passphrase(None)
        assert not s.encrypted
    with Store.open(db_path) as s:
        assert s.node_key().seed == seed(1) and s.share_keys()[0].key.seed == seed(2)


def test_swapped_encrypted_secret_is_detected_as_corruption(db_path):
    with Store.open(db_path, passphrase="pw", kdf=FAST_KDF) as s:
        a = s.add_share_key(seed(2))
        b = s.add_share_key(seed(3))
        with s.transaction():  # copy a's ciphertext onto b's row: AAD binds it to a's row
            s._exec("UPDATE share_keys SET secret = (SELECT secret FROM share_keys WHERE share_id = ?) WHERE share_id = ?",
                    (a.share_id, b.share_id))
        assert s.share_key(a.share_id) == a
        with pytest.raises(StoreCorrupt, match="does not decrypt"):
            s.share_key(b.share_id)
