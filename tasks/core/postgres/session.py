"""The maintenance session: one PostgreSQL connection per run, through ``workers.doors.postgres``.

``application_name`` is ``maintd:<task>`` (how admission, ``long_queries`` and an
operator's ``pg_stat_activity`` tell maintd's own sessions apart); ``statement_timeout``
and ``lock_timeout`` come from the target config. Sessions are autocommit: VACUUM,
REINDEX CONCURRENTLY and DROP INDEX CONCURRENTLY cannot run inside a transaction block.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from workers.config import PostgresTarget
from workers.doors import postgres as db
from workers.records.outcome import Budget

logger = logging.getLogger(__name__)

APP_PREFIX = "maintd:"
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout
QUERY_CANCELED = "57014"  # statement_timeout or pg_cancel_backend
UNDEFINED_TABLE = "42P01"
UNDEFINED_OBJECT = "42704"


def application_name(task: str) -> str:
    return f"{APP_PREFIX}{task}"


@contextmanager
def maintenance_session(target: PostgresTarget, task: str, *,
                        autocommit: bool = True) -> Iterator[psycopg2.extensions.connection]:
    """A connection named ``maintd:<task>`` with the target's timeouts; closed on exit. A driver
    error escaping the block leaves as a classified, secret-free Transient/PermanentError."""
    conn = connect(target, task, autocommit=autocommit)
    try:
        yield conn
    except psycopg2.Error as exc:
        raise failure(exc, target, task) from None
    finally:
        conn.close()


def connect(target: PostgresTarget, task: str, *, autocommit: bool = True) -> psycopg2.extensions.connection:
    return db.connect(target.dsn, application_name=application_name(task),
                      connect_timeout_s=target.connect_timeout_s,
                      statement_timeout_s=target.statement_timeout_s, lock_timeout_s=target.lock_timeout_s,
                      password=target.password, autocommit=autocommit)


def render(conn: psycopg2.extensions.connection, stmt: sql.Composable) -> str:
    """The exact statement text, as the server receives it (for dry-run plans and actions)."""
    return stmt.as_string(conn)


def failure(exc: psycopg2.Error, target: PostgresTarget, what: str) -> Exception:
    """A driver error as a secret-free Transient/PermanentError naming what failed."""
    return db.classify(exc, target.dsn, what)


def per_object(exc: psycopg2.Error) -> str | None:
    """Why one object could not be maintained when the run may move on to the next one
    (lock or statement timeout, object dropped meanwhile); None when the error must end the run."""
    code = getattr(exc, "pgcode", None) or ""
    if code == LOCK_NOT_AVAILABLE:
        return "lock timeout"
    if code == QUERY_CANCELED:
        return "statement timeout or canceled"
    if code in (UNDEFINED_TABLE, UNDEFINED_OBJECT):
        return "dropped meanwhile"
    return None


def cap_statement_timeout(conn: psycopg2.extensions.connection, target: PostgresTarget, budget: Budget) -> None:
    """``statement_timeout`` = the target's, or what is left of the budget when less, so one
    statement cannot run past the task's soft time limit."""
    ms = int(max(1.0, min(target.statement_timeout_s, budget.remaining())) * 1000)
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('statement_timeout', %s, false)", (f"{ms}ms",))
