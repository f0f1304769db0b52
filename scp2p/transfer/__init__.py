"""Content transfer: verified, resumable downloads from one or many providers, and the chunk server.

Sans-I/O cores: :class:`Scheduler` (which chunk from which provider, when),
:class:`PartFile` (temporary file, positioned writes, whole-file check, atomic
rename), the CHUNK_DATA fast path (:func:`chunk_slice`, :func:`chunk_data_header`).
asyncio drivers: :class:`ChunkServer` (GET_CHUNK / HAVE_CONTENT / PROVIDERS handlers),
:class:`Downloader` and :class:`ProviderDiscovery` (see docs/transfer.md).
"""

from .chunkdata import chunk_data_header, chunk_slice, parse_chunk_data
from .progress import Bandwidth, Progress, ProviderProgress, RateMeter
from .scheduler import Cancel, Request, Scheduler, SchedulerConfig, Verdict, chunk_sizes
from .server import BufferPool, ChunkServer, LocalContent, ProviderBook
from .writer import PartFile, part_path

__all__ = [
    "Bandwidth", "BufferPool", "Cancel", "ChunkServer", "LocalContent", "PartFile", "Progress",
    "ProviderBook", "ProviderProgress", "RateMeter", "Request", "Scheduler", "SchedulerConfig", "Verdict",
    "chunk_data_header", "chunk_sizes", "chunk_slice", "parse_chunk_data", "part_path",
]  # fmt: skip
