"""Protocol constants and limits (PROTOCOL.md sections 1, 6, 8 and 9). One place for both twins."""

KIB = 1024
MIB = 1024 * 1024

#: chunk size for content addressing (PROTOCOL.md section 1)
CHUNK_SIZE = 262_144

#: a post-handshake frame / an encoded envelope
MAX_FRAME = 2 * MIB
MAX_ENVELOPE = MAX_FRAME
#: an envelope payload (so a v0.1 manifest must fit in 1 MiB on the wire)
MAX_PAYLOAD = 1 * MIB
MAX_MANIFEST = MAX_PAYLOAD
#: a handshake (Hello) frame
MAX_HELLO_FRAME = 64 * KIB

#: DHT
MAX_DHT_VALUE = 64 * KIB
DEFAULT_TTL = 24 * 3600
MAX_TTL = 7 * 24 * 3600
K = 20
ALPHA = 3

#: PEX
MAX_PEX_PEERS = 64
PEX_MAX_AGE = 24 * 3600

#: relay slot lifetime in seconds
RELAY_SLOT_LIFETIME = 600

#: default manifest lifetime set by a publisher (created_at + 30 days)
DEFAULT_MANIFEST_LIFETIME = 30 * 24 * 3600

#: CBOR nesting allowed when skipping unknown values (our own shapes nest far less)
MAX_NESTING = 32

#: sizes of fixed byte values
PUBKEY_LEN = 32
SIGNATURE_LEN = 64
NODE_ID_LEN = 20
ID_LEN = 32
NONCE_LEN = 32

U8_MAX = 0xFF
U16_MAX = 0xFFFF
U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF

#: transport and session defaults (scp2p.transport.TransportConfig), seconds unless named otherwise
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 300.0
KEEPALIVE_INTERVAL = 30.0
KEEPALIVE_TIMEOUT = 20.0
REQUEST_TIMEOUT = 30.0
#: requests we keep in flight on one session to a peer that proved it pipelines (our own nodes)
MAX_IN_FLIGHT = 64
#: requests a session serves concurrently before it stops reading (receive-side backpressure)
MAX_CONCURRENT_HANDLERS = 64
#: transport write-buffer high/low water marks (send-side backpressure)
WRITE_HIGH_WATER = 4 * MIB
WRITE_LOW_WATER = 1 * MIB
