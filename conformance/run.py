"""Run the conformance pack from a source checkout: ``python conformance/run.py [VECTORS]``."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from scp2p.conformance import main

    sys.exit(main(sys.argv[1:]))
