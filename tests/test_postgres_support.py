"""Helpers for the PostgreSQL maintenance tests (helpers only, no tests).

- ``pg_block(dsn, ...)``: the ``[[postgres]]`` TOML of a target named "main".
- ``target_of(config, body)``: write a config and return the typed target.
- ``ctx(task)``: a ``RunContext`` for Celery-free calls.
- ``bloat_table(dsn, ident)``: a table made bloated for real (insert, update, delete),
  autovacuum off, its stats flushed (the session that wrote them is closed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from tests.conftest import ConfigFactory, wait_until
from workers.config import PostgresTarget
from workers.records.outcome import RunContext


def toml_str(text: str) -> str:
    """A TOML basic string (JSON escapes are valid TOML)."""
    return json.dumps(text, ensure_ascii=False)


def pg_block(dsn: str, extra: str = "", name: str = "main") -> str:
    return f"[[postgres]]\nname = {toml_str(name)}\ndsn = {toml_str(dsn)}\n{extra}\n"


def target_of(config: ConfigFactory, body: str, name: str = "main") -> PostgresTarget:
    config.write(body)
    from workers.config import get_config

    target = get_config().target("postgres", name)
    assert isinstance(target, PostgresTarget)
    return target


def ctx(task: str, dry_run: bool = False, soft_s: float = 300) -> RunContext:
    from workers.config import get_config

    return RunContext(task=task, task_id="local-test", target="main", impact="low", host="testhost",
                      worker="pytest", attempt=1, dry_run=dry_run, config=get_config(),
                      started_at=datetime.now(UTC), soft_deadline_s=soft_s)


def connect(dsn: str, application_name: str = "pytest") -> psycopg2.extensions.connection:
    conn = psycopg2.connect(dsn, connect_timeout=5, application_name=application_name)
    conn.autocommit = True
    return conn


@contextmanager
def session(dsn: str, application_name: str = "pytest") -> Iterator[psycopg2.extensions.connection]:
    conn = connect(dsn, application_name)
    try:
        yield conn
    finally:
        conn.close()


def scalar(dsn: str, query: Any, params: Any = None) -> Any:
    with session(dsn) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        row = cur.fetchone()
        return row[0] if row else None


def create_table(dsn: str, ident: sql.Identifier, rows: int, payload: int = 100) -> None:
    """id bigint primary key, payload text, ts timestamptz; autovacuum off (tests decide when)."""
    with session(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, payload text, ts timestamptz NOT NULL)"
                            " WITH (autovacuum_enabled = false)").format(ident))
        cur.execute(sql.SQL("INSERT INTO {} SELECT g, repeat('x', %s), now() - g * interval '1 minute'"
                            " FROM generate_series(1, %s) g").format(ident), (payload, rows))


def bloat_table(dsn: str, ident: sql.Identifier, rows: int = 20000, keep_every: int = 2) -> None:
    """Create, update every row, delete all but every ``keep_every``-th: dead > live."""
    create_table(dsn, ident, rows)
    with session(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("UPDATE {} SET payload = payload || 'y'").format(ident))
        cur.execute(sql.SQL("DELETE FROM {} WHERE id %% %s <> 0").format(ident), (keep_every,))
    # the writing session is closed: its statistics are flushed


def table_stats(dsn: str, schema: str, name: str) -> dict[str, Any]:
    with session(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT n_live_tup, n_dead_tup, vacuum_count, analyze_count, pg_relation_size(relid)"
                    " FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s", (schema, name))
        row = cur.fetchone()
    assert row is not None, f"{schema}.{name} not in pg_stat_user_tables"
    return dict(zip(("live", "dead", "vacuums", "analyzes", "bytes"), row, strict=True))


def wait_dead(dsn: str, schema: str, name: str, at_least: int) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def ready() -> bool:
        found.update(table_stats(dsn, schema, name))
        return int(found["dead"]) >= at_least

    wait_until(ready, 15, f"{schema}.{name} to show {at_least} dead tuples")
    return found


def history_rows(task: str, target: str = "main") -> list[dict[str, Any]]:
    from workers.records import records

    return records().runs.find(task=task, target=target)


def clear_deferred() -> None:
    from workers.records import records

    records().execute(lambda cur: cur.execute("DELETE FROM maintd_deferred WHERE task LIKE 'postgres.%%'"))

