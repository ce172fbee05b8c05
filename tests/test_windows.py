"""Maintenance window arithmetic (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from workers.config.windows import (
    MaintenanceWindow,
    WindowSyntaxError,
    inside_any,
    next_opening,
    parse_windows,
)


def utc(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)


# 2026-11-22 is a Sunday.
@pytest.mark.parametrize(
    ("window", "when", "inside"),
    [
        ("Sun 01:00-05:00", "2026-11-22T01:00", True),
        ("Sun 01:00-05:00", "2026-11-22T04:59", True),
        ("Sun 01:00-05:00", "2026-11-22T05:00", False),
        ("Sun 01:00-05:00", "2026-11-22T00:59", False),
        ("Sun 01:00-05:00", "2026-11-23T02:00", False),  # Monday
        ("Sat 22:00-02:00", "2026-11-22T01:30", True),  # crosses midnight into Sunday
        ("Sat 22:00-02:00", "2026-11-22T02:00", False),
        ("Mon-Fri 22:00-04:00", "2026-11-22T03:00", False),  # Sat 22:00 is not a start day
        ("Mon-Fri 22:00-04:00", "2026-11-21T03:00", True),  # Saturday 03:00 ends Friday's window
        ("Fri-Mon 00:00-01:00", "2026-11-22T00:30", True),  # wrapping day range
        ("Sat,Sun 00:00-06:00", "2026-11-22T05:59", True),
        ("daily 01:00-05:00", "2026-11-25T03:00", True),
        ("always", "2026-11-25T13:37", True),
        ("Sun 00:00-24:00", "2026-11-22T23:59", True),
    ],
)
def test_contains(window: str, when: str, inside: bool) -> None:
    assert MaintenanceWindow.parse(window).contains(utc(when)) is inside


@pytest.mark.parametrize(
    ("window", "when", "opens"),
    [
        ("Sun 01:00-05:00", "2026-11-22T06:00", "2026-11-29T01:00"),
        ("Sun 01:00-05:00", "2026-11-21T12:00", "2026-11-22T01:00"),
        ("daily 01:00-05:00", "2026-11-22T06:00", "2026-11-23T01:00"),
        ("Sun 01:00-05:00", "2026-11-22T02:00", "2026-11-22T02:00"),  # inside: now
    ],
)
def test_next_open(window: str, when: str, opens: str) -> None:
    assert MaintenanceWindow.parse(window).next_open(utc(when)) == utc(opens)


def test_several_windows_and_none() -> None:
    ws = parse_windows(["Sat 01:00-02:00", "Sun 03:00-04:00"])
    assert inside_any(ws, utc("2026-11-22T03:30"))
    assert not inside_any(ws, utc("2026-11-22T02:30"))
    assert next_opening(ws, utc("2026-11-22T02:30")) == utc("2026-11-22T03:00")
    assert inside_any((), utc("2026-11-22T02:30"))  # no window: no restriction


@pytest.mark.parametrize("bad", ["Sun", "Sun 1-5", "Sun 01:00-25:00", "Xyz 01:00-02:00", "Sun 01:00 05:00", "Mon- 01:00-02:00"])
def test_malformed(bad: str) -> None:
    with pytest.raises(WindowSyntaxError, match="malformed window"):
        MaintenanceWindow.parse(bad)
