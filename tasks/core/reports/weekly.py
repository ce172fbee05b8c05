"""``reports.weekly``: what a person reads on Monday morning, gathered from the records.

Sections (the seeds' weekly health reports): availability per target, the health score over
the week, failures and what they were, maintenance done (with backups and the restore
test's RTO), the slowest queries with avg/p95 and the change against the week before, top
growth, open warnings, and the capacity forecast. ``gather`` reads (aggregates in the
database), ``render`` turns it into HTML and text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tasks.core.reports import capacity
from workers.config import Config
from workers.records import Records

WEEK = timedelta(days=7)
TOP_QUERIES = 10


@dataclass
class WeeklyData:
    since: datetime
    until: datetime
    host: str
    availability: list[dict[str, Any]] = field(default_factory=list)
    score: list[tuple[datetime, float, float, int]] = field(default_factory=list)  # (bucket, lowest, mean, n)
    failures: list[dict[str, Any]] = field(default_factory=list)
    maintenance: list[dict[str, Any]] = field(default_factory=list)
    work_totals: list[dict[str, Any]] = field(default_factory=list)
    backups: dict[str, Any] = field(default_factory=dict)
    queries: list[dict[str, Any]] = field(default_factory=list)
    growth: list[dict[str, Any]] = field(default_factory=list)
    open_findings: list[dict[str, Any]] = field(default_factory=list)
    capacity: list[capacity.Projection] = field(default_factory=list)

    @property
    def status(self) -> str:
        """critical: anything open critical or a capacity limit within a week; warning likewise."""
        statuses = [str(r["status"]) for r in self.open_findings] + [p.status for p in self.capacity]
        if any(s in ("critical", "failed") for s in statuses):
            return "critical"
        return "warning" if "warning" in statuses else "ok"


def availability(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        judged = int(r["good"]) + int(r["bad"])
        pct = 100.0 * int(r["good"]) / judged if judged else None
        out.append({**r, "percent": None if pct is None else round(pct, 3)})
    return sorted(out, key=lambda r: (r["percent"] if r["percent"] is not None else 101.0, r["task"], r["target"]))


def _queries(run: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not run or not isinstance(run.get("metrics"), dict):
        return {}
    return {str(q.get("queryid")): q for q in run["metrics"].get("by_mean", []) if isinstance(q, dict)}


def slowest(this_week: list[dict[str, Any]], last_week: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This week's slowest statements per target by mean, with last week's mean beside them."""
    before = {r["target"]: _queries(r) for r in last_week}
    out = []
    for run in this_week:
        old = before.get(run["target"], {})
        for qid, q in _queries(run).items():
            prev = old.get(qid)
            mean, prev_mean = float(q.get("mean_ms") or 0), (float(prev["mean_ms"]) if prev else None)
            change = None if not prev_mean else round(100.0 * (mean - prev_mean) / prev_mean, 1)
            out.append({"target": run["target"], "queryid": qid, "query": str(q.get("query", ""))[:160],
                        "calls": q.get("calls"), "mean_ms": mean, "p95_ms": q.get("p95_ms"),
                        "last_week_mean_ms": prev_mean, "change_percent": change})
    return sorted(out, key=lambda q: -q["mean_ms"])[:TOP_QUERIES]


def gather(book: Records, config: Config, since: datetime, until: datetime, host: str,
           charts: bool = True) -> WeeklyData:
    """Everything the report shows for [since, until)."""
    q = book.reports
    data = WeeklyData(since, until, host)
    data.availability = availability(q.availability(since, until))
    data.score = book.metrics.binned("health.overview", None, "score", since, until)
    data.failures = q.failures(since, until)
    data.maintenance = q.maintenance(since, until)
    data.work_totals = q.work_totals(since, until)
    data.backups = q.backups(since, until)
    data.queries = slowest(q.latest_in("postgres.slow_queries", since, until),
                           q.latest_in("postgres.slow_queries", since - (until - since), since))
    data.growth = q.growth(since, until)
    configured = {(t.kind, t.name) for t in config.all_targets()}
    data.open_findings = [
        {"task": r["task"], "target": r["target"] or "", "status": r["status"], "summary": r["summary"],
         "since": r["finished_at"] or r["started_at"]}
        for r in book.runs.latest()
        if r["status"] not in ("ok",) and (r["target"] is None or any(n == r["target"] for _, n in configured))
    ]
    data.capacity = capacity.assess(book, config, until, chart=charts)
    return data
