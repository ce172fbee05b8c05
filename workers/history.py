"""The run history (``maintd_runs``) and the other tables maintd keeps in the results database.

A run is inserted as ``running`` when it starts and updated when it ends, so a worker
killed mid-task leaves a visible ``running`` row; the next attempt of the same Celery
task id marks such rows ``lost``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions

from workers import db
from workers.secrets import SecretUrl

logger = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS maintd_runs (
    id bigserial PRIMARY KEY,
    task_id text NOT NULL,
    task text NOT NULL,
    target text,
    status text NOT NULL,
    summary text NOT NULL DEFAULT '',
    metrics jsonb NOT NULL DEFAULT '{}',
    actions jsonb NOT NULL DEFAULT '[]',
    dry_run boolean NOT NULL DEFAULT false,
    impact text NOT NULL,
    host text NOT NULL,
    worker text NOT NULL,
    attempt integer NOT NULL DEFAULT 1,
    error text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    duration_s double precision
);
CREATE INDEX IF NOT EXISTS maintd_runs_task_target ON maintd_runs (task, target, started_at DESC);
CREATE INDEX IF NOT EXISTS maintd_runs_task_id ON maintd_runs (task_id);
CREATE TABLE IF NOT EXISTS maintd_deferred (
    task text NOT NULL,
    target text NOT NULL,
    kwargs jsonb NOT NULL DEFAULT '{}',
    not_before timestamptz NOT NULL,
    reason text NOT NULL,
    deferred_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, target)
);
CREATE TABLE IF NOT EXISTS maintd_alert_state (
    task text NOT NULL,
    target text NOT NULL,
    status text NOT NULL,
    since timestamptz NOT NULL,
    notified_status text,
    notified_at timestamptz,
    PRIMARY KEY (task, target)
);
CREATE TABLE IF NOT EXISTS maintd_alert_deliveries (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    task text NOT NULL,
    target text NOT NULL,
    channel text NOT NULL,
    kind text NOT NULL,
    severity text NOT NULL,
    reason text NOT NULL,
    delivered boolean NOT NULL,
    attempts integer NOT NULL,
    error text
);
"""
# History rows are an audit trail, not data a restore depends on: they are committed
# without waiting for the WAL flush. A crash of the PostgreSQL *server* can lose the last
# ~0.6 s of rows (never corrupt them); a crash of maintd loses nothing. This halves the
# gate's cost per run (two commits per run would otherwise each wait for an fsync).
HISTORY_SESSION_SETTINGS = {"synchronous_commit": "off"}
_SCHEMA_LOCK = 0x6D61696E7464  # "maintd": serialises concurrent CREATE TABLE IF NOT EXISTS

RUN_COLUMNS = ("id", "task_id", "task", "target", "status", "summary", "metrics", "actions", "dry_run",
               "impact", "host", "worker", "attempt", "error", "started_at", "finished_at", "duration_s")


class HistoryStore:
    """A small, reconnecting client for maintd's own tables. Thread-safe per process."""

    def __init__(self, url: SecretUrl | str) -> None:
        self.url = url
        self._conn: psycopg2.extensions.connection | None = None
        self._pid = 0
        self._lock = threading.RLock()
        self._schema_ready = False

    def _connection(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed or self._pid != os.getpid():
            self._conn = db.connect(self.url, application_name="maintd:history",
                                    connect_timeout_s=5, statement_timeout_s=30, lock_timeout_s=10,
                                    autocommit=True, settings=HISTORY_SESSION_SETTINGS)
            self._pid = os.getpid()
            if not self._schema_ready:
                with self._conn, self._conn.cursor() as cur:  # one transaction
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    cur.execute(SCHEMA)
                self._schema_ready = True
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

    # -- runs -----------------------------------------------------------------
    def start_run(self, *, task_id: str, task: str, target: str | None, impact: str, host: str,
                  worker: str, attempt: int, dry_run: bool, started_at: datetime) -> int:
        def do(cur: psycopg2.extensions.cursor) -> int:
            # One statement: an earlier attempt of the same Celery task still 'running'
            # was lost with its worker; then this attempt's row.
            cur.execute(
                "WITH lost AS (UPDATE maintd_runs SET status = 'lost', finished_at = %s,"
                " error = 'worker lost before the run finished (killed, crashed or restarted)'"
                " WHERE task_id = %s AND status = 'running')"
                " INSERT INTO maintd_runs (task_id, task, target, status, impact, host, worker, attempt,"
                " dry_run, started_at) VALUES (%s,%s,%s,'running',%s,%s,%s,%s,%s,%s) RETURNING id",
                (started_at, task_id, task_id, task, target, impact, host, worker, attempt, dry_run, started_at),
            )
            row = cur.fetchone()
            assert row is not None
            return int(row[0])

        return self.execute(do, transaction=False)

    def finish_run(self, run_id: int, *, status: str, summary: str, metrics: dict[str, Any],
                   actions: list[str], error: str | None, finished_at: datetime, duration_s: float) -> None:
        self.execute(lambda cur: cur.execute(
                "UPDATE maintd_runs SET status=%s, summary=%s, metrics=%s, actions=%s, error=%s,"
                " finished_at=%s, duration_s=%s WHERE id=%s",
                (status, summary, json.dumps(metrics, default=str), json.dumps(actions), error,
                 finished_at, duration_s, run_id),
        ), transaction=False)

    def fail_running(self, task_id: str, error: str) -> list[str | None]:
        """Mark the still-running rows of ``task_id`` failed; returns their targets."""
        now = datetime.now(timezone.utc)

        def do(cur: psycopg2.extensions.cursor) -> list[str | None]:
            cur.execute(
                "UPDATE maintd_runs SET status = 'failed', error = %s, summary = %s, finished_at = %s,"
                " duration_s = EXTRACT(EPOCH FROM (%s - started_at)) WHERE task_id = %s AND status = 'running'"
                " RETURNING target", (error, error, now, now, task_id))
            return [r[0] for r in cur.fetchall()]

        return self.execute(do, transaction=False)

    def runs(self, *, task: str | None = None, target: str | None = None, task_id: str | None = None,
             limit: int = 50) -> list[dict[str, Any]]:
        where, params = [], []
        for col, val in (("task", task), ("target", target), ("task_id", task_id)):
            if val is not None:
                where.append(f"{col} = %s")
                params.append(val)
        sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM maintd_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC LIMIT %s"
        return self.execute(lambda cur: _rows(cur, sql, (*params, limit)), transaction=False)

    def latest_per_target(self, tasks: list[str] | None = None) -> list[dict[str, Any]]:
        """The newest finished run of each (task, target), excluding skipped/deferred."""
        sql = (
            f"SELECT DISTINCT ON (task, target) {', '.join(RUN_COLUMNS)} FROM maintd_runs"
            " WHERE status NOT IN ('running', 'skipped', 'deferred', 'retrying', 'lost')"
        )
        params: list[Any] = []
        if tasks:
            sql += " AND task = ANY(%s)"
            params.append(tasks)
        sql += " ORDER BY task, target, started_at DESC, id DESC"
        return self.execute(lambda cur: _rows(cur, sql, params), transaction=False)


def _rows(cur: psycopg2.extensions.cursor, sql: str, params: Any) -> list[dict[str, Any]]:
    cur.execute(sql, params)
    return [dict(zip(RUN_COLUMNS, r, strict=True)) for r in cur.fetchall()]


_stores: dict[str, HistoryStore] = {}


def store_for(url: SecretUrl) -> HistoryStore:
    key = url.reveal()
    if key not in _stores:
        _stores[key] = HistoryStore(url)
    return _stores[key]


def history() -> HistoryStore:
    from workers.settings import get_config

    url = get_config().results.url
    if url is None:
        from workers.errors import ConfigError

        raise ConfigError("no [results] url configured")
    return store_for(url)
