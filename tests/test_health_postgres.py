"""health.postgres's check against real PostgreSQL, a closed port and a silent server."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg2
import pytest

from tasks.core.health import postgres as pg
from tests.test_health_support import SilentServer, closed_port
from workers.config import PostgresTarget, Thresholds
from workers.doors.pgtools import pg_bin
from workers.processes.embedded import EmbeddedPostgres, _run_as, as_user

# The machine's PostgreSQL is shared with parallel suites: connection counts there are
# not ours to control, so tests that want "ok" do not grade them.
LENIENT_CONNECTIONS = {"pg_connections_percent": (100.0, 100.0)}


def target(dsn: str, **kw: object) -> PostgresTarget:
    return PostgresTarget.model_validate({"name": "t", "dsn": dsn, **kw})


def test_real_server_is_ok_with_metrics(target_db: str) -> None:
    result = pg.check(target(target_db), Thresholds(**LENIENT_CONNECTIONS))
    assert result.status == "ok", result.summary
    m = result.metrics
    assert m["reachable"] is True and m["role"] == "primary" and m["in_recovery"] is False
    assert 1 <= m["connections"] <= m["max_connections"]
    assert m["version"][0].isdigit() and m["connect_ms"] >= 0
    assert result.summary.startswith(f"PostgreSQL {m['version']} (primary): {m['connections']}/{m['max_connections']}"
                                      " connections, cache hit")
    assert "replica lag" not in result.summary
    json.dumps(result.metrics)  # an Outcome must be JSON


def test_long_transaction_is_graded_and_named(target_db: str) -> None:
    other = psycopg2.connect(target_db, application_name="sleepy-app", connect_timeout=5)
    try:
        with other.cursor() as cur:
            cur.execute("SELECT 1")  # psycopg2 opened a transaction: now idle in transaction
        time.sleep(1.2)
        warn = pg.check(target(target_db), Thresholds(pg_long_transaction_s=(1, 3600), **LENIENT_CONNECTIONS))
        crit = pg.check(target(target_db), Thresholds(pg_long_transaction_s=(0.5, 1), **LENIENT_CONNECTIONS))
    finally:
        other.close()
    assert warn.status == "warning", warn.summary
    assert "longest transaction" in warn.summary and "idle in transaction" in warn.summary
    assert "sleepy-app" in warn.summary
    assert warn.metrics["longest_tx_s"] >= 1.0 and warn.metrics["idle_in_transaction"] >= 1
    assert crit.status == "critical"
    after = pg.check(target(target_db), Thresholds(pg_long_transaction_s=(1, 3600), **LENIENT_CONNECTIONS))
    assert after.status == "ok" and "no open transactions" in after.summary


def test_connections_graded_against_max_connections(target_db: str) -> None:
    warn = pg.check(target(target_db), Thresholds(pg_connections_percent=(0.1, 100)))
    crit = pg.check(target(target_db), Thresholds(pg_connections_percent=(0.1, 0.5)))
    assert warn.status == "warning" and "connections" in warn.metrics["problems"][0]
    assert crit.status == "critical"


def test_closed_port_is_critical_at_once_and_secret_free() -> None:
    port = closed_port()
    started = time.monotonic()
    result = pg.check(target(f"postgresql://postgres:pw-Sekrit-77@127.0.0.1:{port}/postgres"), Thresholds())
    assert time.monotonic() - started < 3
    assert result.status == "critical"
    assert result.summary.startswith("PostgreSQL unreachable:") and "refused" in result.summary
    assert result.metrics["reachable"] is False
    text = result.summary + json.dumps(result.metrics)
    assert "pw-Sekrit-77" not in text and "postgres:***@" in text


def test_silent_server_is_critical_within_connect_timeout() -> None:
    with SilentServer() as server:
        started = time.monotonic()
        result = pg.check(target(f"postgresql://postgres@127.0.0.1:{server.port}/postgres", connect_timeout_s=2),
                          Thresholds())
        elapsed = time.monotonic() - started
    assert result.status == "critical" and "unreachable" in result.summary
    assert 1.5 <= elapsed < 6, elapsed  # waited for the timeout, then gave up


def test_unknown_database_is_critical_not_an_exception(pg_server) -> None:  # type: ignore[no-untyped-def]
    result = pg.check(target(pg_server.dsn("maintd_no_such_db_xyz")), Thresholds())
    assert result.status == "critical" and "does not exist" in result.summary


@pytest.fixture(scope="module")
def replica(scratch_root: Path) -> Iterator[tuple[EmbeddedPostgres, EmbeddedPostgres]]:
    """A private primary and a streaming replica made with pg_basebackup -R (under the
    session's scratch dir: the servers run as their own user when the tests run as root, and
    pytest's own temp dirs are not theirs to enter)."""
    root = Path(tempfile.mkdtemp(prefix="health-replica-", dir=scratch_root))
    root.chmod(0o755)
    primary = EmbeddedPostgres(root / "primary").start()
    standby = EmbeddedPostgres(root / "standby")
    try:
        user = _run_as()
        standby._prepare_dirs(user)
        subprocess.run([pg_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                        "-D", str(standby.pgdata), "-R", "-X", "stream", "--no-sync"],
                       check=True, capture_output=True, timeout=120, **as_user(user))  # type: ignore[call-overload]
        standby.pgdata.chmod(0o700)  # PostgreSQL refuses a group/world-readable data directory
        standby.start()
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()


def wait_for(conn: psycopg2.extensions.connection, sql: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    with conn.cursor() as cur:
        while True:
            cur.execute(sql)
            row = cur.fetchone()
            if row and row[0]:
                return
            assert time.monotonic() < deadline, f"timed out waiting for: {sql}"
            time.sleep(0.1)


def test_replica_lag_is_measured_and_graded(replica: tuple[EmbeddedPostgres, EmbeddedPostgres]) -> None:
    primary, standby = replica
    writer = psycopg2.connect(primary.url(), connect_timeout=5)
    writer.autocommit = True
    watcher = psycopg2.connect(standby.url(), connect_timeout=5)
    watcher.autocommit = True
    lag_limits = Thresholds(pg_replication_lag_s=(1, 3600), **LENIENT_CONNECTIONS)
    try:
        with writer.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS beat (at timestamptz)")
            cur.execute("INSERT INTO beat VALUES (now())")
        wait_for(watcher, "SELECT count(*) FROM pg_class WHERE relname = 'beat'")
        wait_for(watcher, "SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()")
        caught_up = pg.check(target(standby.url()), lag_limits)

        with watcher.cursor() as cur:
            cur.execute("SELECT pg_wal_replay_pause()")
        time.sleep(1.2)
        with writer.cursor() as cur:
            cur.execute("INSERT INTO beat VALUES (now())")
        wait_for(watcher, "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")
        behind = pg.check(target(standby.url()), lag_limits)
        primary_view = pg.check(target(primary.url()), lag_limits)
    finally:
        with watcher.cursor() as cur:
            cur.execute("SELECT pg_wal_replay_resume()")
        writer.close()
        watcher.close()

    assert caught_up.status == "ok", caught_up.summary
    assert caught_up.metrics["role"] == "replica" and caught_up.metrics["replication_lag_s"] == 0
    assert "(replica)" in caught_up.summary and "replica lag 0s" in caught_up.summary
    assert behind.status == "warning", behind.summary
    assert behind.metrics["replication_lag_s"] >= 1.0 and "replication lag" in behind.summary
    assert primary_view.status == "ok" and primary_view.metrics["replication_lag_s"] is None


BASE = pg.PgSnapshot(connect_ms=5, version="15.4", connections=10, max_connections=100)


@pytest.mark.parametrize(("changes", "status", "reason"), [
    ({}, "ok", None),
    ({"connect_ms": 499}, "ok", None),
    ({"connect_ms": 500}, "warning", "connect 500 ms >= 500 ms"),
    ({"connect_ms": 2500}, "critical", "connect 2500 ms >= 2000 ms"),
    ({"connections": 79}, "ok", None),
    ({"connections": 80}, "warning", "connections 80% >= 80%"),
    ({"connections": 95}, "critical", "connections 95% >= 90%"),
    ({"longest_tx_s": 299.0, "longest_tx_state": "active"}, "ok", None),
    ({"longest_tx_s": 300.0, "longest_tx_state": "active"}, "warning", "longest transaction 300s >= 300s (active"),
    ({"longest_tx_s": 4000.0, "longest_tx_state": "idle in transaction"}, "critical", "idle in transaction"),
    ({"blks_hit": 9_600, "blks_read": 400}, "ok", None),
    ({"blks_hit": 9_400, "blks_read": 600}, "warning", "cache hit ratio 0.94 < 0.95"),
    ({"blks_hit": 8_900, "blks_read": 1_100}, "critical", "cache hit ratio 0.89 < 0.9"),
    ({"blks_hit": 10, "blks_read": 990}, "ok", None),  # too few reads to mean anything
    ({"in_recovery": True, "replication_lag_s": 0.0}, "ok", None),
    ({"in_recovery": True, "replication_lag_s": 45.0}, "warning", "replication lag 45s >= 30s"),
    ({"in_recovery": True, "replication_lag_s": 301.0}, "critical", "replication lag 301s >= 300s"),
    ({"in_recovery": True, "replication_lag_s": None}, "warning", "lag unknown"),
    ({"in_recovery": False, "replication_lag_s": 1000.0}, "ok", None),  # a primary has no lag
    ({"connections": 85, "connect_ms": 3000}, "critical", "connect 3000 ms"),  # worst wins, listed first
])
def test_assess_grades_each_signal(changes: dict[str, object], status: str, reason: str | None) -> None:
    result = pg.assess(replace(BASE, **changes), Thresholds())  # type: ignore[arg-type]
    assert result.status == status, result.summary
    if reason is None:
        assert result.metrics["problems"] == []
    else:
        assert reason in result.metrics["problems"][0]
        assert reason in result.summary


def test_assess_summary_reads_as_one_line() -> None:
    snap = replace(BASE, connections=12, blks_hit=99_200, blks_read=800, longest_tx_s=3.0, longest_tx_state="active",
                   in_recovery=True, replication_lag_s=2.0)
    result = pg.assess(snap, Thresholds())
    assert result.summary == ("PostgreSQL 15.4 (replica): 12/100 connections, cache hit 99.2%, longest tx 3s, "
                              "replica lag 2s, connect 5 ms")
