"""``postgres.stats``: sizes, connections, cache hit ratio and transaction ID age, written
to history (metrics) for capacity planning. ``postgres.stats_reset`` (opt-in, monthly)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from tasks.core.postgres import steps
from tasks.core.postgres.session import maintenance_session, render
from workers.config import PostgresTarget
from workers.doors import postgres as db
from workers.doors.pg_activity import CONNECTIONS_SQL, DATABASE_SQL
from workers.records.outcome import Result, RunContext, grade, worst

logger = logging.getLogger(__name__)

WRAPAROUND = 2**31
TOP = 20
TABLES_SQL = """
SELECT n.nspname || '.' || c.relname AS name, pg_total_relation_size(c.oid) AS total_bytes,
       pg_relation_size(c.oid) AS table_bytes, pg_indexes_size(c.oid) AS index_bytes, c.reltuples::float8 AS rows
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%'
ORDER BY total_bytes DESC LIMIT %(top)s
"""
INDEXES_SQL = """
SELECT s.schemaname || '.' || s.indexrelname AS name, s.schemaname || '.' || s.relname AS table_name,
       pg_relation_size(s.indexrelid) AS bytes, s.idx_scan
FROM pg_stat_user_indexes s ORDER BY bytes DESC LIMIT %(top)s
"""


def stats(run: RunContext, target: PostgresTarget) -> Result:
    """Database, table and index sizes, connections, cache hit ratio and XID age."""
    with maintenance_session(target, run.task) as conn:
        base = db.query(conn, DATABASE_SQL)[0]
        tables = db.query(conn, TABLES_SQL, {"top": TOP})
        indexes = db.query(conn, INDEXES_SQL, {"top": TOP})
        states = {r["state"]: int(r["n"]) for r in db.query(conn, CONNECTIONS_SQL)}
    thresholds = run.config.thresholds
    hit = base["cache_hit_ratio"]
    conn_pct = 100.0 * int(base["client_connections"]) / max(int(base["max_connections"]), 1)
    xid_pct = 100.0 * int(base["cluster_xid_age"]) / WRAPAROUND
    grades = {"cache_hit_ratio": grade(hit, thresholds.pg_cache_hit_ratio, lower_is_worse=True),
              "connections_percent": grade(conn_pct, thresholds.pg_connections_percent),
              "xid_age_percent": grade(xid_pct, target.xid_age_percent)}
    metrics: dict[str, Any] = {
        "database_bytes": int(base["database_bytes"]),
        "cache_hit_ratio": None if hit is None else round(float(hit), 5),
        "connections": states, "client_connections": int(base["client_connections"]),
        "max_connections": int(base["max_connections"]), "connections_percent": round(conn_pct, 1),
        "xid_age": int(base["xid_age"]), "cluster_xid_age": int(base["cluster_xid_age"]),
        "xid_age_percent": round(xid_pct, 2),
        "tables": [{k: (float(v) if k == "rows" else v) for k, v in t.items()} for t in tables],
        "indexes": indexes, "grades": grades,
    }
    status = worst(grades.values())
    bad = [f"{k} {metrics[k]}" for k, g in grades.items() if g != "ok"]
    summary = (f"database {metrics['database_bytes'] / 1048576:.1f} MB, {metrics['client_connections']}/"
               f"{metrics['max_connections']} connections, cache hit "
               f"{'n/a' if hit is None else f'{float(hit):.3f}'}, XID age {xid_pct:.1f}% of wraparound")
    if bad:
        summary += "; over thresholds: " + ", ".join(bad)
    return Result(status, summary, metrics)


def _has_statements(conn: psycopg2.extensions.connection) -> str | None:
    rows = db.query(conn, "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
                          " WHERE e.extname = 'pg_stat_statements'")
    return str(rows[0]["nspname"]) if rows else None


def stats_reset(run: RunContext, target: PostgresTarget, all_counters: bool = False) -> Result:
    """Reset pg_stat_statements; with ``all_counters`` also this database's statistics
    (then ANALYZE, so autovacuum gets its live/dead tuple estimates back)."""
    budget = run.budget()
    with maintenance_session(target, run.task) as conn:
        plan: list[sql.Composable] = []
        schema = _has_statements(conn)
        if schema:
            plan.append(sql.SQL("SELECT {}.pg_stat_statements_reset()").format(sql.Identifier(schema)))
        if all_counters:
            plan += [sql.SQL("SELECT pg_stat_reset()"), sql.SQL("ANALYZE")]
        if not plan:
            return Result("skipped", "nothing to reset: pg_stat_statements is not installed"
                                     " (pass all_counters=true to reset this database's statistics)")
        if run.dry_run:
            return Result("ok", f"plan: {len(plan)} statement(s)", {"planned": len(plan)},
                          [render(conn, s) for s in plan])
        tally = steps.Tally("ran", planned=len(plan))
        for i, stmt in enumerate(plan):
            if not tally.gate(conn, target, budget, remaining=len(plan) - i, check_load=False):
                break
            reason, seconds = steps.execute(conn, target, stmt, "stats reset",
                                            survivable={"55000": "not loaded (shared_preload_libraries)"})
            text = render(conn, stmt)
            if reason:
                tally.failed(text, reason)
            else:
                tally.did(conn, stmt)
            tally.objects.append({"statement": text, "status": "failed" if reason else "done",
                                  "seconds": round(seconds, 3)})
        return tally.result("nothing to reset")
