"""``postgres.vacuum_bloated``: VACUUM (ANALYZE) the tables over the dead-tuple thresholds,
most bloated first, within a time budget; dead tuples before and after per table."""

from __future__ import annotations

import logging
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from tasks.core.postgres import bloat, steps
from tasks.core.postgres.relations import Relation
from tasks.core.postgres.session import cap_statement_timeout, maintenance_session, render
from workers.config import PostgresTarget
from workers.doors import postgres as db
from workers.records.outcome import Result, RunContext

logger = logging.getLogger(__name__)

# The SQL prefilter keeps the scan cheap on databases with thousands of tables; the
# pure rule in ``bloat`` decides.
CANDIDATES_SQL = """
SELECT relid AS oid, schemaname AS schema, relname AS name, n_live_tup AS live, n_dead_tup AS dead
FROM pg_stat_user_tables WHERE n_dead_tup > %(min_dead)s
"""


def dead_tuples(conn: psycopg2.extensions.connection, oid: int) -> int | None:
    db.query(conn, "SELECT pg_stat_clear_snapshot()")
    rows = db.query(conn, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = %s", (oid,))
    return int(rows[0]["n_dead_tup"]) if rows else None


def candidates(conn: psycopg2.extensions.connection, target: PostgresTarget) -> list[tuple[Relation, bloat.DeadTuples]]:
    rows = db.query(conn, CANDIDATES_SQL, {"min_dead": target.vacuum_min_dead_tuples})
    by_key = {(r["schema"], r["name"]): r for r in rows}
    stats = [bloat.DeadTuples(r["schema"], r["name"], int(r["live"]), int(r["dead"])) for r in rows]
    chosen = bloat.select_for_vacuum(stats, target.vacuum_min_dead_tuples, target.vacuum_min_dead_ratio)
    return [(Relation(t.schema, t.name, int(by_key[(t.schema, t.name)]["oid"])), t) for t in chosen]


def statement(rel: Relation) -> sql.Composed:
    return sql.SQL("VACUUM (ANALYZE) {}").format(rel.ident)


def vacuum_bloated(run: RunContext, target: PostgresTarget) -> Result:
    """VACUUM (ANALYZE) bloated tables, most bloated first, within the time budget."""
    budget = run.budget(target.vacuum_budget_s)
    with maintenance_session(target, run.task) as conn:
        chosen = candidates(conn, target)
        thresholds = {"min_dead_tuples": target.vacuum_min_dead_tuples, "min_dead_ratio": target.vacuum_min_dead_ratio}
        if run.dry_run:
            plan = [render(conn, statement(rel)) for rel, _ in chosen]
            tables = [{"table": str(rel), "dead": t.dead, "live": t.live, "dead_ratio": round(t.ratio, 4)}
                      for rel, t in chosen]
            return Result("ok", f"plan: vacuum {len(plan)} bloated table(s)" if plan else "no bloated tables",
                          {"planned": len(plan), "objects": tables, **thresholds}, plan)
        tally = steps.Tally("vacuumed", planned=len(chosen))
        for i, (rel, stats) in enumerate(chosen):
            run.progress(f"vacuum {rel}", done=i, total=len(chosen), unit="tables")
            if not tally.gate(conn, target, budget, remaining=len(chosen) - i):
                break
            cap_statement_timeout(conn, target, budget)
            stmt = statement(rel)
            reason, seconds = steps.execute(conn, target, stmt, f"VACUUM {rel}")
            entry: dict[str, Any] = {"table": str(rel), "dead_before": stats.dead, "live": stats.live,
                                     "seconds": round(seconds, 3)}
            if reason:
                tally.failed(str(rel), reason)
                entry.update(status="failed", reason=reason)
            else:
                tally.did(conn, stmt)
                entry.update(status="done", dead_after=dead_tuples(conn, rel.oid))
            tally.objects.append(entry)
        reclaimed = sum(o["dead_before"] - (o.get("dead_after") or 0) for o in tally.objects if o["status"] == "done")
        return tally.result("no bloated tables", {"dead_tuples_removed": reclaimed, **thresholds})
