"""Locks that vanish (issue 8, item 10): a Redis lock whose heartbeat cannot extend it, or a
PostgreSQL advisory lock whose session is killed, stops the run at its next step (``failed:
lock lost``); the lock session ignores ``idle_session_timeout``; the advisory lock is the
database's, so two target names for one database exclude each other."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import ConfigFactory, PgServer, RedisServer, wait_until
from tests.test_postgres_support import bloat_table, ctx, pg_block, session, target_of, wait_dead
from workers.errors import LockLostError
from workers.gates.locks import AdvisoryLease, postgres_lock, redis_lock
from workers.processes.embedded import EmbeddedRedis
from workers.records.outcome import RunContext


def runs_of(task_id: str) -> list[dict[str, Any]]:
    from workers.records import records

    return records().runs.find(task_id=task_id)


def run_context(config: ConfigFactory, body: str = "") -> RunContext:
    config.write(body)
    from workers.config import get_config

    return RunContext(task="test.lock", task_id="local-test", target="t", impact="low", host="h", worker="w",
                      attempt=1, dry_run=False, config=get_config(), started_at=datetime.now(UTC),
                      soft_deadline_s=300)


def test_redis_lock_taken_over_stops_the_run_at_its_next_step(config: ConfigFactory,
                                                              redis_server: RedisServer) -> None:
    run = run_context(config)
    client = redis.Redis.from_url(redis_server.url)
    name = f"t-{uuid.uuid4().hex[:8]}"
    with redis_lock(client, "sqlite", name, "maintd:test@h pid 1", ttl_s=2, heartbeat_s=0.3) as lease:
        run.guards.append(lease.check)
        run.checkpoint()  # ours
        client.set(f"maintd:lock:sqlite:{name}", "someone else", ex=30)  # expired and taken by another holder
        time.sleep(1.0)  # the next heartbeat's extend is refused
        with pytest.raises(LockLostError, match=f"lock lost on target '{name}'"):
            run.checkpoint()
    assert client.get(f"maintd:lock:sqlite:{name}") == b"someone else"  # not released: not ours


def test_redis_unreachable_past_the_ttl_stops_the_run(config: ConfigFactory, scratch_root: Path) -> None:
    run = run_context(config)
    own = EmbeddedRedis(scratch_root / f"redis-{time.time_ns()}").start()
    try:
        client = redis.Redis.from_url(own.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        with redis_lock(client, "files", "etc", "maintd:test@h pid 1", ttl_s=2, heartbeat_s=0.3) as lease:
            run.guards.append(lease.check)
            own.stop()
            run.checkpoint()  # within the TTL: still ours, whatever the heartbeat says
            time.sleep(2.5)
            with pytest.raises(LockLostError, match="not extended for 2s"):
                run.checkpoint()
    finally:
        own.stop()


def test_killed_lock_session_fails_the_run_lock_lost(config: ConfigFactory, target_db: str,
                                                     start_worker: Any) -> None:
    """`idle_session_timeout` or a pooler ends the session holding the advisory lock: the run
    (here maintd.hold, which checks its lock every second) ends failed "lock lost"."""
    config.write(pg_block(target_db, name="local"))
    start_worker(role="db")
    from tasks.maintd import hold

    result = hold.delay("local", seconds=60)
    wait_until(lambda: any(r["status"] == "running" for r in runs_of(result.id)), 30, "the run to start")
    with session(target_db) as conn, conn.cursor() as cur:
        pid = wait_until(lambda: _lock_session(cur), 10, "the lock session")
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    killed = time.monotonic()
    with pytest.raises(Exception, match="lock lost on target 'local': the session holding it ended"):
        result.get(timeout=30)
    assert time.monotonic() - killed < 10
    row = runs_of(result.id)[0]
    assert row["status"] == "failed" and row["error"].startswith("lock lost")


def _lock_session(cur: Any) -> int | None:
    # this test's database only: pg_locks is the whole server's, and other test processes run
    # maintd.hold on their own databases at the same time
    cur.execute("SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND a.application_name LIKE 'maintd:maintd.hold@%%'"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    row = cur.fetchone()
    return int(row[0]) if row else None


def test_lock_session_outlives_idle_session_timeout(config: ConfigFactory, target_db: str,
                                                    pg_server: PgServer) -> None:
    dbname = target_db.rsplit("/", 1)[1]
    with session(pg_server.admin_dsn) as conn, conn.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{dbname}" SET idle_session_timeout = \'1s\'')
    target = target_of(config, pg_block(target_db))
    run = ctx("maintd.hold")
    with postgres_lock(target, "maintd:test lock") as lease:
        run.guards.append(lease.check)
        time.sleep(2.5)  # an ordinary idle session would be gone by now
        assert isinstance(lease, AdvisoryLease)
        lease._checked = 0.0  # ask the session now, not at most once a second
        run.checkpoint()


def test_two_names_for_one_database_exclude_each_other(config: ConfigFactory, target_db: str,
                                                        pg_server: PgServer, start_worker: Any) -> None:
    other_db = pg_server.dsn(pg_server.create_database("maintd_target"))
    same_db_other_spelling = target_db.replace("127.0.0.1", "localhost")
    assert same_db_other_spelling != target_db
    config.write(pg_block(target_db, name="a") + pg_block(same_db_other_spelling, name="b")
                 + pg_block(other_db, name="c"))
    start_worker(role="db")
    from tasks.maintd import hold, noop

    holder = hold.delay("a", seconds=8)
    wait_until(lambda: any(r["status"] == "running" for r in runs_of(holder.id)), 30, "the holder to start")
    via_b = noop.delay("b").get(timeout=30)
    assert via_b["status"] == "skipped" and "maintd:maintd.hold@" in via_b["summary"]
    assert noop.delay("c").get(timeout=30)["status"] == "ok"  # another database: its own lock
    assert holder.get(timeout=60)["status"] == "ok"
    assert noop.delay("b").get(timeout=30)["status"] == "ok"


def test_maintenance_step_stops_when_its_lock_session_dies(config: ConfigFactory, target_db: str) -> None:
    """The domain's own step gate (vacuum_bloated's Tally.gate) asks the run's checkpoint before
    each table: with the lock's session killed, the run stops before the next VACUUM."""
    from psycopg2 import sql

    from tasks.core.postgres.vacuum import vacuum_bloated

    for i in range(3):
        bloat_table(target_db, sql.Identifier(f"bloated_{i}"), rows=4000)
        wait_dead(target_db, "public", f"bloated_{i}", 1000)
    target = target_of(config, pg_block(target_db, extra="vacuum_min_dead_tuples = 100"))
    run = ctx("postgres.vacuum_bloated")
    with postgres_lock(target, "maintd:test lock") as lease:
        run.guards.append(lease.check)
        assert isinstance(lease, AdvisoryLease)
        with session(target_db) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (lease.conn.get_backend_pid(),))
        lease._checked = 0.0
        with pytest.raises(LockLostError, match="the session holding it ended"):
            vacuum_bloated(run, target)
    from tests.test_postgres_support import table_stats

    assert all(table_stats(target_db, "public", f"bloated_{i}")["vacuums"] == 0 for i in range(3))
