"""``postgres.slow_queries``: top statements by mean and by total execution time from
``pg_stat_statements``. Without the extension the run is ``skipped`` with the exact
commands that enable it."""

from __future__ import annotations

import logging
from typing import Any

import psycopg2

from tasks.core.postgres.session import maintenance_session
from workers.config import PostgresTarget
from workers.doors import postgres as db
from workers.errors import SkippedError
from workers.records.outcome import Result, RunContext, grade

logger = logging.getLogger(__name__)

ENABLE = ("CREATE EXTENSION pg_stat_statements; (the server also needs"
          " shared_preload_libraries = 'pg_stat_statements' in postgresql.conf and a restart)")
PRELOAD = ("add shared_preload_libraries = 'pg_stat_statements' to postgresql.conf and restart"
           " the server (the extension is installed but not loaded)")
P95_SIGMAS = 1.645
TOP_SQL = """
SELECT queryid::text AS queryid, left(regexp_replace(query, '\\s+', ' ', 'g'), 300) AS query, calls,
       {total}::float8 AS total_ms, {mean}::float8 AS mean_ms, {stddev}::float8 AS stddev_ms, rows,
       100.0 * shared_blks_hit / nullif(shared_blks_hit + shared_blks_read, 0) AS hit_percent
FROM {schema}.pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT LIKE '%%pg_stat_statements%%'
ORDER BY {order} DESC LIMIT %(top)s
"""


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {"queryid": r["queryid"], "query": r["query"], "calls": int(r["calls"]),
            "total_ms": round(float(r["total_ms"]), 2), "mean_ms": round(float(r["mean_ms"]), 2),
            # pg_stat_statements keeps no percentiles: p95 estimated as mean + 1.645 σ (normal),
            # an upper-tail figure the weekly report compares week over week.
            "stddev_ms": round(float(r["stddev_ms"] or 0), 2),
            "p95_ms": round(float(r["mean_ms"]) + P95_SIGMAS * float(r["stddev_ms"] or 0), 2),
            "rows": int(r["rows"]), "hit_percent": None if r["hit_percent"] is None else round(float(r["hit_percent"]), 2)}


def slow_queries(run: RunContext, target: PostgresTarget) -> Result:
    """Top statements by mean and total time; skipped (with the fix) without pg_stat_statements."""
    with maintenance_session(target, run.task) as conn:
        ext = db.query(conn, "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
                             " WHERE e.extname = 'pg_stat_statements'")
        if not ext:
            raise SkippedError(f"pg_stat_statements is not installed in this database: run {ENABLE}")
        version = int(db.query(conn, "SELECT current_setting('server_version_num')::int AS v")[0]["v"])
        total, mean, stddev = (("total_exec_time", "mean_exec_time", "stddev_exec_time") if version >= 130000
                               else ("total_time", "mean_time", "stddev_time"))
        schema = psycopg2.extensions.quote_ident(ext[0]["nspname"], conn)
        out: dict[str, list[dict[str, Any]]] = {}
        try:
            for key, order in (("by_mean", mean), ("by_total", total)):
                sql_text = TOP_SQL.format(total=total, mean=mean, stddev=stddev, order=order, schema=schema)
                out[key] = [_row(r) for r in db.query(conn, sql_text, {"top": target.slow_queries_top})]
        except psycopg2.errors.ObjectNotInPrerequisiteState:
            raise SkippedError(f"pg_stat_statements cannot be read: {PRELOAD}") from None
    worst_mean = max((r["mean_ms"] for r in out["by_mean"]), default=None)
    status = grade(worst_mean, target.slow_query_mean_ms)
    metrics = {"top": target.slow_queries_top, "worst_mean_ms": worst_mean, **out}
    if worst_mean is None:
        return Result("ok", "no statements recorded yet", metrics)
    head = out["by_mean"][0]
    return Result(status, f"slowest mean {worst_mean:.1f} ms over {head['calls']} call(s): {head['query'][:120]}",
                  metrics)
