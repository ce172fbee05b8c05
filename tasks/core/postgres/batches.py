"""The statements of one retention batch, and how batches walk a table.

Two ways to walk:

- **sweep**: block ranges, ``ctid >= '(lo,0)' AND ctid < '(hi,0)'`` (a TID range scan,
  PostgreSQL 14+). One pass reads the table once, like the runbooks' single DELETE,
  cut into short transactions. Best when much of the table expires, or the column has
  no index. A row lock held by a writer is waited for (``lock_timeout``); on a lock
  timeout the range is redone with ``FOR UPDATE SKIP LOCKED``.
- **limit**: the oldest-matching N rows through the column's index, ``FOR UPDATE SKIP
  LOCKED``. Reads only expired rows: best when a small part of a big table expires.

Either way a batch is one statement: with an archive, a CTE deletes and inserts exactly
the deleted rows and returns both counts; without one, a plain DELETE (its rowcount).
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql

SWEEP_MIN_FRACTION = 0.10  # estimated expired share above which a sweep beats the index


@dataclass(frozen=True)
class BatchSql:
    sweep: sql.Composed | None  # params: cutoff, lo, hi; None where TID range scans are unavailable
    sweep_skip_locked: sql.Composed | None
    limit: sql.Composed  # params: cutoff, limit
    counted: bool  # the statements return (deleted, archived); else use the cursor's rowcount


def choose(requested: str, partitioned: bool, server_version: int, indexed: bool, expired_fraction: float) -> str:
    """"sweep" or "limit" (pure)."""
    if partitioned or server_version < 140000:
        return "limit"  # block numbers are per partition; no TID range scan before 14
    if requested != "auto":
        return requested
    return "sweep" if not indexed or expired_fraction >= SWEEP_MIN_FRACTION else "limit"


def _delete(src: sql.Identifier, where: sql.Composable, cols: sql.Composable,
            archive: sql.Identifier | None) -> sql.Composed:
    if archive is None:
        return sql.SQL("DELETE FROM {src} WHERE {where}").format(src=src, where=where)
    return sql.SQL(
        "WITH moved AS (DELETE FROM {src} WHERE {where} RETURNING {cols}),"
        " archived AS (INSERT INTO {archive} ({cols}) SELECT {cols} FROM moved RETURNING 1)"
        " SELECT (SELECT count(*) FROM moved) AS deleted, (SELECT count(*) FROM archived) AS archived"
    ).format(src=src, where=where, cols=cols, archive=archive)


def build(src: sql.Identifier, cond: sql.Composable, columns: list[str], archive: sql.Identifier | None,
          partitioned: bool) -> BatchSql:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    key = sql.SQL("(tableoid, ctid)") if partitioned else sql.SQL("ctid")
    doomed = sql.SQL("SELECT {key} FROM {src} WHERE {cond} LIMIT %(limit)s FOR UPDATE SKIP LOCKED").format(
        key=key, src=src, cond=cond)
    by_limit = (sql.SQL("{key} IN ({doomed})") if partitioned else sql.SQL("{key} = ANY(ARRAY({doomed}))")).format(
        key=key, doomed=doomed)
    limit = _delete(src, by_limit, cols, archive)
    if partitioned:
        return BatchSql(None, None, limit, archive is not None)
    in_range = sql.SQL("ctid >= %(lo)s::tid AND ctid < %(hi)s::tid AND {cond}").format(cond=cond)
    skip = sql.SQL("ctid = ANY(ARRAY(SELECT ctid FROM {src} WHERE {in_range} FOR UPDATE SKIP LOCKED))").format(
        src=src, in_range=in_range)
    return BatchSql(_delete(src, in_range, cols, archive), _delete(src, skip, cols, archive), limit,
                    archive is not None)


def block_range(lo: int, hi: int) -> dict[str, str]:
    return {"lo": f"({lo},0)", "hi": f"({hi},0)"}
