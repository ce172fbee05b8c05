"""``health.overview``: the latest outcome of every health check per configured target,
folded into one document in the shape of the runbooks' ``/monitoring/health``::

    {"overall_status": "healthy|degraded|unhealthy", "score": 0-100,
     "services": [{"service_name": "PostgreSQL (main)", "status": "healthy", ...}], ...}

Service status: ok → healthy, warning → degraded, critical or a failed run → unhealthy.
A result older than ``STALE_INTERVALS`` check intervals (from the effective schedule) is
*stale*: status ``unknown``, counted like a warning, because a check that stopped
reporting is itself a problem. A configured target with no run yet is ``unknown`` but
does not count (a fresh install is not degraded; the watchdog reports missed runs).
Results of targets no longer configured are ignored.

Score thresholds (``[health] score_warning``/``score_critical``): a score below one makes the
outcome at least that severe (002: < 95 warning, < 90 critical; 004: < 80).

Score: the mean over counted services of 100 (healthy), 50 (degraded or stale) and 0
(unhealthy); 100 when nothing is counted. Overall: unhealthy if any service is,
degraded if any is degraded or stale, else healthy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workers.config import Config
from workers.records.outcome import Result, worst
from workers.schedule import cron_for, interval_s

logger = logging.getLogger(__name__)

# task -> (target kind, service label)
CHECKS: dict[str, tuple[str, str]] = {
    "health.postgres": ("postgres", "PostgreSQL"),
    "health.redis": ("redis", "Redis"),
    "health.http": ("http", "HTTP"),
    "health.sqlite": ("sqlite", "SQLite"),
    "health.host": ("hosts", "Host"),
    "health.certificates": ("certificates", "Certificate"),
    "health.metric": ("metrics", "Metric"),
}
STALE_INTERVALS = 3
SERVICE_STATUS = {"ok": "healthy", "warning": "degraded", "critical": "unhealthy", "failed": "unhealthy"}
SCORE = {"healthy": 100.0, "degraded": 50.0, "unhealthy": 0.0, "stale": 50.0}
OVERALL_STATUS = {"healthy": "ok", "degraded": "warning", "unhealthy": "critical"}


@dataclass(frozen=True)
class ServiceState:
    task: str
    target: str
    service_name: str
    status: str  # healthy | degraded | unhealthy | unknown
    counted_as: str | None  # healthy | degraded | unhealthy | stale; None: not counted
    check_status: str | None
    summary: str
    checked_at: str | None
    age_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"service_name": self.service_name, "status": self.status, "task": self.task,
                "target": self.target, "check_status": self.check_status, "summary": self.summary,
                "checked_at": self.checked_at, "age_s": self.age_s,
                "stale": self.counted_as == "stale"}


def stale_after_s(config: Config, task: str, target: str) -> float | None:
    """``STALE_INTERVALS`` times the check's schedule interval; None when not scheduled."""
    cron = cron_for(config, task, target)
    if not cron or cron == "off":
        return None
    return STALE_INTERVALS * interval_s(cron)


def service_state(task: str, target: str, row: dict[str, Any] | None, config: Config, now: datetime) -> ServiceState:
    kind, label = CHECKS[task]
    name = f"{label} ({target})"
    if row is None:
        return ServiceState(task, target, name, "unknown", None, None, "no run yet", None, None)
    at: datetime = row.get("finished_at") or row["started_at"]
    age = round((now - at).total_seconds(), 1)
    check_status = str(row["status"])
    summary = str(row.get("summary") or "")
    limit = stale_after_s(config, task, target)
    if limit is not None and age > limit:
        return ServiceState(task, target, name, "unknown", "stale", check_status,
                            f"stale: last result {age / 60:.0f} min old (limit {limit / 60:.0f} min): {summary}",
                            at.isoformat(), age)
    status = SERVICE_STATUS.get(check_status, "unknown")
    counted = status if status != "unknown" else None
    return ServiceState(task, target, name, status, counted, check_status, summary, at.isoformat(), age)


def fold(rows: list[dict[str, Any]], config: Config, now: datetime) -> dict[str, Any]:
    """The health document from history rows (``latest_per_target``) and the config."""
    latest = {(r["task"], r["target"]): r for r in rows if r.get("task") in CHECKS}
    services = [
        service_state(task, target.name, latest.get((task, target.name)), config, now)
        for task, (kind, _) in CHECKS.items() for target in getattr(config, kind)
    ]
    counted = [s.counted_as for s in services if s.counted_as]
    score = round(sum(SCORE[c] for c in counted) / len(counted), 1) if counted else 100.0
    if "unhealthy" in counted:
        overall = "unhealthy"
    elif "degraded" in counted or "stale" in counted:
        overall = "degraded"
    else:
        overall = "healthy"
    counts = {k: sum(1 for s in services if s.status == k) for k in ("healthy", "degraded", "unhealthy", "unknown")}
    counts["stale"] = sum(1 for s in services if s.counted_as == "stale")
    doc: dict[str, Any] = {"overall_status": overall, "score": score, "checked_at": now.isoformat(),
                           "services": [s.as_dict() for s in services], "counts": counts}
    # The runbook document's host figures: the busiest host's, when hosts are checked.
    hosts = [latest[("health.host", t.name)] for t in config.hosts if ("health.host", t.name) in latest]
    for key, metric in (("cpu_usage_percent", "cpu_percent"), ("memory_usage_percent", "memory_percent"),
                        ("disk_usage_percent", "disk_percent")):
        values = [float(h["metrics"][metric]) for h in hosts
                  if isinstance(h.get("metrics"), dict) and h["metrics"].get(metric) is not None]
        if values:
            doc[key] = max(values)
    return doc


def check(rows: list[dict[str, Any]], config: Config, now: datetime) -> Result:
    """Fold the latest health results into the overall status and score."""
    doc = fold(rows, config, now)
    counts = doc["counts"]
    services = doc["services"]
    if not services:
        return Result("ok", "no health check targets configured", doc)
    worst_first = sorted((s for s in services if s["status"] in ("unhealthy", "degraded") or s["stale"]),
                         key=lambda s: (s["status"] != "unhealthy", s["service_name"]))
    parts = [f"{counts['healthy']} healthy", f"{counts['degraded']} degraded", f"{counts['unhealthy']} unhealthy"]
    if counts["unknown"]:
        parts.append(f"{counts['unknown']} unknown ({counts['stale']} stale)")
    summary = f"{doc['overall_status']}, score {doc['score']:g}: " + ", ".join(parts)
    if worst_first:
        shown = "; ".join(f"{s['service_name']}: {s['summary'][:120]}" for s in worst_first[:3])
        summary += f" — {shown}" + (f" (+{len(worst_first) - 3} more)" if len(worst_first) > 3 else "")
    status = OVERALL_STATUS[doc["overall_status"]]
    health = config.health
    for level, floor in (("critical", health.score_critical), ("warning", health.score_warning)):
        if floor is not None and doc["score"] < floor:
            doc["score_status"] = level
            summary += f"; score {doc['score']:g} below the {level} threshold {floor:g}"
            status = worst((status, level))
            break
    return Result(status, summary, doc)
