"""The connection to the results database: reconnecting, one per process, schema migrated
at first connect. Every table of maintd's own is reached through ``ResultsDatabase.execute``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg2
import psycopg2.extensions

from workers.config.secrets import SecretUrl
from workers.doors import postgres as db
from workers.records.schema import migrate

T = TypeVar("T")

# The records are an audit trail, not data a restore depends on: they are committed
# without waiting for the WAL flush. A crash of the PostgreSQL *server* can lose the last
# ~0.6 s of rows (never corrupt them); a crash of maintd loses nothing. This halves the
# gate's cost per run (two commits per run would otherwise each wait for an fsync).
SESSION_SETTINGS = {"synchronous_commit": "off"}


class ResultsDatabase:
    """A small, reconnecting client for maintd's own tables. Thread-safe per process."""

    def __init__(self, url: SecretUrl | str) -> None:
        self.url = url
        self._conn: psycopg2.extensions.connection | None = None
        self._pid = 0
        self._lock = threading.RLock()
        self._migrated = False

    def _connection(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed or self._pid != os.getpid():
            self._conn = db.connect(self.url, application_name="maintd:records",
                                    connect_timeout_s=5, statement_timeout_s=30, lock_timeout_s=10,
                                    autocommit=True, settings=SESSION_SETTINGS)
            self._pid = os.getpid()
            if not self._migrated:
                migrate(self._conn)
                self._migrated = True
        return self._conn

    @contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor; with ``transaction`` its statements commit together on exit (else each
        statement commits alone: one round trip for the hot single-statement writes)."""
        with self._lock:
            conn = self._connection()
            try:
                if transaction:
                    with conn, conn.cursor() as cur:  # psycopg2: `with conn` is BEGIN..COMMIT/ROLLBACK
                        yield cur
                else:
                    with conn.cursor() as cur:
                        yield cur
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                self.close()
                raise

    def execute(self, fn: Callable[[psycopg2.extensions.cursor], T], transaction: bool = True) -> T:
        """Run ``fn(cursor)`` (in one transaction by default); retried once on a dropped connection."""
        try:
            with self.cursor(transaction) as cur:
                return fn(cur)
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            with self.cursor(transaction) as cur:
                return fn(cur)

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
        self._conn = None


def rows(cur: psycopg2.extensions.cursor, sql: str, params: object = None) -> list[dict[str, object]]:
    """Execute and return the rows as dicts keyed by column name."""
    cur.execute(sql, params)
    cols = [c.name for c in cur.description or ()]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
