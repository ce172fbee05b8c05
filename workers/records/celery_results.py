"""Celery's own result tables in the results database (``celery_taskmeta``,
``celery_groupmeta``, created by Celery's database backend on first use): pruned here in
batches by ``maintd.prune_history`` after ``[history] results_keep_days``, so they do not
grow without bound (Celery's ``celery.backend_cleanup`` is one unbounded DELETE; this is the
same cleanup, batched, within a time budget and recorded in the run history).
"""

from __future__ import annotations

from datetime import datetime

import psycopg2.extensions
from psycopg2 import sql

from workers.records.connection import ResultsDatabase

TABLES = ("celery_taskmeta", "celery_groupmeta")  # as configured in workers.app (database_table_names)


class CeleryResults:
    def __init__(self, db: ResultsDatabase) -> None:
        self.db = db

    def existing(self) -> list[str]:
        def do(cur: psycopg2.extensions.cursor) -> list[str]:
            cur.execute("SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NOT NULL", (list(TABLES),))
            return [r[0] for r in cur.fetchall()]

        return self.db.execute(do, transaction=False)

    def prune(self, table: str, cutoff: datetime, batch: int) -> int:
        """Delete up to ``batch`` results of ``table`` done before ``cutoff``; returns how many."""
        if table not in TABLES:
            raise ValueError(f"not a Celery result table: {table!r}")

        def do(cur: psycopg2.extensions.cursor) -> int:
            cur.execute(sql.SQL("DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE date_done < %s LIMIT %s)")
                        .format(t=sql.Identifier(table)), (cutoff, batch))
            return int(cur.rowcount)

        return self.db.execute(do)

    def prunable(self, table: str, cutoff: datetime) -> int:
        if table not in TABLES:
            raise ValueError(f"not a Celery result table: {table!r}")

        def do(cur: psycopg2.extensions.cursor) -> int:
            cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE date_done < %s").format(sql.Identifier(table)),
                        (cutoff,))
            row = cur.fetchone()
            return int(row[0]) if row else 0

        return self.db.execute(do, transaction=False)
