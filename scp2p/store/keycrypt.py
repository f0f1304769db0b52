"""Private keys at rest: scrypt (cryptography's ``Scrypt``) + ChaCha20-Poly1305.

Format (see docs/store.md):

* ``meta['kdf']`` holds ``b"scp2p-kdf-v1"`` || n_log2 (1 byte) || r (1) || p (1) || salt (16)
  || a *verifier*: nonce (12) || ChaCha20-Poly1305(key, nonce, b"scp2p passphrase check",
  aad=b"scp2p-verifier-v1"). The verifier tells a wrong passphrase (clear error) apart from a
  damaged key row (corruption).
* An encrypted secret (``secret_fmt = 1``) is version byte 1 || nonce (12) || ciphertext of the
  32-byte seed + 16-byte tag, with AAD = b"scp2p-key-v1|" || table || b"|" || row id, so a
  secret copied onto another row does not decrypt.
* ``secret_fmt = 0`` is the plain 32-byte seed (no passphrase set; the file is still 0600).
"""

from __future__ import annotations

import os
import struct
import unicodedata
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

FMT_PLAIN = 0
FMT_CHACHA = 1
_KDF_MAGIC = b"scp2p-kdf-v1"
_VERIFIER_PLAIN = b"scp2p passphrase check"
_VERIFIER_AAD = b"scp2p-verifier-v1"
_SALT_LEN = 16
_NONCE_LEN = 12


class BadPassphrase(Exception):
    """Internal: the verifier did not decrypt."""


class BadSecret(Exception):
    """Internal: a key row did not decrypt although the passphrase is right."""


@dataclass(frozen=True, slots=True)
class KdfParams:
    """scrypt cost. The default (n=2**15, r=8, p=1: 32 MiB, ~0.1 s) follows common guidance."""

    n_log2: int = 15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if not (1 <= self.n_log2 <= 24 and 1 <= self.r <= 32 and 1 <= self.p <= 16):
            raise ValueError(f"unreasonable scrypt parameters {self}")


def normalize_passphrase(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, str):
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if isinstance(passphrase, (bytes, bytearray)):
        return bytes(passphrase)
    raise TypeError("passphrase must be str or bytes")


def _derive(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    return Scrypt(salt=salt, length=32, n=1 << params.n_log2, r=params.r, p=params.p).derive(passphrase)


def new_kdf_record(passphrase: str | bytes, params: KdfParams) -> tuple[bytes, bytes]:
    """A fresh salt and verifier; returns (record, key)."""
    salt = os.urandom(_SALT_LEN)
    key = _derive(normalize_passphrase(passphrase), salt, params)
    nonce = os.urandom(_NONCE_LEN)
    verifier = nonce + ChaCha20Poly1305(key).encrypt(nonce, _VERIFIER_PLAIN, _VERIFIER_AAD)
    record = _KDF_MAGIC + struct.pack("BBB", params.n_log2, params.r, params.p) + salt + verifier
    return record, key


def unlock(record: bytes, passphrase: str | bytes) -> bytes:
    """Derive the key from ``record``; raise ``BadPassphrase`` if the verifier fails, ValueError if malformed."""
    head = len(_KDF_MAGIC)
    if not record.startswith(_KDF_MAGIC) or len(record) != head + 3 + _SALT_LEN + _NONCE_LEN + len(_VERIFIER_PLAIN) + 16:
        raise ValueError("malformed key-derivation record")
    n_log2, r, p = struct.unpack_from("BBB", record, head)
    params = KdfParams(n_log2, r, p)
    salt = record[head + 3 : head + 3 + _SALT_LEN]
    verifier = record[head + 3 + _SALT_LEN :]
    key = _derive(normalize_passphrase(passphrase), salt, params)
    try:
        plain = ChaCha20Poly1305(key).decrypt(verifier[:_NONCE_LEN], verifier[_NONCE_LEN:], _VERIFIER_AAD)
    except InvalidTag:
        raise BadPassphrase() from None
    if plain != _VERIFIER_PLAIN:
        raise BadPassphrase()
    return key


def _aad(table: str, row_id: bytes) -> bytes:
    return b"scp2p-key-v1|" + table.encode() + b"|" + row_id


def seal(key: bytes | None, seed: bytes, table: str, row_id: bytes) -> tuple[bytes, int]:
    """Encrypt ``seed`` for a row (or keep it plain when ``key`` is None). Returns (secret, fmt)."""
    if key is None:
        return seed, FMT_PLAIN
    nonce = os.urandom(_NONCE_LEN)
    return b"\x01" + nonce + ChaCha20Poly1305(key).encrypt(nonce, seed, _aad(table, row_id)), FMT_CHACHA


def open_secret(key: bytes | None, secret: bytes, fmt: int, table: str, row_id: bytes) -> bytes:
    """Recover the 32-byte seed; ``BadSecret`` if the row does not decrypt or is malformed."""
    if fmt == FMT_PLAIN:
        if len(secret) != 32:
            raise BadSecret("plain secret is not 32 bytes")
        return secret
    if fmt != FMT_CHACHA or key is None or len(secret) != 1 + _NONCE_LEN + 32 + 16 or secret[0] != 1:
        raise BadSecret("malformed encrypted secret")
    try:
        return ChaCha20Poly1305(key).decrypt(secret[1 : 1 + _NONCE_LEN], secret[1 + _NONCE_LEN :], _aad(table, row_id))
    except InvalidTag:
        raise BadSecret("encrypted secret does not authenticate") from None
