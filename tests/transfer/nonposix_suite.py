"""Runs pytest (argv: pytest arguments) in a process whose ``os`` lacks what Windows' lacks -
``preadv``/``pwritev``/``pread``/``pwrite``, ``posix_fallocate``, ``O_DIRECT``, ``fdatasync`` -
and with the TCP driver's ``sendmsg`` path off, all before scp2p is imported: the data path then
runs on the ``"seek"`` fallback of :mod:`scp2p.transport.pio` throughout.

    python tests/transfer/nonposix_suite.py tests/transfer tests/transport
"""

from __future__ import annotations

import os
import sys

for _name in ("preadv", "pwritev", "pread", "pwrite", "posix_fallocate", "O_DIRECT", "fdatasync"):
    if hasattr(os, _name):
        delattr(os, _name)

import pytest  # noqa: E402

from scp2p.transport import pio, tcp  # noqa: E402

assert pio.KIND == "seek" and not pio.O_DIRECT, pio.KIND
tcp.VECTORED_SEND = False
# the one test that asserts what this platform really has
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider",
                      "--deselect", "tests/transfer/test_transfer_portability.py::test_selection_by_available_names",
                      *sys.argv[1:]]))  # fmt: skip
