"""``scp2p`` command line entry point."""

from __future__ import annotations

import argparse
import sys

from . import __version__, backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scp2p", description="SCP2P node and tools")
    parser.add_argument(
        "--version", action="store_true", help="print the version and the codec backend"
    )
    args = parser.parse_args(argv)
    if args.version:
        print(f"scp2p {__version__} ({backend()} backend, Python {sys.version.split()[0]})")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
