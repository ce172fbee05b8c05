"""``maintd run --wait``: a run's progress (task state ``PROGRESS``) as a bar on a terminal,
as plain lines otherwise. Written to stderr: stdout keeps only the Outcome JSON.

A small renderer of our own (no tqdm/rich among the dependencies, and one line is all it needs).
"""

from __future__ import annotations

import shutil
from typing import Any, TextIO

from workers.records.progress import amount, duration, line

BAR_WIDTH = 24


def bar(meta: dict[str, Any], columns: int = 80) -> str:
    """``retention: [#########...............]  38.0 %  1,200 of 3,150 rows  ETA 0m42s``."""
    unit = str(meta.get("unit") or "rows")
    pct = meta.get("pct")
    if pct is not None:
        full = int(BAR_WIDTH * min(100.0, float(pct)) / 100.0)
        gauge = f"[{'#' * full}{'.' * (BAR_WIDTH - full)}] {float(pct):5.1f} %"
    else:
        gauge = f"[{'?' * BAR_WIDTH}]   ? %"
    count = amount(meta.get("done"), unit)
    if meta.get("total") is not None:
        count += f" of {amount(meta.get('total'), unit)}"
    eta = f"  ETA {duration(meta['eta_s'])}" if meta.get("eta_s") is not None else ""
    tail = f" {gauge}  {count}{eta}"
    room = max(8, columns - 1 - len(tail))
    step = str(meta.get("step", ""))
    step = step if len(step) <= room else step[:room - 1] + "…"
    return f"{step}:{tail}"[:columns - 1]


class ProgressDisplay:
    """Called with each PROGRESS meta seen; ``close()`` once the run ended."""

    def __init__(self, stream: TextIO, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._last: dict[str, Any] | None = None
        self._drawn = 0

    def __call__(self, meta: dict[str, Any]) -> None:
        if meta == self._last:
            return
        self._last = dict(meta)
        if self.tty:
            text = bar(meta, shutil.get_terminal_size((80, 24)).columns)
            self.stream.write("\r" + text + " " * max(0, self._drawn - len(text)))
            self._drawn = len(text)
        else:
            self.stream.write(f"progress: {line(meta)}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0
