"""Maintenance windows: pure parsing and arithmetic, UTC.

Syntax (one window; a target may list several)::

    "Sun 01:00-05:00"          one day
    "Sat,Sun 00:00-06:00"      a list of days
    "Mon-Fri 22:00-02:00"      a day range; the end may pass midnight (ends next day)
    "daily 01:00-05:00"        every day (also "*")
    "always"                   no restriction

A window that starts on Friday 22:00 and ends 02:00 covers Saturday 00:00-02:00 too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


class WindowSyntaxError(ValueError):
    """A window string could not be parsed; the message says which part."""


def _parse_time(text: str, whole: str) -> time:
    m = _TIME.match(text)
    if not m:
        raise WindowSyntaxError(f"malformed window {whole!r}: time {text!r} is not HH:MM")
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour == 24 and minute == 0:
        return time(0, 0)
    if hour > 23 or minute > 59:
        raise WindowSyntaxError(f"malformed window {whole!r}: time {text!r} is out of range")
    return time(hour, minute)


def _parse_days(text: str, whole: str) -> frozenset[int]:
    low = text.lower()
    if low in ("daily", "*", "every"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in low.split(","):
        first, sep, last = part.partition("-")
        try:
            a = DAYS.index(first[:3]) if len(first) >= 3 and first[:3] in DAYS else -1
            b = DAYS.index(last[:3]) if sep and last[:3] in DAYS else a
        except ValueError:
            a = b = -1
        if a < 0 or b < 0 or (sep and not last):
            raise WindowSyntaxError(f"malformed window {whole!r}: unknown day {part!r} (use Mon..Sun, daily)")
        i = a
        while True:
            days.add(i)
            if i == b:
                break
            i = (i + 1) % 7
    return frozenset(days)


@dataclass(frozen=True)
class MaintenanceWindow:
    days: frozenset[int]  # weekday of the window's start, 0=Mon
    start: time
    end: time
    text: str

    @classmethod
    def parse(cls, text: str) -> MaintenanceWindow:
        whole = text.strip()
        if whole.lower() == "always":
            return cls(frozenset(range(7)), time(0, 0), time(0, 0), whole)
        parts = whole.split()
        if len(parts) != 2 or "-" not in parts[1]:
            raise WindowSyntaxError(f"malformed window {whole!r}: expected 'DAYS HH:MM-HH:MM', e.g. 'Sun 01:00-05:00'")
        days = _parse_days(parts[0], whole)
        start_s, _, end_s = parts[1].partition("-")
        return cls(days, _parse_time(start_s, whole), _parse_time(end_s, whole), whole)

    @property
    def length(self) -> timedelta:
        s = self.start.hour * 60 + self.start.minute
        e = self.end.hour * 60 + self.end.minute
        return timedelta(minutes=(e - s) % 1440 or 1440)

    def _opening_on(self, day: datetime) -> datetime:
        return day.replace(hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0)

    def contains(self, when: datetime) -> bool:
        when = when.astimezone(timezone.utc)
        for back in (0, 1):
            opening = self._opening_on(when - timedelta(days=back))
            if opening.weekday() in self.days and opening <= when < opening + self.length:
                return True
        return False

    def closes_at(self, when: datetime) -> datetime | None:
        """When the window that contains ``when`` closes (None if not inside)."""
        when = when.astimezone(timezone.utc)
        for back in (0, 1):
            opening = self._opening_on(when - timedelta(days=back))
            if opening.weekday() in self.days and opening <= when < opening + self.length:
                return opening + self.length
        return None

    def next_open(self, when: datetime) -> datetime:
        """``when`` itself if inside, else the next opening."""
        when = when.astimezone(timezone.utc)
        if self.contains(when):
            return when
        for ahead in range(0, 8):
            opening = self._opening_on(when + timedelta(days=ahead))
            if opening.weekday() in self.days and opening > when:
                return opening
        raise AssertionError("a window opens at least once a week")  # pragma: no cover


def parse_windows(value: str | list[str] | None) -> tuple[MaintenanceWindow, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    return tuple(MaintenanceWindow.parse(v) for v in items)


def inside_any(windows: tuple[MaintenanceWindow, ...], when: datetime) -> bool:
    """No windows configured means no restriction."""
    return not windows or any(w.contains(when) for w in windows)


def next_opening(windows: tuple[MaintenanceWindow, ...], when: datetime) -> datetime:
    return min(w.next_open(when) for w in windows) if windows else when
