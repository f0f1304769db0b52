"""``python -m scp2p`` / the ``scp2p`` command."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
