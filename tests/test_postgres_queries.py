"""Query reports on a real server: pg_stat_statements present / absent / not preloaded,
long sessions graded and (opt-in, allow-listed) terminated."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from tasks.core.postgres import long_queries, slow_queries
from tests.conftest import ConfigFactory, PgServer, wait_until
from tests.test_postgres_support import ctx, pg_block, scalar, session, target_of
from workers.errors import SkippedError


def test_slow_queries_without_extension_is_skipped_with_the_command(config: ConfigFactory, target_db: str) -> None:
    target = target_of(config, pg_block(target_db))
    with pytest.raises(SkippedError) as skipped:
        slow_queries.slow_queries(ctx("postgres.slow_queries"), target)
    assert "CREATE EXTENSION pg_stat_statements;" in str(skipped.value)
    assert "shared_preload_libraries" in str(skipped.value)


def test_slow_queries_with_extension(config: ConfigFactory, target_db: str) -> None:
    with session(target_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE EXTENSION pg_stat_statements")
    preloaded = "pg_stat_statements" in (scalar(target_db, "SHOW shared_preload_libraries") or "")
    target = target_of(config, pg_block(target_db, "slow_query_mean_ms = [20, 10000]\nslow_queries_top = 3"))
    if not preloaded:  # the machine's PostgreSQL 15: installed but not loaded
        with pytest.raises(SkippedError, match="shared_preload_libraries = 'pg_stat_statements'"):
            slow_queries.slow_queries(ctx("postgres.slow_queries"), target)
        return
    with session(target_db) as conn, conn.cursor() as cur:
        for _ in range(3):
            cur.execute("SELECT pg_sleep(0.05)")
        for _ in range(50):
            cur.execute("SELECT 1")
    result = slow_queries.slow_queries(ctx("postgres.slow_queries"), target)
    top = result.metrics["by_mean"][0]
    assert "pg_sleep" in top["query"] and top["calls"] == 3 and top["mean_ms"] >= 50
    assert len(result.metrics["by_mean"]) <= 3 and result.metrics["by_total"]
    assert result.status == "warning"  # mean 50 ms > warning 20 ms
    assert top["p95_ms"] >= top["mean_ms"] and top["stddev_ms"] >= 0  # estimated from the stddev


@pytest.fixture
def victim_role(pg_server: PgServer) -> Iterator[str]:
    """A non-superuser login role (cluster-wide, dropped after the test)."""
    role = f"maintd_victim_{uuid.uuid4().hex[:8]}"
    admin = pg_server.admin()
    admin.cursor().execute(f'CREATE ROLE "{role}" LOGIN')
    yield role
    cur = admin.cursor()
    cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
    wait_until(lambda: _count(admin, role) == 0, 10, "victim sessions to end")
    cur.execute(f'DROP ROLE "{role}"')
    admin.close()


def _count(admin: psycopg2.extensions.connection, role: str) -> int:
    cur = admin.cursor()
    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,))
    return int(cur.fetchone()[0])


def _as(dsn: str, user: str, app: str) -> psycopg2.extensions.connection:
    return psycopg2.connect(dsn, user=user, application_name=app, connect_timeout=5)


def test_long_queries_graded_and_terminated_only_when_allowed(config: ConfigFactory, target_db: str,
                                                               victim_role: str) -> None:
    sleeper = _as(target_db, victim_role, "report-job")
    sleeper.autocommit = True
    idle_tx = _as(target_db, victim_role, "report-job")
    idle_tx.cursor().execute("SELECT 1")  # idle in transaction from here on
    superuser = psycopg2.connect(target_db, application_name="report-job", connect_timeout=5)
    superuser.autocommit = True
    ours = _as(target_db, victim_role, "maintd:postgres.vacuum_full")
    ours.cursor().execute("SELECT 1")
    errors: dict[str, BaseException] = {}

    def run(name: str, conn: psycopg2.extensions.connection) -> None:
        try:
            conn.cursor().execute("SELECT pg_sleep(60) /* token 'Sup3rSecret' */")
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            errors[name] = exc

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in (("sleeper", sleeper), ("superuser", superuser))]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: scalar(target_db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE"
                                             " 'SELECT pg_sleep(60)%%' AND now() - query_start > interval '1.2 s'") == 2,
                   15, "both sleepers to pass the critical age")
        base = pg_block(target_db) + "[thresholds]\npg_long_transaction_s = [0.5, 1.0]\n"
        target = target_of(config, base)
        report = long_queries.long_queries(ctx("postgres.long_queries"), target, terminate=True)
        assert report.status == "critical" and report.actions == []  # no allow-list: nothing terminated
        assert report.metrics["long"] == 3  # maintd's own session is listed apart, never graded
        assert [s["application"] for s in report.metrics["maintd_sessions"]] == ["maintd:postgres.vacuum_full"]
        assert "Sup3rSecret" not in str(report.metrics) and "'?'" in str(report.metrics)

        allowed = target_of(config, pg_block(target_db, 'terminate_applications = ["report-job"]\n'
                                                        f'terminate_users = ["{victim_role}"]')
                            + "[thresholds]\npg_long_transaction_s = [0.5, 1.0]\n")
        plan = long_queries.long_queries(ctx("postgres.long_queries", dry_run=True), allowed, terminate=True)
        assert len(plan.actions) == 2 and all("pg_terminate_backend" in a for a in plan.actions)
        assert not errors  # a plan terminates nothing
        pids = {sleeper.get_backend_pid(), idle_tx.get_backend_pid()}
        assert {int(a.split("(")[1].split(")")[0]) for a in plan.actions} == pids

        done = long_queries.long_queries(ctx("postgres.long_queries"), allowed, terminate=True)
        assert len(done.actions) == 2 and {t["pid"] for t in done.metrics["terminated"]} == pids
        assert done.metrics["escalated_impact"] == "high"
        threads[0].join(10)
        assert isinstance(errors.get("sleeper"), psycopg2.OperationalError)
        assert "superuser" not in errors  # superusers and maintd's own sessions are never terminated
        ours.cursor().execute("SELECT 1")
    finally:
        superuser.cancel()
        for t in threads:
            t.join(10)
        for c in (sleeper, idle_tx, superuser, ours):
            c.close()
