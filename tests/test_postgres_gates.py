"""Gates on a real database with real workers: the per-target advisory lock, the
maintenance window, admission back-off; and lock_timeout moving on to the next table."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from tasks.core.postgres import vacuum
from tests.conftest import ConfigFactory, wait_until
from tests.test_postgres_support import (
    bloat_table,
    clear_deferred,
    ctx,
    pg_block,
    scalar,
    session,
    table_stats,
    target_of,
    wait_dead,
)
from workers.records import records


@pytest.fixture(autouse=True)
def _no_deferred_left(config: ConfigFactory) -> Iterator[None]:
    yield
    clear_deferred()  # before the config goes: deferred rows of these tests must not leak into others


def _waiting_on_lock(dsn: str, app: str) -> bool:
    return bool(scalar(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                            " AND wait_event_type = 'Lock'", (app,)))


def test_two_vacuum_full_one_runs_one_skipped_naming_holder(config: ConfigFactory, target_db: str,
                                                            start_worker: Any) -> None:
    bloat_table(target_db, sql.Identifier("public", "audit_logs"), rows=5000, keep_every=10)
    config.write(pg_block(target_db, 'vacuum_full_tables = ["audit_logs"]\nlock_timeout_s = 60'))
    start_worker(role="db", host="db-a")
    start_worker(role="db", host="db-b")
    from tasks.postgres import vacuum_full

    reader = psycopg2.connect(target_db, connect_timeout=5)  # a reader VACUUM FULL must wait for
    try:
        reader.cursor().execute("SELECT count(*) FROM audit_logs")
        first = vacuum_full.delay("main")
        wait_until(lambda: _waiting_on_lock(target_db, "maintd:postgres.vacuum_full"), 30,
                   "the first VACUUM FULL to wait for the reader")
        second = vacuum_full.delay("main").get(timeout=60)
    finally:
        reader.close()
    ran = first.get(timeout=60)
    assert ran["status"] == "ok" and ran["actions"] == ['VACUUM (FULL, ANALYZE) "public"."audit_logs"']
    assert second["status"] == "skipped"
    assert f"maintd:postgres.vacuum_full@{ran['host']} pid" in second["summary"]
    assert f"run {ran['task_id'][:8]}" in second["summary"]
    assert second["host"] != ran["host"] and second["actions"] == []


def test_vacuum_full_outside_window_deferred_then_runs_when_it_opens(config: ConfigFactory, target_db: str,
                                                                    inprocess_worker: Any) -> None:
    bloat_table(target_db, sql.Identifier("public", "audit_logs"), rows=10000, keep_every=10)
    before = table_stats(target_db, "public", "audit_logs")["bytes"]
    now = datetime.now(UTC)
    opens = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (opens - now).total_seconds() < 10:  # leave time to start the worker and dispatch before it opens
        opens += timedelta(minutes=1)
    closes = opens + timedelta(minutes=30)
    config.write(pg_block(target_db, f'vacuum_full_tables = ["audit_logs"]\n'
                                     f'window = "daily {opens:%H:%M}-{closes:%H:%M}"'))
    inprocess_worker(role="db")
    from tasks.postgres import vacuum_full
    from workers.app import app

    outcome = vacuum_full.delay("main").get(timeout=30)
    assert outcome["status"] == "deferred" and f"{opens:%Y-%m-%d %H:%M}" in outcome["summary"]
    assert [(r["task"], r["target"], r["not_before"]) for r in records().deferred.pending() if r["task"] == "postgres.vacuum_full"] == [
        ("postgres.vacuum_full", "main", opens)]
    assert table_stats(target_db, "public", "audit_logs")["bytes"] == before  # nothing done yet

    wait_until(lambda: datetime.now(UTC) >= opens, 75, "the window to open", interval_s=0.5)
    released = app.tasks["maintd.release_deferred"].delay().get(timeout=30)
    assert "postgres.vacuum_full[main]" in released["actions"]
    ran = wait_until(lambda: [r for r in records().runs.find(task="postgres.vacuum_full", target="main")
                              if r["status"] == "ok"], 60, "the released VACUUM FULL")
    assert ran[0]["actions"] == ['VACUUM (FULL, ANALYZE) "public"."audit_logs"']  # type: ignore[index]
    assert table_stats(target_db, "public", "audit_logs")["bytes"] < before / 3


def test_admission_backs_off_under_load_then_runs(config: ConfigFactory, target_db: str, inprocess_worker: Any) -> None:
    bloat_table(target_db, sql.Identifier("public", "busy"), rows=5000)
    wait_dead(target_db, "public", "busy", 5000)
    config.write(pg_block(target_db) + "[postgres.admission]\nmax_active_sessions = 0\nbackoff_s = 600\n")
    inprocess_worker(role="db")
    from tasks.postgres import vacuum_bloated

    load = psycopg2.connect(target_db, application_name="app-load", connect_timeout=5)
    load.autocommit = True
    sleeping = threading.Thread(target=lambda: _sleep_quietly(load))
    sleeping.start()
    try:
        wait_until(lambda: scalar(target_db, "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                                             " 'app-load' AND state = 'active'"), 10, "the load")
        outcome = vacuum_bloated.delay("main").get(timeout=30)
    finally:
        load.cancel()
        sleeping.join(10)
        load.close()
    assert outcome["status"] == "deferred"
    assert "backing off: 1 active sessions > limit 0" in outcome["summary"]
    assert outcome["metrics"]["done"] == 0 and outcome["actions"] == []
    assert table_stats(target_db, "public", "busy")["vacuums"] == 0
    row = next(r for r in records().deferred.pending() if r["task"] == "postgres.vacuum_bloated")
    assert row["kwargs"] == {"dry_run": False} and "active sessions" in row["reason"]
    assert timedelta(seconds=590) < row["not_before"] - datetime.now(UTC) <= timedelta(seconds=600)

    again = vacuum_bloated.delay("main").get(timeout=30)  # the load is gone
    assert again["status"] == "ok" and again["actions"] == ['VACUUM (ANALYZE) "public"."busy"']
    assert table_stats(target_db, "public", "busy")["dead"] == 0


def _sleep_quietly(conn: psycopg2.extensions.connection) -> None:
    try:
        conn.cursor().execute("SELECT pg_sleep(30)")
    except psycopg2.Error:
        pass  # canceled by the test


def test_lock_timeout_on_one_table_moves_on_and_reports_it(config: ConfigFactory, target_db: str) -> None:
    bloat_table(target_db, sql.Identifier("public", "locked"), rows=5000, keep_every=10)
    bloat_table(target_db, sql.Identifier("public", "free"), rows=5000, keep_every=5)
    wait_dead(target_db, "public", "locked", 5000)
    wait_dead(target_db, "public", "free", 5000)
    target = target_of(config, pg_block(target_db, "lock_timeout_s = 0.3"))
    with session(target_db) as other:
        other.autocommit = False
        other.cursor().execute("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        result = vacuum.vacuum_bloated(ctx("postgres.vacuum_bloated"), target)
        assert time.monotonic() - started < 10
    assert result.status == "warning"
    assert "failed: public.locked: lock timeout" in result.summary
    assert result.actions == ['VACUUM (ANALYZE) "public"."free"']
    by_table = {o["table"]: o for o in result.metrics["objects"]}
    assert by_table["public.locked"]["status"] == "failed" and by_table["public.free"]["status"] == "done"
    assert table_stats(target_db, "public", "free")["dead"] == 0
    assert table_stats(target_db, "public", "locked")["vacuums"] == 0
