"""The five findings of the watchdog, as pure functions over an entry, its newest runs and
``now`` (tested with tables of cases; no clock is read here).

- **missed**: the newest slot whose beat message has expired (plus ``grace``) has no run.
- **late**: the first run of the newest slot started more than ``late_after`` after it.
- **stuck**: the newest run of a (task, target) is still ``running`` past its hard time
  limit + ``stuck_grace`` (its worker died without recording the end), or Celery killed it
  at its hard time limit.
- **failing**: the newest ``failing_after`` finished runs all failed (or were lost).
- **too_short**: the newest ok run took under ``too_short_ratio`` × the median duration of
  the earlier ok runs (a backup of a 1 GB database done in 2 s).

A slot counts only from when the watchdog first saw the entry with its current cron
(``first_seen``): an entry added or re-timed today is never "missed" for yesterday.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from croniter import croniter

from tasks.core.units import human_seconds
from workers.config import WatchdogSection
from workers.records.watch import HARD_LIMIT_PREFIX, SOFT_LIMIT_PREFIX
from workers.schedule import interval_s

GOOD = ("ok", "warning")  # the run did its job (what "last good run" means)
FAILED = ("failed", "lost")
NOT_FINISHED = ("running", "retrying")
NOT_DONE = ("running", "retrying", "skipped", "deferred")  # said nothing about success or failure
MAX_SLOTS_COUNTED = 1000


@dataclass(frozen=True)
class Watched:
    """One scheduled entry as the watchdog sees it."""

    entry: str  # "task[target]" or "task"
    task: str
    target: str | None
    cron: str
    expires_s: int
    first_seen: datetime


@dataclass(frozen=True)
class Finding:
    kind: str  # missed | late | stuck | failing | too_short
    entry: str
    task: str
    target: str | None
    severity: str
    summary: str
    run_id: int | None = None
    last_good: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """The alert-state key of this finding: one occurrence per (kind, entry)."""
        return f"{self.kind}:{self.entry}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "entry": self.entry, "task": self.task, "target": self.target,
                "severity": self.severity, "summary": self.summary, "run_id": self.run_id,
                "last_good": self.last_good}


def entry_name(task: str, target: str | None) -> str:
    return f"{task}[{target}]" if target else task


@lru_cache(maxsize=8192)
def slot_at_or_before(cron: str, t: datetime) -> datetime:
    """Cached: entries of many targets share a cron and the watchdog's ``now`` (croniter
    costs about a millisecond a call)."""
    result: datetime = croniter(cron, t + timedelta(seconds=1)).get_prev(datetime)
    return result


def interval_at(cron: str, t: datetime) -> float:
    """Seconds between the slot at or before ``t`` and the next one."""
    slot = slot_at_or_before(cron, t)
    return _interval_from(cron, slot)


@lru_cache(maxsize=8192)
def _interval_from(cron: str, slot: datetime) -> float:
    nxt: datetime = croniter(cron, slot).get_next(datetime)
    return (nxt - slot).total_seconds()


def skew_s(interval_s: float) -> float:
    """How early a run may start and still belong to a slot (clocks of hosts differ a little)."""
    return min(60.0, interval_s / 4)


def _when(t: datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S}Z" if t else "-"


def last_good(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    for r in runs:
        if r["status"] in GOOD:
            return {"id": r["id"], "started_at": r["started_at"].isoformat(), "status": r["status"],
                    "duration_s": r["duration_s"]}
    return None


def last_good_text(runs: list[dict[str, Any]]) -> str:
    for r in runs:
        if r["status"] in GOOD:
            took = f", {r['duration_s']:.1f}s" if r["duration_s"] is not None else ""
            return f"last good run {_when(r['started_at'])} (run {r['id']}, {r['status']}{took})"
    return "no good run on record"


def missed(w: Watched, runs: list[dict[str, Any]], now: datetime, policy: WatchdogSection) -> Finding | None:
    """The newest slot whose message expired ``grace`` ago has no run that started for it."""
    due = slot_at_or_before(w.cron, now - timedelta(seconds=w.expires_s + policy.grace_s))
    if due < w.first_seen:
        return None
    skew = skew_s(interval_at(w.cron, due))
    newest = runs[0] if runs else None
    if newest is not None and newest["started_at"] >= due - timedelta(seconds=skew):
        return None
    since = max(w.first_seen, newest["started_at"] + timedelta(seconds=skew)) if newest else w.first_seen
    count, it = 0, croniter(w.cron, since - timedelta(seconds=1))
    while count < MAX_SLOTS_COUNTED:
        slot: datetime = it.get_next(datetime)
        if slot > due:
            break
        count += 1
    count = max(count, 1)
    last = f"newest run {_when(newest['started_at'])} ({newest['status']})" if newest else "no run on record"
    summary = (f"{w.entry} missed its {_when(due)} run (cron '{w.cron}'"
               f"{f', {count} slots in a row' if count > 1 else ''}): {last}; {last_good_text(runs)}")
    return Finding("missed", w.entry, w.task, w.target, policy.severity.missed, summary,
                   last_good=last_good(runs))


def late(w: Watched, runs: list[dict[str, Any]], policy: WatchdogSection) -> Finding | None:
    """The first run of the newest slot that has runs started more than ``late_after`` after it."""
    if not runs:
        return None
    interval = interval_s(w.cron)
    skew = skew_s(interval)
    slot = slot_at_or_before(w.cron, runs[0]["started_at"] + timedelta(seconds=skew))
    if slot < w.first_seen:
        return None  # ran before the watchdog knew this entry's current cron
    first = min((r for r in runs if r["started_at"] >= slot - timedelta(seconds=skew)),
                key=lambda r: (r["started_at"], r["id"]))
    lateness = (first["started_at"] - slot).total_seconds()
    limit = policy.late_after_s(interval)
    if lateness <= limit:
        return None
    summary = (f"{w.entry} started {human_seconds(lateness)} after its {_when(slot)} slot (run {first['id']}, "
               f"late after {human_seconds(limit)}; cron '{w.cron}'): queue backlog or no worker for its queue; "
               f"{last_good_text(runs)}")
    return Finding("late", w.entry, w.task, w.target, policy.severity.late, summary, run_id=first["id"],
                   last_good=last_good(runs))


def failing(w: Watched, runs: list[dict[str, Any]], policy: WatchdogSection) -> Finding | None:
    """The newest ``failing_after`` finished runs all failed."""
    done = [r for r in runs if r["status"] not in NOT_DONE]
    streak = 0
    for r in done:
        if r["status"] not in FAILED:
            break
        streak += 1
    if streak < policy.failing_after:
        return None
    newest, oldest = done[0], done[streak - 1]
    more = "+" if streak == len(done) else ""
    error = (newest["error"] or newest["summary"] or "").strip()[:200]
    summary = (f"{w.entry} failed {streak}{more} times in a row since {_when(oldest['started_at'])}"
               f" (last: {error or newest['status']}); {last_good_text(runs)}")
    return Finding("failing", w.entry, w.task, w.target, policy.severity.failing, summary,
                   run_id=newest["id"], last_good=last_good(runs))


def too_short(w: Watched, runs: list[dict[str, Any]], policy: WatchdogSection,
              baseline_runs: int = 20) -> Finding | None:
    """The newest ok run took under ``too_short_ratio`` × the median of the earlier ok runs."""
    if not policy.too_short_applies(w.task):
        return None
    done = [r for r in runs if r["status"] in GOOD and r["duration_s"] is not None]
    if len(done) < policy.too_short_min_runs + 1:
        return None
    newest, earlier = done[0], [float(r["duration_s"]) for r in done[1:1 + baseline_runs]]
    median = statistics.median(earlier)
    if median < policy.too_short_min_median_s or newest["duration_s"] >= median * policy.too_short_ratio:
        return None
    normal = next((r for r in done[1:] if r["duration_s"] >= median * policy.too_short_ratio), None)
    good = (f"last good run {_when(normal['started_at'])} (run {normal['id']}, {normal['duration_s']:.1f}s)"
            if normal else "no earlier run of normal length")
    summary = (f"{w.entry} finished in {newest['duration_s']:.1f}s (run {newest['id']}, {_when(newest['started_at'])}),"
               f" under {policy.too_short_ratio:g} x its usual {median:.1f}s (median of {len(earlier)} earlier ok runs):"
               f" check it did its work; {good}")
    lg = ({"id": normal["id"], "started_at": normal["started_at"].isoformat(), "status": normal["status"],
           "duration_s": normal["duration_s"]} if normal else None)
    return Finding("too_short", w.entry, w.task, w.target, policy.severity.too_short, summary,
                   run_id=newest["id"], last_good=lg)


def stuck(row: dict[str, Any], hard_limit_s: float, now: datetime, policy: WatchdogSection,
          history: list[dict[str, Any]] | None = None) -> Finding | None:
    """``row`` (the newest run of its task and target) ran into its hard time limit."""
    entry = entry_name(row["task"], row["target"])
    history = history or []
    if row["status"] == "running":
        age = (now - row["started_at"]).total_seconds()
        if age <= hard_limit_s + policy.stuck_grace_s:
            return None
        what = (f"still 'running' {human_seconds(age)} after it started at {_when(row['started_at'])}, past its"
                f" hard time limit of {human_seconds(hard_limit_s)}: its worker ({row['worker']}) died without"
                f" recording the end")
    elif (row["error"] or "").startswith(HARD_LIMIT_PREFIX) or (
            (row["error"] or "").startswith(SOFT_LIMIT_PREFIX) and (row["duration_s"] or 0) >= hard_limit_s):
        what = (f"was killed at its hard time limit of {human_seconds(hard_limit_s)} (started"
                f" {_when(row['started_at'])} on {row['worker']}): it hung or its limit is too low")
    else:
        return None
    summary = f"{entry} run {row['id']} {what}; {last_good_text(history)}"
    return Finding("stuck", entry, row["task"], row["target"], policy.severity.stuck, summary, run_id=row["id"],
                   last_good=last_good(history))
