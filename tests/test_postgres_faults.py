"""Faults with real workers: a worker killed mid-retention, the target database restarted
mid-vacuum, pg_stat_statements missing."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from tests.conftest import ConfigFactory, wait_until
from tests.test_postgres_support import (
    bloat_table,
    pg_block,
    scalar,
    session,
    table_stats,
    wait_dead,
)
from workers.processes.embedded import EmbeddedPostgres

EXPIRED, FRESH = 20000, 5000


def _runs(task_id: str) -> list[dict[str, Any]]:
    from workers.records import records

    return sorted(records().runs.find(task_id=task_id), key=lambda r: r["id"])


def _running_pid(task_id: str) -> int | None:
    rows = [r for r in _runs(task_id) if r["status"] == "running"]
    return int(rows[-1]["worker"].rsplit("/", 1)[1]) if rows else None


def _archived(dsn: str) -> int:
    return int(scalar(dsn, "SELECT CASE WHEN to_regclass('events_archive') IS NULL THEN 0"
                           " ELSE (SELECT count(*) FROM events_archive) END") or 0)


def test_worker_killed_mid_retention_rerun_totals_exact(config: ConfigFactory, target_db: str,
                                                         start_worker: Any) -> None:
    with session(target_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE events (id bigint PRIMARY KEY, ts timestamptz NOT NULL, body text)")
        cur.execute("INSERT INTO events SELECT g, now() - interval '400 days' - g * interval '1 second', 'old'"
                    " FROM generate_series(1, %s) g", (EXPIRED,))
        cur.execute("INSERT INTO events SELECT g, now() - interval '1 day', 'new' FROM generate_series(%s, %s) g",
                    (EXPIRED + 1, EXPIRED + FRESH))
        cur.execute("CREATE INDEX ON events (ts)")
    config.write(pg_block(target_db) + '[[postgres.retention]]\ntable = "events"\ncolumn = "ts"\n'
                 'older_than = "365d"\narchive_table = "events_archive"\nbatch_size = 200\n'
                 "min_batch_size = 100\nmax_batch_size = 200\npause_s = 0.02\n")
    start_worker(role="db")
    from tasks.postgres import retention

    result = retention.delay("main")
    pid = wait_until(lambda: _running_pid(result.id), 30, "the retention run to start")
    wait_until(lambda: _archived(target_db) >= 2000, 30, "some batches to commit", interval_s=0.05)
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)  # the pool process doing the work, mid-batch
    at_kill = _archived(target_db)
    assert 0 < at_kill < EXPIRED

    outcome = result.get(timeout=120)  # the message comes back (worker lost) and reruns
    assert outcome["status"] == "ok", outcome["summary"]
    assert outcome["attempt"] == 2
    assert [(r["attempt"], r["status"]) for r in _runs(result.id)] == [(1, "lost"), (2, "ok")]
    policy = outcome["metrics"]["policies"][0]
    # The rerun did only what the killed attempt had not committed (at most one batch was in flight).
    assert policy["deleted"] == policy["archived"]
    assert EXPIRED - at_kill - 200 <= policy["archived"] <= EXPIRED - at_kill
    # Exact totals: every expired row archived once, every fresh row still there, nothing else.
    assert scalar(target_db, "SELECT count(*) FROM events_archive") == EXPIRED
    assert scalar(target_db, "SELECT count(DISTINCT id) FROM events_archive") == EXPIRED
    assert scalar(target_db, "SELECT min(id) = 1 AND max(id) = %s FROM events_archive", (EXPIRED,))
    assert scalar(target_db, "SELECT count(*) FROM events") == FRESH
    assert scalar(target_db, "SELECT count(*) FROM events WHERE body = 'old'") == 0
    assert scalar(target_db, "SELECT count(*) FROM events e JOIN events_archive a USING (id)") == 0


def test_target_restarted_mid_vacuum_fails_transient_and_retries(config: ConfigFactory, scratch_root: Path,
                                                                   start_worker: Any) -> None:
    emb = EmbeddedPostgres(scratch_root / f"pg-restart-{uuid.uuid4().hex[:8]}").start()
    try:
        dsn = emb.url()
        bloat_table(dsn, sql.Identifier("public", "t"), rows=5000)
        wait_dead(dsn, "public", "t", 5000)
        config.write(pg_block(dsn, "lock_timeout_s = 60"))
        start_worker(role="db")
        from tasks.postgres import vacuum_bloated

        blocker = psycopg2.connect(dsn, connect_timeout=5)
        blocker.cursor().execute("LOCK TABLE t IN SHARE UPDATE EXCLUSIVE MODE")  # VACUUM waits for it
        result = vacuum_bloated.delay("main")
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                                       " 'maintd:postgres.vacuum_bloated' AND wait_event_type = 'Lock'"),
                   30, "VACUUM to wait for the lock")
        emb.stop()  # fast shutdown: every session, VACUUM's too, is terminated
        blocker.close()
        emb.start()
        rows = wait_until(lambda: [r for r in _runs(result.id) if r["status"] == "retrying"], 30,
                          "the transient failure to be recorded")
        assert isinstance(rows, list)
        error = rows[0]["error"]
        assert "terminating connection" in error or "server closed" in error or "connection" in error
        outcome = result.get(timeout=90)  # retried after the backoff, on the restarted server
        assert outcome["status"] == "ok" and outcome["attempt"] == 2
        assert outcome["actions"] == ['VACUUM (ANALYZE) "public"."t"']
        assert [(r["attempt"], r["status"]) for r in _runs(result.id)] == [(1, "retrying"), (2, "ok")]
        assert table_stats(dsn, "public", "t")["dead"] == 0
    finally:
        emb.stop()


def test_slow_queries_without_pg_stat_statements_is_skipped(config: ConfigFactory, target_db: str,
                                                            start_worker: Any) -> None:
    config.write(pg_block(target_db))
    start_worker(role="db")
    from tasks.postgres import slow_queries

    outcome = slow_queries.delay("main").get(timeout=30)
    assert outcome["status"] == "skipped"
    assert "CREATE EXTENSION pg_stat_statements;" in outcome["summary"]
    assert [r["status"] for r in _runs(outcome["task_id"])] == ["skipped"]

