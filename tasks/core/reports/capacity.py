"""``reports.capacity``: where each growing thing is heading.

Per series the checks and stats already record (database and table sizes from
``postgres.stats``, disk use per mount from ``health.host``, Redis memory from
``health.redis``, SQLite file size from ``health.sqlite``, ``[[logs]]`` directory sizes from
``health.host``) over ``[reports] history_days``:
a robust trend (``trend``: Theil–Sen after the last level shift, with the fit's error),
the days until the configured limit, and the projection at 30 days and 6 months with a
95 % band (percentages clamped to 0–100, sizes to 0 and up). A limit projected within ``warning_days`` (30) is a warning, within
``critical_days`` (7) critical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tasks.core.reports import charts, trend
from tasks.core.units import human_bytes
from workers.config import Config
from workers.records import Records
from workers.records.outcome import Result, worst

DAY_S = 86400.0
HORIZONS = {"30d": 30.0, "6mo": 182.0}
TOP_TABLES = 5


@dataclass(frozen=True)
class SeriesKind:
    task: str
    like: str  # metric name pattern (SQL LIKE)
    label: str
    unit: str  # "bytes" or "%"
    limit: Callable[[Config], float | None]


KINDS = (
    SeriesKind("postgres.stats", "database_bytes", "database size", "bytes", lambda c: c.reports.database_bytes_limit),
    SeriesKind("postgres.stats", "tables.%.total_bytes", "table", "bytes", lambda c: None),
    SeriesKind("health.host", "disks.%", "disk used", "%", lambda c: c.reports.disk_percent_limit),
    SeriesKind("health.redis", "used_memory", "Redis memory", "bytes", lambda c: None),
    SeriesKind("health.redis", "memory_percent", "Redis memory of maxmemory", "%",
               lambda c: c.reports.redis_memory_percent_limit),
    SeriesKind("health.sqlite", "size_bytes", "SQLite file", "bytes", lambda c: c.reports.sqlite_bytes_limit),
    SeriesKind("health.host", "log_dirs.%", "log directory", "bytes", lambda c: c.reports.logs_bytes_limit),
)


def show(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return human_bytes(max(0.0, value)) if unit == "bytes" else f"{value:.1f}%"


@dataclass
class Projection:
    task: str
    target: str
    metric: str
    label: str
    unit: str
    limit: float | None
    points: int
    current: float
    slope_per_day: float
    sigma: float
    days_until_limit: float | None
    at: dict[str, float]
    band: dict[str, tuple[float, float]]
    shift_at: str | None
    status: str
    chart: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        what = self.metric.split(".", 1)[1].rsplit(".", 1)[0] if self.metric.startswith("tables.") else \
            self.metric.split(".", 1)[1] if self.metric.startswith(("disks.", "log_dirs.")) else ""
        return f"{self.label} {what} ({self.target})".replace("  ", " ") if what else f"{self.label} ({self.target})"

    def line(self) -> str:
        growth = f"{show(abs(self.slope_per_day), self.unit)}/day" + (" shrinking" if self.slope_per_day < 0 else "")
        when = ("limit not in sight" if self.days_until_limit is None or self.limit is None
                else f"limit {show(self.limit, self.unit)} in {self.days_until_limit:.0f} days")
        return (f"{self.name}: {show(self.current, self.unit)} now, {growth}, 30 d {show(self.at['30d'], self.unit)},"
                f" 6 mo {show(self.at['6mo'], self.unit)}, {when}")

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "target": self.target, "metric": self.metric, "name": self.name,
                "unit": self.unit, "limit": self.limit, "points": self.points, "current": self.current,
                "slope_per_day": self.slope_per_day, "fit_sigma": self.sigma,
                "days_until_limit": None if self.days_until_limit is None else round(self.days_until_limit, 1),
                "projected": self.at, "band": {k: list(v) for k, v in self.band.items()},
                "level_shift_at": self.shift_at, "status": self.status}


def status_for(days: float | None, config: Config) -> str:
    if days is None:
        return "ok"
    if days <= config.reports.critical_days:
        return "critical"
    if days <= config.reports.warning_days:
        return "warning"
    return "ok"


def project(kind: SeriesKind, target: str, metric: str, times: list[datetime], values: list[float],
            config: Config, chart: bool = True) -> Projection | None:
    """The projection of one series; None when it has too few points for a trend."""
    t0 = times[0]
    days = [(t - t0).total_seconds() / DAY_S for t in times]
    fit = trend.fit(days, values)
    if fit is None:
        return None
    limit = kind.limit(config)
    until = fit.days_until(limit) if limit is not None else None
    clamp = (lambda v: min(100.0, max(0.0, v))) if kind.unit == "%" else (lambda v: max(0.0, v))
    at = {h: clamp(fit.at(fit.last_x + d)) for h, d in HORIZONS.items()}
    band = {h: (clamp(fit.band(fit.last_x + d)[0]), clamp(fit.band(fit.last_x + d)[1])) for h, d in HORIZONS.items()}
    shift = (t0 + timedelta(days=fit.shift_at)).isoformat() if fit.shift_at is not None else None
    p = Projection(kind.task, target, metric, kind.label, kind.unit, limit, fit.points, fit.current,
                   fit.slope_per_day, fit.sigma, until, at, band, shift, status_for(until, config))
    if chart:
        last = times[-1]
        future = [last + timedelta(days=d) for d in range(0, int(HORIZONS["6mo"]) + 1, 7)]
        xs = [fit.last_x + (f - last).total_seconds() / DAY_S for f in future]
        scale = 1.0 / 1e9 if kind.unit == "bytes" else 1.0
        ylabel = "GB" if kind.unit == "bytes" else "%"
        bands = [fit.band(x) for x in xs]
        p.chart = charts.projection(p.name, times, [v * scale for v in values], future,
                                    [clamp(fit.at(x)) * scale for x in xs], [clamp(b[0]) * scale for b in bands],
                                    [clamp(b[1]) * scale for b in bands], None if limit is None else limit * scale, ylabel)
    return p


def assess(book: Records, config: Config, now: datetime, chart: bool = True) -> list[Projection]:
    """Every series the records hold, projected; the worst first."""
    since = now - timedelta(days=config.reports.history_days)
    out: list[Projection] = []
    for kind in KINDS:
        found: list[Projection] = []
        for target, metric in book.metrics.names(kind.task, since, kind.like):
            points = book.metrics.series(kind.task, target, metric, since, now)
            p = project(kind, target, metric, [x.at for x in points], [x.value for x in points], config,
                        chart=chart and not metric.startswith("tables."))
            if p is not None:
                found.append(p)
        if kind.like.startswith("tables."):  # only the largest tables, charted
            found = sorted(found, key=lambda p: -p.current)[:TOP_TABLES]
            if chart:
                for p in found:
                    points = book.metrics.series(p.task, p.target, p.metric, since, now)
                    found[found.index(p)] = project(kind, p.target, p.metric, [x.at for x in points],
                                                    [x.value for x in points], config) or p
        out.extend(found)
    rank = {"critical": 0, "warning": 1, "ok": 2}
    return sorted(out, key=lambda p: (rank[p.status], p.days_until_limit if p.days_until_limit is not None
                                      else float("inf"), p.name))


def result(projections: list[Projection], config: Config, report_path: str | None = None) -> Result:
    status = worst(p.status for p in projections)
    near = [p for p in projections if p.status != "ok"]
    if not projections:
        summary = "no series with enough history for a trend yet (postgres.stats, health.host/redis/sqlite)"
    elif near:
        summary = f"{len(near)} of {len(projections)} series reach their limit within" \
                  f" {config.reports.warning_days:g} days: " + "; ".join(p.line() for p in near[:3])
    else:
        summary = f"{len(projections)} series projected, none reaches its limit within {config.reports.warning_days:g} days"
    metrics: dict[str, Any] = {"series": [p.as_dict() for p in projections], "report": report_path}
    return Result(status, summary[:1000], metrics)
