"""``postgres.vacuum_full`` (high: windowed, locked): rewrite the configured tables, or
those whose estimated bloat passes ``vacuum_full_min_bloat_ratio`` and whose size passes
``vacuum_full_min_size_mb``. Free disk is checked before each rewrite; bytes reclaimed
are reported per table."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from tasks.core.postgres import bloat, disk, steps
from tasks.core.postgres.relations import Relation, resolve_all
from tasks.core.postgres.session import cap_statement_timeout, maintenance_session, render
from workers.config import PostgresTarget
from workers.doors import postgres as db
from workers.records.outcome import Result, RunContext

logger = logging.getLogger(__name__)

SPACE_SQL = """
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.reltablespace AS tablespace,
       pg_relation_size(c.oid) AS size_bytes, pg_total_relation_size(c.oid) AS total_bytes,
       c.reltuples::float8 AS reltuples,
       (SELECT sum(s.avg_width) FROM pg_stats s
         WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND NOT s.inherited)::float8 AS row_width,
       coalesce((SELECT o.option_value::int FROM pg_options_to_table(c.reloptions) o
                  WHERE o.option_name = 'fillfactor'), 100) AS fillfactor,
       coalesce(st.n_live_tup, 0) AS live, coalesce(st.n_dead_tup, 0) AS dead
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables st ON st.relid = c.oid
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND {filter}
"""


def _space(row: dict[str, Any]) -> bloat.Space:
    return bloat.table_space(int(row["size_bytes"]), float(row["reltuples"]), row["row_width"],
                             int(row["fillfactor"]), int(row["live"]), int(row["dead"]))


def candidates(conn: psycopg2.extensions.connection, target: PostgresTarget) -> list[dict[str, Any]]:
    """Rows of SPACE_SQL for the tables to rewrite, biggest estimated bloat first."""
    if target.vacuum_full_tables:
        rels = resolve_all(conn, target.name, "vacuum_full_tables", target.vacuum_full_tables)
        rows = db.query(conn, SPACE_SQL.format(filter="c.oid = ANY(%(oids)s)"), {"oids": [r.oid for r in rels]})
        order = {r.oid: i for i, r in enumerate(rels)}
        return sorted(rows, key=lambda r: order[int(r["oid"])])
    floor = int(target.vacuum_full_min_size_mb * 1024 * 1024)
    rows = db.query(conn, SPACE_SQL.format(filter="pg_relation_size(c.oid) >= %(floor)s"), {"floor": floor})
    chosen = [r for r in rows if bloat.over(_space(r), target.vacuum_full_min_bloat_ratio, floor)]
    return sorted(chosen, key=lambda r: -_space(r).bloat_bytes)


def statement(rel: Relation) -> sql.Composed:
    return sql.SQL("VACUUM (FULL, ANALYZE) {}").format(rel.ident)


def sizes(conn: psycopg2.extensions.connection, oid: int) -> tuple[int, int]:
    row = db.query(conn, "SELECT pg_relation_size(%s::oid) AS t, pg_total_relation_size(%s::oid) AS a", (oid, oid))[0]
    return int(row["t"]), int(row["a"])


def window_left_s(target: PostgresTarget, now: datetime) -> float | None:
    """Seconds until the open maintenance window closes (None: no window configured). No
    rewrite starts, and none keeps its exclusive lock, past the window."""
    closes = [c for w in target.windows if (c := w.closes_at(now)) is not None]
    if not target.windows:
        return None
    return max(0.0, (min(closes) - now).total_seconds()) if closes else 0.0


def vacuum_full(run: RunContext, target: PostgresTarget) -> Result:
    """Rewrite bloated (or configured) tables with VACUUM FULL, checking free disk first."""
    budget = run.budget(window_left_s(target, datetime.now(UTC)))
    with maintenance_session(target, run.task) as conn:
        rows = candidates(conn, target)
        plan = [(Relation(r["schema"], r["name"], int(r["oid"])), r) for r in rows]
        if run.dry_run:
            tables = [{"table": str(rel), "total_bytes": int(r["total_bytes"]),
                       "estimated_bloat_bytes": _space(r).bloat_bytes} for rel, r in plan]
            return Result("ok", f"plan: rewrite {len(plan)} table(s)" if plan else "no table needs a rewrite",
                          {"planned": len(plan), "objects": tables}, [render(conn, statement(rel)) for rel, _ in plan])
        tally = steps.Tally("rewrote", planned=len(plan))
        total_bytes = sum(int(r["total_bytes"]) for _, r in plan)
        for i, (rel, row) in enumerate(plan):
            # by size: one big table is most of the time of a rewrite
            run.progress(f"vacuum full {rel}", done=sum(int(r["total_bytes"]) for _, r in plan[:i]),
                         total=total_bytes or None, unit="bytes")
            if not tally.gate(conn, target, budget, remaining=len(plan) - i):
                break
            table_before, total_before = sizes(conn, rel.oid)
            entry: dict[str, Any] = {"table": str(rel), "table_bytes_before": table_before,
                                     "total_bytes_before": total_before,
                                     "estimated_bloat_bytes": _space(row).bloat_bytes}
            free = disk.free_space(conn, target, int(row["tablespace"]))
            refusal = disk.rewrite_refusal(total_before, free)
            if refusal:
                tally.failed(str(rel), refusal)
                tally.objects.append({**entry, "status": "failed", "reason": refusal})
                continue
            cap_statement_timeout(conn, target, budget)
            stmt = statement(rel)
            reason, seconds = steps.execute(conn, target, stmt, f"VACUUM FULL {rel}")
            if reason:
                tally.failed(str(rel), reason)
                tally.objects.append({**entry, "status": "failed", "reason": reason, "seconds": round(seconds, 3)})
                continue
            tally.did(conn, stmt)
            table_after, total_after = sizes(conn, rel.oid)
            tally.objects.append({**entry, "status": "done", "seconds": round(seconds, 3),
                                  "table_bytes_after": table_after, "total_bytes_after": total_after,
                                  "reclaimed_bytes": total_before - total_after, "free_bytes_before": free.bytes})
        reclaimed = sum(o.get("reclaimed_bytes", 0) for o in tally.objects)
        result = tally.result("no table needs a rewrite", {"reclaimed_bytes": reclaimed})
        if reclaimed and result.status != "deferred":
            result = Result(result.status, f"{result.summary}; reclaimed {reclaimed / 1048576:.1f} MB",
                            result.metrics, result.actions)
        return result
