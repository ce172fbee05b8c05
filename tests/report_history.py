"""Generated history for the report tests and bench/report.py: rows inserted straight into a
real results database (``maintd_runs`` and ``maintd_metric_points``), shaped like a deployment
of the seeds — health checks every 5 minutes with an outage, daily stats with growing sizes,
nightly maintenance and backups with one failure, slow queries this week and the week before.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import psycopg2.extensions
from psycopg2.extras import execute_values

CHECKS = (("health.postgres", "main"), ("health.redis", "cache"), ("health.http", "api"),
          ("health.sqlite", "assets"), ("health.host", "app1"))
GB = 1e9

CONFIG = """
[[postgres]]
name = "main"
dsn = "postgresql://u@127.0.0.1:1/x"
[[redis]]
name = "cache"
url = "redis://127.0.0.1:1/0"
[[http]]
name = "api"
url = "http://127.0.0.1:1/health"
[[sqlite]]
name = "assets"
path = "/nonexistent/assets.db"
host = "app1"
[[hosts]]
name = "app1"
"""

_COLUMNS = ("task_id", "task", "target", "status", "summary", "metrics", "actions", "dry_run", "impact", "host",
            "worker", "attempt", "error", "started_at", "finished_at", "duration_s")


def bulk_health(cur: psycopg2.extensions.cursor, since: datetime, until: datetime, every_s: float,
                outage: tuple[datetime, datetime]) -> int:
    """Every check every ``every_s`` seconds, critical for ``health.http`` during ``outage``,
    and health.overview with its score (a point per run). One statement per check."""
    n = 0
    for task, target in (*CHECKS, ("health.overview", None)):
        cur.execute(
            "WITH s AS (SELECT %(since)s::timestamptz + make_interval(secs => i * %(every)s) AS at"
            "  FROM generate_series(0, floor(extract(epoch FROM %(until)s::timestamptz - %(since)s) / %(every)s)::int - 1) i),"
            " r AS (INSERT INTO maintd_runs (task_id, task, target, status, summary, metrics, actions, impact, host,"
            "  worker, started_at, finished_at, duration_s, entry)"
            "  SELECT md5(%(task)s || at::text), %(task)s, %(target)s,"
            "   CASE WHEN at >= %(o0)s AND at < %(o1)s AND %(task)s IN ('health.http', 'health.overview')"
            "        THEN 'critical' ELSE 'ok' END,"
            "   CASE WHEN at >= %(o0)s AND at < %(o1)s AND %(task)s = 'health.http'"
            "        THEN 'HTTP unreachable: connection refused' ELSE 'fine' END,"
            "   jsonb_build_object('score', CASE WHEN at >= %(o0)s AND at < %(o1)s THEN 80 ELSE 100 END),"
            "   '[]', 'none', 'app1', 'w/1', at, at + interval '1 second', 1.0, %(task)s || '[' || coalesce(%(target)s, '') || ']'"
            "  FROM s RETURNING id, task, target, finished_at, metrics)"
            " INSERT INTO maintd_metric_points (task, target, metric, at, run_id, value)"
            " SELECT task, coalesce(target, ''), 'score', finished_at, id, (metrics->>'score')::float8 FROM r"
            " WHERE task = 'health.overview'",
            {"since": since, "until": until, "every": every_s, "task": task, "target": target,
             "o0": outage[0], "o1": outage[1]})
        cur.execute("SELECT count(*) FROM maintd_runs WHERE task = %s", (task,))
        row = cur.fetchone()
        n = int(row[0]) if row else n
    return n


def _run(task: str, target: str | None, at: datetime, status: str, summary: str, metrics: dict[str, Any],
         actions: list[str] | None = None, error: str | None = None, duration_s: float = 30.0) -> tuple[Any, ...]:
    return (f"{task}-{target}-{at.isoformat()}", task, target, status, summary, json.dumps(metrics),
            json.dumps(actions or []), False, "low", "db1", "w/1", 1, error, at, at + timedelta(seconds=duration_s),
            duration_s)


def daily(until: datetime, days: int = 60) -> list[tuple[Any, ...]]:
    """Daily stats (growing), maintenance, backups and slow queries for ``days`` days to ``until``."""
    out = []
    start = until - timedelta(days=days)
    for d in range(days):
        at = start + timedelta(days=d, hours=5)
        out.append(_run("postgres.stats", "main", at, "ok", "stats", {
            "database_bytes": 40 * GB + 0.5 * GB * d,
            "tables": [{"name": "public.audit_logs", "total_bytes": 10 * GB + 0.3 * GB * d},
                       {"name": "public.positions", "total_bytes": 2 * GB + 0.01 * GB * d}]}))
        out.append(_run("health.host", "app1", at, "ok", "host", {"disks": {"/": 40.0 + 0.75 * d, "/data": 30.0}}))
        out.append(_run("health.sqlite", "assets", at, "ok", "sqlite", {"size_bytes": 100e6 + 1e6 * d}))
        out.append(_run("health.redis", "cache", at, "ok", "redis", {"used_memory": 200e6, "memory_percent": 20.0}))
        out.append(_run("postgres.vacuum_bloated", "main", at - timedelta(hours=2), "ok", "vacuumed 2 tables",
                        {"reclaimed_bytes": 50e6}, ["VACUUM (ANALYZE) public.audit_logs", "VACUUM (ANALYZE) public.x"]))
        out.append(_run("postgres.retention", "main", at - timedelta(hours=2, minutes=30), "ok", "archived",
                        {"archived": 1000.0, "deleted": 1000.0}, ["archive 1000 rows of public.audit_logs"]))
        failed = d == days - 3
        out.append(_run("backup.postgres", "main", at - timedelta(hours=4, minutes=45), "failed" if failed else "ok",
                        "pg_dump failed" if failed else "backup taken", {"size_bytes": 5 * GB},
                        error="pg_dump: error: connection to server failed: Connection refused" if failed else None,
                        duration_s=600))
        out.append(_run("backup.verify", None, at - timedelta(hours=1), "ok", "verified", {"verified": 1}))
        if d % 7 == 0:
            out.append(_run("backup.restore_test", "main", at, "ok", "restored", {"restore_duration_s": 420.0},
                            duration_s=480))
        for week_ago in (0, 1):
            if d == days - 1 - 7 * week_ago:
                slow = 1.0 + 0.25 * (1 - week_ago)  # this week's is 25% slower
                out.append(_run("postgres.slow_queries", "main", at, "ok", "slow", {"by_mean": [
                    {"queryid": "11", "query": "SELECT * FROM positions WHERE portfolio_id = $1", "calls": 5000,
                     "mean_ms": 120.0 * slow, "p95_ms": 300.0 * slow},
                    {"queryid": "22", "query": "UPDATE audit_logs SET seen = $1", "calls": 40,
                     "mean_ms": 45.0, "p95_ms": 60.0}]}))
    return out


def insert_daily(cur: psycopg2.extensions.cursor, rows: list[tuple[Any, ...]]) -> int:
    """Insert rows and their metric points (as ``RunLog.finish`` would write them)."""
    from workers.records.metrics import flatten

    execute_values(cur, f"INSERT INTO maintd_runs ({', '.join(_COLUMNS)}) VALUES %s RETURNING id", rows,
                   page_size=1000)
    ids = [r[0] for r in cur.fetchall()]
    points = [(row[1], row[2] or "", name, row[14], run_id, value)
              for run_id, row in zip(ids, rows, strict=True) for name, value in flatten(json.loads(row[5])).items()]
    execute_values(cur, "INSERT INTO maintd_metric_points (task, target, metric, at, run_id, value) VALUES %s"
                        " ON CONFLICT DO NOTHING", points, page_size=2000)
    return len(rows)


def generate(book: Any, until: datetime, every_s: float = 300.0, health_days: int = 7) -> None:
    """A week (or ``health_days``) of health checks and 60 days of daily work, ending at ``until``."""
    since = until - timedelta(days=health_days)
    outage = (until - timedelta(days=3, hours=2), until - timedelta(days=3, hours=1))

    def do(cur: psycopg2.extensions.cursor) -> None:
        bulk_health(cur, since, until, every_s, outage)
        insert_daily(cur, daily(until))

    book.execute(do)
