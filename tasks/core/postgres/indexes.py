"""``postgres.unused_indexes``: indexes never scanned (``idx_scan = 0``) and bigger than
``unused_index_min_size_mb``, leaving out primary keys, unique and constraint-backing
indexes. Reports sizes and how long the statistics have been counting; never drops."""

from __future__ import annotations

import logging
from typing import Any

from tasks.core.postgres.session import maintenance_session
from workers.config import PostgresTarget
from workers.doors import postgres as db
from workers.records.outcome import Result, RunContext

logger = logging.getLogger(__name__)

UNUSED_SQL = """
SELECT s.schemaname AS schema, s.relname AS table_name, s.indexrelname AS index_name,
       pg_relation_size(s.indexrelid) AS size_bytes, s.idx_scan
FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
WHERE s.idx_scan = 0 AND NOT i.indisprimary AND NOT i.indisunique AND i.indisvalid
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = s.indexrelid)
  AND pg_relation_size(s.indexrelid) > %(min_bytes)s
ORDER BY size_bytes DESC, schema, index_name
"""
SINCE_SQL = """
SELECT stats_reset, EXTRACT(epoch FROM now() - coalesce(stats_reset, pg_postmaster_start_time()))::float8 AS age_s
FROM pg_stat_database WHERE datname = current_database()
"""


def unused_indexes(run: RunContext, target: PostgresTarget) -> Result:
    """Report never-used indexes over the size floor (never drops)."""
    with maintenance_session(target, run.task) as conn:
        min_bytes = int(target.unused_index_min_size_mb * 1024 * 1024)
        rows = db.query(conn, UNUSED_SQL, {"min_bytes": min_bytes})
        since = db.query(conn, SINCE_SQL)[0]
    days = (since["age_s"] or 0) / 86400
    indexes: list[dict[str, Any]] = [
        {"index": f"{r['schema']}.{r['index_name']}", "table": f"{r['schema']}.{r['table_name']}",
         "size_bytes": int(r["size_bytes"])} for r in rows]
    total = sum(int(i["size_bytes"]) for i in indexes)
    metrics = {"unused": len(indexes), "unused_bytes": total, "indexes": indexes, "counting_days": round(days, 1),
               "min_size_bytes": min_bytes}
    if not indexes:
        return Result("ok", f"no unused index over {target.unused_index_min_size_mb:g} MB", metrics)
    names = ", ".join(f"{i['index']} ({i['size_bytes'] / 1048576:.1f} MB)" for i in indexes[:5])
    more = f" and {len(indexes) - 5} more" if len(indexes) > 5 else ""
    return Result("warning", f"{len(indexes)} unused index(es), {total / 1048576:.1f} MB, not scanned in"
                             f" {days:.0f} day(s) of statistics: {names}{more}", metrics)
