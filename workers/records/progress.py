"""Progress of a run, without Celery: ``RunContext.progress(step, done, total, unit)`` (or
``workers.records.outcome.progress`` where code is not handed the run) keeps the latest
figures, computes the rate and ETA, and hands them to a publisher at most once a second.

The Celery wiring (``workers.taskdef``) publishes them as the task state ``PROGRESS`` with
meta ``{step, done, total, unit, eta_s, pct}``; outside a worker nothing is published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

STATE = "PROGRESS"
UNITS = ("rows", "bytes", "tables", "indexes", "objects", "files", "seconds")

Publisher = Callable[[dict[str, Any]], None]


class ProgressMeter:
    """Latest progress of one run; publishes at most once per ``interval_s``.

    The ETA comes from the rate since the current measure began: a measure is a (unit, total)
    pair, so a step may name the object at hand ("reindex public.orders_pkey") while the count
    of objects and its ETA go on; a new unit or total (or ``done`` going back) starts afresh.
    """

    def __init__(self, publish: Publisher | None = None, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.publish = publish
        self.interval_s = interval_s
        self._clock = clock
        self._sent_at: float | None = None
        self._measure: tuple[str, float | None] | None = None
        self._origin: tuple[float, float] = (0.0, 0.0)  # (time, done) when the measure began
        self.last: dict[str, Any] | None = None
        self._warned = False

    def report(self, step: str, done: float | None = None, total: float | None = None,
               unit: str = "rows") -> dict[str, Any] | None:
        """Record the progress; returns the meta when it was published (None: throttled or no publisher)."""
        if unit not in UNITS:
            raise ValueError(f"progress unit {unit!r}: expected one of {', '.join(UNITS)}")
        if total is not None and total < 0 or done is not None and done < 0:
            raise ValueError(f"progress of {step!r}: done and total must not be negative")
        now = self._clock()
        measure = (unit, total)
        if measure != self._measure or done is None or done < self._origin[1]:
            self._measure = measure
            self._origin = (now, float(done or 0))
        self.last = {"step": str(step), "done": done, "total": total, "unit": unit,
                     "eta_s": self._eta(now, done, total), "pct": percent(done, total)}
        if self.publish is None or (self._sent_at is not None and now - self._sent_at < self.interval_s):
            return None
        self._sent_at = now
        try:
            self.publish(dict(self.last))
        except Exception as exc:  # noqa: BLE001 - progress is a courtesy: it never fails the run
            if not self._warned:
                logger.warning("could not publish progress (%s); the run goes on", exc)
                self._warned = True
            return None
        return self.last

    def _eta(self, now: float, done: float | None, total: float | None) -> float | None:
        if done is None or total is None:
            return None
        if done >= total:
            return 0.0
        t0, done0 = self._origin
        elapsed, moved = now - t0, done - done0
        if elapsed <= 0 or moved <= 0:
            return None
        return round((total - done) * elapsed / moved, 1)


def percent(done: float | None, total: float | None) -> float | None:
    if done is None or not total:
        return None
    return round(100.0 * min(done, total) / total, 1)


def amount(value: float | None, unit: str) -> str:
    """``1.2 GB``, ``3,400 rows``; ``?`` when unknown."""
    if value is None:
        return "?"
    if unit == "bytes":
        size = float(value)
        for suffix in ("B", "KB", "MB", "GB", "TB"):
            if size < 1024 or suffix == "TB":
                return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
            size /= 1024
    return f"{value:,.0f} {unit}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def line(meta: dict[str, Any]) -> str:
    """One line of text for a progress meta: ``dump: 1.2 GB of 3.0 GB (40.0 %), ETA 2m10s``."""
    unit = str(meta.get("unit") or "rows")
    done, total = meta.get("done"), meta.get("total")
    text = f"{meta.get('step', '?')}"
    if done is not None:
        text += f": {amount(done, unit)}"
        if total is not None:
            text += f" of {amount(total, unit)}"
    if meta.get("pct") is not None:
        text += f" ({meta['pct']:.1f} %)"
    if meta.get("eta_s") is not None:
        text += f", ETA {duration(meta['eta_s'])}"
    return text
