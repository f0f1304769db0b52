"""Command output: human text or ``--json``, and progress bars on terminals."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class Output:
    def __init__(self, json_mode: bool, stream: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.json = json_mode
        self.stream = stream
        self.err = err

    def data(self, obj: Any, human: str | None = None) -> None:
        """Print a result: ``obj`` as JSON in --json mode, else ``human`` (or a simple rendering)."""
        if self.json:
            json.dump(obj, self.stream, indent=None, sort_keys=False, default=_default)
            self.stream.write("\n")
        else:
            self.stream.write((human if human is not None else _render(obj)) + "\n")
        self.stream.flush()

    def table(self, rows: list[dict], columns: list[tuple[str, str]], empty: str = "(none)") -> None:
        """``rows`` as JSON, or as an aligned table of ``columns`` = [(key, header), ...]."""
        if self.json:
            self.data(rows)
            return
        if not rows:
            self.data(rows, empty)
            return
        cells = [[_cell(r.get(k)) for k, _ in columns] for r in rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
        lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths)).rstrip()]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        self.data(rows, "\n".join(lines))

    def error(self, message: str) -> None:
        if self.json:
            json.dump({"error": message}, self.stream)
            self.stream.write("\n")
            self.stream.flush()
        else:
            self.err.write(f"error: {message}\n")
            self.err.flush()

    def progress(self, label: str, total: int | None, unit: str = "") -> "Progress":
        return Progress(label, total, unit, self.err if (self.err.isatty() and not self.json) else None)


class Progress:
    """A one-line progress bar on a terminal (nothing when not a TTY or in --json mode)."""

    def __init__(self, label: str, total: int | None, unit: str, stream: TextIO | None) -> None:
        self.label, self.total, self.unit, self.stream = label, total, unit, stream
        self._last = 0.0
        self._start = time.monotonic()

    def update(self, done: int, total: int | None = None, extra: str = "") -> None:
        if self.stream is None:
            return
        if total is not None:
            self.total = total
        now = time.monotonic()
        if now - self._last < 0.1 and (self.total is None or done < self.total):
            return
        self._last = now
        if self.total:
            frac = min(1.0, done / self.total)
            bar = "#" * int(frac * 30)
            line = f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% {done}/{self.total}{self.unit} {extra}"
        else:
            line = f"\r{self.label} {done}{self.unit} {extra}"
        self.stream.write(line[:120].ljust(80))
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()


def _default(o: Any) -> Any:
    if isinstance(o, bytes):
        return o.hex()
    if hasattr(o, "value"):
        return o.value
    return str(o)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, float):
        return f"{v:g}"
    return str(getattr(v, "value", v))


def _render(obj: Any) -> str:
    if isinstance(obj, dict):
        width = max((len(k) for k in obj), default=0)
        return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in obj.items())
    return _cell(obj)
