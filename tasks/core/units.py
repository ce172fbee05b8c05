"""Numbers as a human reads them in summaries: sizes, durations, percentages."""

from __future__ import annotations

from datetime import timedelta


def percent(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def hours(delta: timedelta) -> str:
    """An age in hours, or days past 48 h: ``5.0h``, ``3.2d``."""
    h = delta.total_seconds() / 3600
    return f"{h:.1f}h" if h < 48 else f"{h / 24:.1f}d"
