"""Expand the maintenance matrix (``beat_schedule.py``) over configured targets (pure: the
Celery beat schedule built from it is in ``workers.app``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from croniter import croniter

import beat_schedule
from workers.catalog import effective_impact, load_catalog, resolve_target
from workers.config import Config
from workers.routing import queue_for


@dataclass(frozen=True)
class Entry:
    name: str
    task: str
    target: str | None
    cron: str
    queue: str
    impact: str
    expires_s: int

    def next_run(self, now: datetime | None = None) -> datetime:
        return next_fire(self.cron, now or datetime.now(timezone.utc))


@lru_cache(maxsize=256)
def next_fire(cron: str, base: datetime) -> datetime:
    """The first time ``cron`` fires after ``base`` (cached: a fleet's entries share a few crons)."""
    return croniter(cron, base).get_next(datetime)


@lru_cache(maxsize=256)
def firings(cron: str, start: datetime, end: datetime) -> tuple[datetime, ...]:
    """Every time ``cron`` fires in [start, end) (cached, as ``next_fire``)."""
    it = croniter(cron, start - timedelta(seconds=1))
    out = []
    while (at := it.get_next(datetime)) < end:
        out.append(at)
    return tuple(out)


def interval_s(cron: str, now: datetime | None = None) -> float:
    if now is None:
        return _reference_interval_s(cron)
    it = croniter(cron, now)
    first = it.get_next(datetime)
    return (it.get_next(datetime) - first).total_seconds()


@lru_cache(maxsize=1024)
def _reference_interval_s(cron: str) -> float:
    """The interval at a fixed Monday (croniter costs ~1 ms a call: the schedule has many entries)."""
    return interval_s(cron, datetime(2026, 1, 5, tzinfo=timezone.utc))


def expires_for(task: str, cron: str) -> int:
    if task in beat_schedule.EXPIRES_S:
        return beat_schedule.EXPIRES_S[task]
    return int(max(30, min(3600, interval_s(cron) * 0.8)))


def cron_for(config: Config, task: str, target: str | None) -> str | None:
    for key in (f"{task}[{target}]" if target else None, task):
        if key and key in config.schedule:
            return config.schedule[key]
    return beat_schedule.DEFAULT_CRON.get(task)


def missing_tasks() -> dict[str, str]:
    """Default crons (``beat_schedule.DEFAULT_CRON``) whose task is not in the catalog: task → cron.
    ``expand`` cannot schedule them; `maintd schedule` and `check-config` name each one."""
    known = load_catalog()
    return {task: cron for task, cron in sorted(beat_schedule.DEFAULT_CRON.items()) if task not in known}


def expand(config: Config) -> list[Entry]:
    entries = []
    for spec in sorted(load_catalog().values(), key=lambda s: s.name):
        if spec.ad_hoc_only:
            continue
        targets = [t.name for t in getattr(config, spec.target_kind)] if spec.target_kind else [None]
        for target in targets:
            cron = cron_for(config, spec.name, target)
            if cron is None or cron == "off":
                continue
            entries.append(Entry(
                name=f"{spec.name}[{target}]" if target else spec.name, task=spec.name, target=target, cron=cron,
                queue=queue_for(spec, target, config), impact=effective_impact(spec, config),
                expires_s=expires_for(spec.name, cron),
            ))
    return entries


@dataclass(frozen=True)
class Overlap:
    """Two entries whose runs, at their expected durations, want one target's lock at once."""

    scope: str  # what the lock is on (Target.lock_scope)
    first: str  # entry that starts first
    second: str  # entry that starts while the first still runs (it will wait, or be skipped ad hoc)
    first_at: datetime
    first_until: datetime
    second_at: datetime


def expected_duration_s(task: str, target: str | None, seen: Mapping[tuple[str, str | None], float]) -> float:
    """How long a run of ``task`` on ``target`` takes: as seen in history, else typical."""
    return seen.get((task, target)) or float(beat_schedule.TYPICAL_S.get(task, beat_schedule.TYPICAL_DEFAULT_S))


def overlaps(config: Config, entries: list[Entry], seen: Mapping[tuple[str, str | None], float] | None = None,
             start: datetime | None = None, days: int = 7) -> list[Overlap]:
    """Entries taking the same target's lock whose runs overlap within ``days`` from ``start``
    (default: next Monday 00:00 UTC), at the durations ``seen`` in history or typical ones.
    An entry that runs longer than its own interval overlaps itself. Pure."""
    specs = load_catalog()
    seen = seen or {}
    if start is None:
        today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
    end = start + timedelta(days=days)
    groups: dict[str, list[tuple[datetime, datetime, Entry]]] = {}
    for e in entries:
        spec = specs.get(e.task)
        if spec is None or not spec.locks or e.target is None:
            continue
        target = resolve_target(spec, e.target, config)
        if target is None:
            continue
        length = timedelta(seconds=expected_duration_s(e.task, e.target, seen))
        group = groups.setdefault(target.lock_scope, [])
        group.extend((at, at + length, e) for at in firings(e.cron, start, end))
    found: dict[tuple[str, str, str], Overlap] = {}
    for scope, runs in groups.items():
        runs.sort(key=lambda r: (r[0], r[2].name))
        active: list[tuple[datetime, datetime, Entry]] = []
        for at, until, e in runs:
            active = [a for a in active if a[1] > at]
            for a_at, a_until, a in active:
                key = (scope, a.name, e.name)
                if key not in found:
                    found[key] = Overlap(scope, a.name, e.name, a_at, a_until, at)
            active.append((at, until, e))
    return sorted(found.values(), key=lambda o: (o.scope, o.second_at, o.first))
