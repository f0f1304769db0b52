"""The conformance pack runner: ``python -m scp2p.conformance [VECTORS]``."""

from .runner import FORMAT, SectionResult, default_vectors_path, load, run

__all__ = ["FORMAT", "SectionResult", "default_vectors_path", "load", "main", "run"]


def main(argv: list[str] | None = None) -> int:
    from .__main__ import main as _main

    return _main(argv)
