"""v0.1 wire format: records, messages, the CBOR codec twins, framing and JSON forms."""

from .codec import decode, encode, encode_signing
from .messages import *  # noqa: F401,F403
from .messages import __all__ as _messages_all
from .records import *  # noqa: F401,F403
from .records import __all__ as _records_all

__all__ = ["decode", "encode", "encode_signing", *_records_all, *_messages_all]
