"""Expand the maintenance matrix (``beat_schedule.py``) over configured targets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from celery.schedules import crontab
from croniter import croniter

import beat_schedule
from workers.catalog import load_catalog
from workers.config_model import Config
from workers.routing import effective_impact, queue_for


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
        base = now or datetime.now(timezone.utc)
        return croniter(self.cron, base).get_next(datetime)


def interval_s(cron: str, now: datetime | None = None) -> float:
    it = croniter(cron, now or datetime(2026, 1, 5, tzinfo=timezone.utc))
    first = it.get_next(datetime)
    return (it.get_next(datetime) - first).total_seconds()


def expires_for(task: str, cron: str) -> int:
    if task in beat_schedule.EXPIRES_S:
        return beat_schedule.EXPIRES_S[task]
    return int(max(30, min(3600, interval_s(cron) * 0.8)))


def cron_for(config: Config, task: str, target: str | None) -> str | None:
    for key in (f"{task}[{target}]" if target else None, task):
        if key and key in config.schedule:
            return config.schedule[key]
    return beat_schedule.DEFAULT_CRON.get(task)


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


def celery_beat_schedule(config: Config) -> dict[str, dict[str, Any]]:
    out = {}
    for e in expand(config):
        minute, hour, dom, month, dow = e.cron.split()
        out[e.name] = {
            "task": e.task,
            "schedule": crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow),
            "args": (e.target,) if e.target else (),
            "options": {"expires": e.expires_s},
        }
    return out


def sweep(config: Config, prefix: str = "health.") -> list[str]:
    """Dispatch every scheduled entry whose task starts with ``prefix`` once, now."""
    from workers.app import app

    sent = []
    for e in expand(config):
        if e.task.startswith(prefix):
            # the overview folds the checks' outcomes: give them a head start
            delay = 15 if e.task == "health.overview" else 0
            app.tasks[e.task].apply_async((e.target,) if e.target else (), expires=e.expires_s + delay,
                                          countdown=delay or None)
            sent.append(e.name)
    return sent
