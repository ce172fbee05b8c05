"""Metric series (``maintd_metric_points``): every numeric metric of every finished run,
as (task, target, metric, at, value), so reports and capacity planning read a series
with one index range scan instead of walking the runs' JSON.

A run's metrics are a nested dict; ``flatten`` turns them into dotted names: a dict key
adds a segment (``disks./var``), a list of dicts adds the item's identity (its ``name``,
``mount``, ``queryid`` or ``key``: ``tables.public.audit_logs.total_bytes``), booleans and
strings are not points. ``RunLog.finish`` writes the points with the run's end in the
same statement (``POINTS_CTE``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2.extensions

from workers.records.connection import ResultsDatabase

MAX_POINTS = 1000  # per run: a runaway metrics dict never floods the table
MAX_DEPTH = 5
IDENTITY_KEYS = ("name", "mount", "queryid", "key", "table", "path")


def _identity(item: Mapping[str, Any]) -> str | None:
    for key in IDENTITY_KEYS:
        value = item.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def flatten(metrics: Mapping[str, Any], limit: int = MAX_POINTS) -> dict[str, float]:
    """Numeric leaves of ``metrics`` by dotted path (at most ``limit``, finite values only)."""
    out: dict[str, float] = {}

    def walk(value: Any, path: str, depth: int) -> None:
        if len(out) >= limit or depth > MAX_DEPTH:
            return
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return
        if isinstance(value, int | float):
            if math.isfinite(float(value)) and path:
                out[path[:200]] = float(value)
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k), depth + 1)
            return
        if isinstance(value, list | tuple):
            for item in value:
                ident = _identity(item) if isinstance(item, Mapping) else None
                if ident is not None:
                    walk({k: v for k, v in item.items() if k not in IDENTITY_KEYS}, f"{path}.{ident}", depth + 1)

    walk(metrics, "", 0)
    return out


def points_params(metrics: Mapping[str, Any]) -> tuple[list[str], list[float]]:
    flat = flatten(metrics)
    return list(flat), list(flat.values())


# Appended to an ``UPDATE maintd_runs ... RETURNING id, task, target, finished_at`` named ``r``:
# the run's points go in with its end, one statement, one round trip.
POINTS_INSERT = (
    " INSERT INTO maintd_metric_points (task, target, metric, at, run_id, value)"
    " SELECT r.task, coalesce(r.target, ''), m.metric, r.finished_at, r.id, m.value"
    " FROM r CROSS JOIN unnest(%(metric_names)s::text[], %(metric_values)s::float8[]) AS m(metric, value)"
    " WHERE r.finished_at IS NOT NULL ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float


class MetricSeries:
    def __init__(self, db: ResultsDatabase) -> None:
        self.db = db

    def series(self, task: str, target: str | None, metric: str, since: datetime,
               until: datetime | None = None) -> list[Point]:
        """One series over [since, until), oldest first (an index range scan of the primary key)."""
        sql = ("SELECT at, value FROM maintd_metric_points WHERE task = %s AND target = %s AND metric = %s"
               " AND at >= %s AND at < coalesce(%s, 'infinity'::timestamptz) ORDER BY at")

        def do(cur: psycopg2.extensions.cursor) -> list[Point]:
            cur.execute(sql, (task, target or "", metric, since, until))
            return [Point(at, float(v)) for at, v in cur.fetchall()]

        return self.db.execute(do, transaction=False)

    def binned(self, task: str, target: str | None, metric: str, since: datetime, until: datetime,
               bins: int = 500) -> list[tuple[datetime, float, float, int]]:
        """One series over [since, until) in at most ``bins`` time buckets: (bucket start, lowest,
        mean, points) each, oldest first — a week of 5-second readings charts as 500 points."""
        width_s = max(1.0, (until - since).total_seconds() / bins)
        sql = ("SELECT %(since)s::timestamptz + make_interval(secs => floor(extract(epoch FROM at - %(since)s)"
               " / %(w)s) * %(w)s) AS bucket, min(value), avg(value),"
               " count(*) FROM maintd_metric_points WHERE task = %(task)s AND target = %(target)s"
               " AND metric = %(metric)s AND at >= %(since)s AND at < %(until)s GROUP BY 1 ORDER BY 1")

        def do(cur: psycopg2.extensions.cursor) -> list[tuple[datetime, float, float, int]]:
            cur.execute(sql, {"w": width_s, "task": task, "target": target or "", "metric": metric,
                              "since": since, "until": until})
            return [(b, float(lo), float(avg), int(n)) for b, lo, avg, n in cur.fetchall()]

        return self.db.execute(do, transaction=False)

    def names(self, task: str, since: datetime, like: str = "%") -> list[tuple[str, str]]:
        """The (target, metric) pairs of ``task`` with points since ``since`` matching ``like``."""
        sql = ("SELECT DISTINCT target, metric FROM maintd_metric_points WHERE task = %s AND at >= %s"
               " AND metric LIKE %s ORDER BY target, metric")

        def do(cur: psycopg2.extensions.cursor) -> list[tuple[str, str]]:
            cur.execute(sql, (task, since, like))
            return [(str(t), str(m)) for t, m in cur.fetchall()]

        return self.db.execute(do, transaction=False)

    def record(self, *, task: str, target: str | None, at: datetime, run_id: int, values: Mapping[str, float]) -> int:
        """Points written outside a run's finish (tests, imports); returns how many."""
        if not values:
            return 0

        def do(cur: psycopg2.extensions.cursor) -> int:
            cur.execute("INSERT INTO maintd_metric_points (task, target, metric, at, run_id, value)"
                        " SELECT %s, %s, m, %s, %s, v FROM unnest(%s::text[], %s::float8[]) AS x(m, v)"
                        " ON CONFLICT DO NOTHING",
                        (task, target or "", at, run_id, list(values), [float(v) for v in values.values()]))
            return int(cur.rowcount)

        return self.db.execute(do, transaction=False)

    def prune(self, cutoff: datetime, batch: int) -> int:
        """Delete up to ``batch`` points older than ``cutoff``, oldest first; returns how many."""
        def do(cur: psycopg2.extensions.cursor) -> int:
            cur.execute("DELETE FROM maintd_metric_points WHERE ctid = ANY(ARRAY(SELECT ctid FROM"
                        " maintd_metric_points WHERE at < %s ORDER BY at LIMIT %s))", (cutoff, batch))
            return int(cur.rowcount)

        return self.db.execute(do)

    def prunable(self, cutoff: datetime) -> int:
        def do(cur: psycopg2.extensions.cursor) -> int:
            cur.execute("SELECT count(*) FROM maintd_metric_points WHERE at < %s", (cutoff,))
            row = cur.fetchone()
            return int(row[0]) if row else 0

        return self.db.execute(do, transaction=False)
