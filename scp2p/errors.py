"""The scp2p exception hierarchy. Every error scp2p raises on purpose is a ``Scp2pError``.

Both codec twins raise from this module, so native and pure error types match.
Decode errors say *what* was wrong and *where*: ``path`` is the field path
(``ManifestV1.items[3].chunks[0]``) and ``offset`` the byte offset in the input.
"""

from __future__ import annotations


class Scp2pError(Exception):
    """Root of every scp2p error."""


class _Located(Scp2pError):
    """An error with a field path, built outwards while the error propagates."""

    def __init__(self, what: str, *, offset: int | None = None, path: str = "") -> None:
        self.what = what
        self.offset = offset
        self.path = path
        super().__init__(what)

    def add_context(self, segment: str) -> None:
        """Prepend a path segment (a field name, or ``[i]`` for a list index)."""
        if not self.path:
            self.path = segment
        elif self.path.startswith("["):
            self.path = segment + self.path
        else:
            self.path = segment + "." + self.path

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(f"at {self.path}")
        if self.offset is not None:
            where.append(f"byte {self.offset}")
        return f"{self.what} ({', '.join(where)})" if where else self.what

    def __reduce__(self):  # keep picklable with keyword-only arguments
        return (_rebuild, (type(self), self.what, self.offset, self.path))


def _rebuild(cls, what, offset, path):
    return cls(what, offset=offset, path=path)


# --------------------------------------------------------------------------- decoding
class DecodeError(_Located, ValueError):
    """Bytes from the network (or disk) do not form a valid record."""


class TruncatedInput(DecodeError):
    """The input ended inside a CBOR item."""


class TrailingBytes(DecodeError):
    """Bytes remain after the complete record."""


class MalformedCbor(DecodeError):
    """Not well-formed CBOR for the v0.1 shapes (indefinite length, reserved info, bad UTF-8...)."""


class WrongType(DecodeError):
    """A CBOR item of the wrong major type (e.g. text where an integer belongs)."""


class WrongLength(DecodeError):
    """A fixed-size value (id, key, hash, signature, IP) has the wrong number of bytes."""


class IntOutOfRange(DecodeError):
    """An integer does not fit its field (negative, or above u8/u16/u32/u64 or a field maximum)."""


class DuplicateKey(DecodeError):
    """The same key appears twice in one map."""


class MissingField(DecodeError):
    """A required key is absent."""


class InvalidValue(DecodeError):
    """A value of the right type that is not allowed (unknown enum text, bad IP map...)."""


class LimitExceeded(DecodeError):
    """A size or count limit (PROTOCOL.md section 9) would be exceeded; checked before allocating."""


class FrameTooLarge(LimitExceeded):
    """A frame's length prefix is above the limit for its phase."""


class UnknownMessageType(DecodeError):
    """An envelope's type is not in the message registry (answer with an error, keep the session)."""

    def __init__(self, msg_type: int, **kw) -> None:
        self.msg_type = msg_type
        super().__init__(f"unknown message type {msg_type}", **kw)

    def __reduce__(self):
        return (UnknownMessageType, (self.msg_type,))


# --------------------------------------------------------------------------- encoding
class EncodeError(_Located, ValueError):
    """A record cannot be encoded (a field has the wrong type, size or range); ``path`` names it."""


# --------------------------------------------------------------------------- verification
class VerificationError(Scp2pError):
    """A signature, id or hash check failed: the data must not be used."""


class SignatureInvalid(VerificationError):
    """An Ed25519 signature does not verify."""


class IdMismatch(VerificationError):
    """An identifier does not match its content (share_id vs key, ManifestId, DHT key, pubkey hint)."""


class HashMismatch(VerificationError):
    """A chunk or file does not hash to the expected BLAKE3 value."""


class HandshakeError(VerificationError):
    """The peer's Hello is invalid: bad signature, nonce not echoed, or unexpected key."""


class KeyFormatError(Scp2pError, ValueError):
    """Key material has the wrong size or format."""


# --------------------------------------------------------------------------- store
class StoreError(Scp2pError):
    """The persistent store (``scp2p.store``) failed. ``path`` names the file, ``problem`` says what."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        return (type(self), (self.path, self.problem))


class StoreCorrupt(StoreError):
    """The database file is damaged (SQLite reports corruption, or a stored checksum fails)."""


class NotADatabase(StoreError):
    """The file is not an SQLite database at all."""


class NotAStore(NotADatabase):
    """The file is an SQLite database, but not an scp2p store (another application's data)."""


class SchemaTooNew(StoreError):
    """The database was written by a newer scp2p (schema ``found`` > ``supported``)."""

    def __init__(self, path: object, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        StoreError.__init__(
            self,
            path,
            f"schema version {found} is newer than this scp2p supports ({supported}); "
            "upgrade scp2p (the file was left untouched)",
        )

    def __reduce__(self):
        return (SchemaTooNew, (self.path, self.found, self.supported))


class MigrationError(StoreError):
    """A schema migration failed; the database was rolled back to its previous version."""


class StoreReadOnly(StoreError):
    """The database or its directory cannot be written (permissions, read-only file system)."""


class StoreLocked(StoreError):
    """Another process (or another open ``Store``) already uses this database."""


class PassphraseError(StoreError):
    """Private keys at rest could not be unlocked."""


class PassphraseRequired(PassphraseError):
    """The store's private keys are encrypted and no passphrase was given."""


class WrongPassphrase(PassphraseError):
    """The passphrase does not unlock the store's private keys."""


class BlobConflict(StoreError):
    """A blob was written with an ``expected_generation`` that no longer matches."""


# --------------------------------------------------------------------------- transport and sessions
class TransportError(Scp2pError):
    """A connection or session problem (dial failure, closed session, timeout, overload)."""


class ConnectFailed(TransportError, OSError):
    """No session could be established with the peer (every address/transport tried failed)."""


class HandshakeTimeout(TransportError, TimeoutError):
    """The Hello exchange did not complete within the handshake timeout."""


class ChannelBindingError(HandshakeError):
    """A Hello's nonce is not bound to this TLS/QUIC channel (a replayed or relayed Hello)."""


class SessionClosed(TransportError, ConnectionError):
    """The session closed (or broke) before the operation completed. ``reason`` says why."""

    def __init__(self, reason: str = "session closed") -> None:
        self.reason = reason
        super().__init__(reason)

    def __reduce__(self):
        return (type(self), (self.reason,))


class RequestTimeout(TransportError, TimeoutError):
    """No response arrived within the request timeout."""


class Backpressure(TransportError):
    """A bounded queue is full: the peer (or our writer) cannot keep up."""


class ProtocolViolation(TransportError):
    """The peer broke the session protocol (malformed frame or envelope); the session is closed."""


class RemoteError(Scp2pError):
    """The peer answered with an error response (flags 3); ``reason`` is its UTF-8 text."""

    def __init__(self, reason: str, msg_type: int | None = None) -> None:
        self.reason = reason
        self.msg_type = msg_type
        super().__init__(reason if msg_type is None else f"type {msg_type}: {reason}")

    def __reduce__(self):
        return (type(self), (self.reason, self.msg_type))


# --------------------------------------------------------------------------- DHT (scp2p.dht)
class DhtError(Scp2pError):
    """A DHT operation was refused or could not complete."""


class StaleValue(DhtError):
    """A share head with a lower ``latest_seq`` than the one held (or a different head at the same seq)."""


class QuotaExceeded(DhtError):
    """A peer's storage quota (values or bytes), or the node's total value storage, is used up."""


class RateLimited(DhtError):
    """A peer sent requests faster than its token bucket allows."""


class LookupFailed(DhtError):
    """A lookup ended without a result (no reachable nodes, or the value was not found)."""


# --------------------------------------------------------------------------- search
class SearchError(Scp2pError):
    """A search index problem (bad query, bad input to the index, unreadable persisted image)."""


class QueryError(SearchError, ValueError):
    """The query string is malformed; ``position`` is the character offset of the problem."""

    def __init__(self, what: str, position: int) -> None:
        self.what = what
        self.position = position
        super().__init__(f"{what} (at character {position})")

    def __reduce__(self):
        return (type(self), (self.what, self.position))


class IndexImageError(SearchError):
    """A persisted search index image is damaged or of an unknown format (rebuild from manifests)."""


# --------------------------------------------------------------------------- catalog (shares)
class CatalogError(Scp2pError):
    """Publishing, subscribing or syncing a share failed."""


class InvalidInvite(CatalogError, ValueError):
    """An invite link is malformed; the message says which part."""


class ManifestTooLarge(CatalogError):
    """A folder's manifest would not fit the v0.1 1 MiB payload limit."""


class StaleManifest(VerificationError):
    """A share head or manifest is older than what we hold (rollback), or expired."""


# --------------------------------------------------------------------------- transfer (scp2p.transfer)
class TransferError(Scp2pError):
    """A download or an upload could not proceed."""


class NoProviders(TransferError):
    """Every known provider of the content failed, was banned, or none was found in time."""


class ContentMismatch(VerificationError):
    """Every chunk matched the manifest but the whole file does not hash to the content id
    (the manifest's chunk list and content id disagree); the download is abandoned."""


class DownloadCancelled(TransferError):
    """The download was cancelled; verified chunks are kept for a later resume."""


class ChunkUnavailable(TransferError):
    """This node cannot serve the requested chunk (unknown content, index out of range, file changed)."""


# --------------------------------------------------------------------------- node
class NodeError(Scp2pError):
    """A node-level operation failed (not running, unknown share, bad configuration)."""


class NodeNotRunning(NodeError):
    """No node is running for this data directory (the command needs one)."""


class ControlError(NodeError):
    """The local control channel failed or the node refused the command."""


# --------------------------------------------------------------------------- relay (scp2p.relay)
class RelayError(Scp2pError):
    """Reaching a node through a relay, or serving as a relay, failed."""


class RelayRefused(RelayError):
    """The relay refused a registration, a connect or a stream segment (``reason`` is its text)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def __reduce__(self):
        return (type(self), (self.reason,))


class ContentRelayDisabled(RelayRefused):
    """Content (GET_CHUNK / CHUNK_DATA) was sent through a relay that carries control traffic only."""


class RelayQuotaExceeded(RelayRefused):
    """A per-peer relay cap (bytes per day, concurrent streams, segment size) was reached."""


class RelaySlotUnknown(RelayRefused):
    """No live slot with that id at this relay (expired, never registered, or its owner is offline)."""


class RelayStreamError(RelayError):
    """A relayed stream broke: bad segment framing, a kind label that does not match its frames."""


class NoRelay(RelayError):
    """No relay could be reached or registered with."""


# ---------------------------------------------------------------------- search index storage
class SearchIndexIOError(SearchError, OSError):
    """Writing the search index's on-disk postings failed (disk full, I/O error) during a merge:
    the merge was abandoned and the index is unchanged and usable (the deltas stay in memory;
    the next update tries the merge again). ``errno`` and ``strerror`` as OSError's."""
