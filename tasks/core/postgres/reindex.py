"""``postgres.reindex`` (medium): rebuild invalid indexes and those whose estimated bloat
passes ``reindex_min_bloat_ratio`` with ``REINDEX INDEX CONCURRENTLY``; drop the invalid
``_ccnew``/``_ccold`` leftovers of an interrupted concurrent rebuild. A blocking
``REINDEX INDEX`` only where CONCURRENTLY is impossible and ``reindex_blocking = true``.

Indexes of a table with a build in progress (``pg_stat_progress_create_index``) are left
alone: an invalid index there may be someone's ``CREATE INDEX CONCURRENTLY`` at work.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
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

LEFTOVER = re.compile(r"_cc(new|old)[0-9]*$")
INDEXES_SQL = """
SELECT i.indexrelid AS oid, n.nspname AS schema, ic.relname AS name, t.relname AS table_name,
       i.indrelid AS table_oid, i.indisvalid AS valid, am.amname AS am,
       pg_relation_size(ic.oid) AS size_bytes, ic.reltuples::float8 AS reltuples,
       coalesce((SELECT o.option_value::int FROM pg_options_to_table(ic.reloptions) o
                  WHERE o.option_name = 'fillfactor'), 90) AS fillfactor,
       EXISTS (SELECT 1 FROM pg_constraint x WHERE x.conindid = i.indexrelid AND x.contype = 'x') AS exclusion,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.relid = i.indrelid) AS building,
       (SELECT CASE WHEN bool_and(k.attnum > 0) AND count(*) = count(s.avg_width) THEN sum(s.avg_width) END
          FROM unnest(i.indkey::int2[]) AS k(attnum)
          LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
          LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = t.relname
                               AND s.attname = a.attname AND NOT s.inherited)::float8 AS key_width
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
JOIN pg_am am ON am.oid = ic.relam
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
  AND {filter}
"""


@dataclass(frozen=True)
class Job:
    kind: str  # "leftover" | "invalid" | "bloated"
    index: Relation
    table_oid: int
    stmt: sql.Composed | None  # None: cannot be done without a blocking REINDEX
    size_bytes: int
    estimated_bloat_bytes: int = 0


def _rebuild(ident: sql.Identifier, concurrent_ok: bool, blocking_allowed: bool) -> sql.Composed | None:
    if concurrent_ok:
        return sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(ident)
    return sql.SQL("REINDEX INDEX {}").format(ident) if blocking_allowed else None


def plan(conn: psycopg2.extensions.connection, target: PostgresTarget, table_oid: int | None = None) -> list[Job]:
    """Leftovers first, then invalid indexes, then bloated ones (most bloat first)."""
    version = int(db.query(conn, "SELECT current_setting('server_version_num')::int AS v")[0]["v"])
    where = "i.indrelid = %(table)s" if table_oid is not None else "true"
    rows = db.query(conn, INDEXES_SQL.format(filter=where), {"table": table_oid})
    floor = int(target.reindex_min_size_mb * 1024 * 1024)
    leftovers, invalid, bloated = [], [], []
    for r in rows:
        if r["building"]:
            continue
        rel = Relation(r["schema"], r["name"], int(r["oid"]))
        concurrent_ok = version >= 120000 and not r["exclusion"]
        if not r["valid"] and LEFTOVER.search(r["name"]):
            leftovers.append(Job("leftover", rel, int(r["table_oid"]),
                                 sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(rel.ident), int(r["size_bytes"])))
        elif not r["valid"]:
            invalid.append(Job("invalid", rel, int(r["table_oid"]),
                               _rebuild(rel.ident, concurrent_ok, target.reindex_blocking), int(r["size_bytes"])))
        elif r["am"] == "btree" and table_oid is None:
            space = bloat.btree_space(int(r["size_bytes"]), float(r["reltuples"]), r["key_width"], int(r["fillfactor"]))
            if space.estimated and bloat.over(space, target.reindex_min_bloat_ratio, floor):
                bloated.append(Job("bloated", rel, int(r["table_oid"]),
                                   _rebuild(rel.ident, concurrent_ok, target.reindex_blocking),
                                   int(r["size_bytes"]), space.bloat_bytes))
    bloated.sort(key=lambda j: -j.estimated_bloat_bytes)
    return leftovers + invalid + bloated


def index_size(conn: psycopg2.extensions.connection, rel: Relation) -> int | None:
    """By name: a concurrent rebuild swaps in a new index (new oid) under the old name."""
    rows = db.query(conn, "SELECT pg_relation_size(c.oid) AS s FROM pg_class c JOIN pg_namespace n"
                          " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s", (rel.schema, rel.name))
    return int(rows[0]["s"]) if rows else None


def _clean_after_failure(conn: psycopg2.extensions.connection, target: PostgresTarget, job: Job,
                         tally: steps.Tally) -> None:
    """A failed REINDEX CONCURRENTLY leaves an invalid ``_ccnew`` index behind: drop it now."""
    for extra in (j for j in plan(conn, target, job.table_oid) if j.kind == "leftover"):
        assert extra.stmt is not None
        reason, _ = steps.execute(conn, target, extra.stmt, f"DROP INDEX {extra.index}")
        if reason:
            tally.failed(str(extra.index), f"leftover not dropped: {reason}")
        else:
            tally.did(conn, extra.stmt)


def reindex(run: RunContext, target: PostgresTarget) -> Result:
    """Rebuild invalid and bloated indexes concurrently; drop interrupted rebuilds' leftovers."""
    budget = run.budget()
    with maintenance_session(target, run.task) as conn:
        jobs = plan(conn, target)
        describe = [{"index": str(j.index), "kind": j.kind, "size_bytes": j.size_bytes,
                     "estimated_bloat_bytes": j.estimated_bloat_bytes} for j in jobs]
        if run.dry_run:
            stmts = [render(conn, j.stmt) for j in jobs if j.stmt is not None]
            blocked = [str(j.index) for j in jobs if j.stmt is None]
            summary = f"plan: {len(stmts)} statement(s)" if jobs else "no invalid, leftover or bloated index"
            if blocked:
                summary += f"; {len(blocked)} need a blocking REINDEX (reindex_blocking = false): {', '.join(blocked)}"
            return Result("ok", summary, {"planned": len(stmts), "objects": describe}, stmts)
        tally = steps.Tally("rebuilt or dropped", planned=len(jobs))
        total_bytes = sum(j.size_bytes for j in jobs)
        for i, job in enumerate(jobs):
            # by size: a rebuild's time follows the index's size
            run.progress(f"{job.kind} index {job.index}", done=sum(j.size_bytes for j in jobs[:i]),
                         total=total_bytes or None, unit="bytes")
            if not tally.gate(conn, target, budget, remaining=len(jobs) - i, check_load=job.kind != "leftover"):
                break
            entry: dict[str, Any] = dict(describe[i])
            if job.stmt is None:
                why = "needs a blocking REINDEX (set reindex_blocking = true to allow it)"
                tally.failed(str(job.index), why)
                tally.objects.append({**entry, "status": "failed", "reason": why})
                continue
            cap_statement_timeout(conn, target, budget)
            reason, seconds = steps.execute(conn, target, job.stmt, f"{job.kind} index {job.index}",
                                            survivable={"23": "rebuild failed (duplicate or invalid data)"})
            if reason:
                tally.failed(str(job.index), reason)
                tally.objects.append({**entry, "status": "failed", "reason": reason})
                if job.kind != "leftover":
                    _clean_after_failure(conn, target, job, tally)
                continue
            tally.did(conn, job.stmt)
            after = index_size(conn, job.index) if job.kind != "leftover" else 0
            tally.objects.append({**entry, "status": "done", "seconds": round(seconds, 3), "size_bytes_after": after,
                                  "reclaimed_bytes": job.size_bytes - (after or 0)})
        reclaimed = sum(o.get("reclaimed_bytes", 0) for o in tally.objects)
        return tally.result("no invalid, leftover or bloated index", {"reclaimed_bytes": reclaimed})
