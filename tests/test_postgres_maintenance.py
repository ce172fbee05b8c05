"""PostgreSQL maintenance, Celery-free, on a real server (15 on the machine, 18 embedded):
tables made bloated for real, effects checked in pg_stat_user_tables / pg_relation_size."""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql

from tasks.core.postgres import analyze, indexes, reindex, stats, vacuum, vacuum_full
from tests.conftest import ConfigFactory
from tests.test_postgres_support import (
    bloat_table,
    create_table,
    ctx,
    pg_block,
    scalar,
    session,
    table_stats,
    target_of,
    wait_dead,
)
from workers.errors import PermanentError


def test_vacuum_bloated_most_bloated_first_with_before_after(config: ConfigFactory, target_db: str) -> None:
    bloat_table(target_db, sql.Identifier("public", "heavy"), rows=20000, keep_every=10)  # ratio ~ 9
    bloat_table(target_db, sql.Identifier("public", "light"), rows=20000, keep_every=2)  # ratio ~ 3
    create_table(target_db, sql.Identifier("public", "clean"), rows=5000)
    before = wait_dead(target_db, "public", "heavy", 20000)
    wait_dead(target_db, "public", "light", 20000)
    target = target_of(config, pg_block(target_db))

    plan = vacuum.vacuum_bloated(ctx("postgres.vacuum_bloated", dry_run=True), target)
    assert plan.actions == ['VACUUM (ANALYZE) "public"."heavy"', 'VACUUM (ANALYZE) "public"."light"']
    assert table_stats(target_db, "public", "heavy")["vacuums"] == 0  # a plan changes nothing

    result = vacuum.vacuum_bloated(ctx("postgres.vacuum_bloated"), target)
    assert result.status == "ok", result.summary
    assert result.actions == plan.actions
    heavy = result.metrics["objects"][0]
    assert heavy["table"] == "public.heavy" and heavy["dead_before"] == before["dead"]
    assert heavy["dead_after"] == 0 and heavy["status"] == "done"
    after = table_stats(target_db, "public", "heavy")
    assert after["dead"] == 0 and after["vacuums"] == 1 and after["analyzes"] == 1
    assert table_stats(target_db, "public", "clean")["vacuums"] == 0  # below the thresholds: untouched
    # nothing left to do
    assert vacuum.vacuum_bloated(ctx("postgres.vacuum_bloated"), target).metrics["planned"] == 0


def test_vacuum_bloated_thresholds_come_from_config(config: ConfigFactory, target_db: str) -> None:
    bloat_table(target_db, sql.Identifier("public", "t"), rows=3000, keep_every=2)
    wait_dead(target_db, "public", "t", 3000)
    strict = target_of(config, pg_block(target_db, "vacuum_min_dead_tuples = 100000"))
    assert vacuum.vacuum_bloated(ctx("postgres.vacuum_bloated", dry_run=True), strict).actions == []
    loose = target_of(config, pg_block(target_db, "vacuum_min_dead_tuples = 10\nvacuum_min_dead_ratio = 0.5"))
    assert vacuum.vacuum_bloated(ctx("postgres.vacuum_bloated", dry_run=True), loose).actions == [
        'VACUUM (ANALYZE) "public"."t"']


def test_vacuum_full_reclaims_bytes_and_reports_them(config: ConfigFactory, target_db: str) -> None:
    bloat_table(target_db, sql.Identifier("public", "audit_logs"), rows=30000, keep_every=10)
    with session(target_db) as conn:
        conn.cursor().execute("VACUUM public.audit_logs")  # dead space freed, file not shrunk
    size_before = scalar(target_db, "SELECT pg_relation_size('public.audit_logs')")
    target = target_of(config, pg_block(target_db, 'vacuum_full_tables = ["audit_logs"]'))

    plan = vacuum_full.vacuum_full(ctx("postgres.vacuum_full", dry_run=True), target)
    assert plan.actions == ['VACUUM (FULL, ANALYZE) "public"."audit_logs"']
    result = vacuum_full.vacuum_full(ctx("postgres.vacuum_full"), target)
    assert result.status == "ok", result.summary
    size_after = scalar(target_db, "SELECT pg_relation_size('public.audit_logs')")
    assert size_after < size_before / 3
    table = result.metrics["objects"][0]
    assert table["table_bytes_before"] == size_before and table["table_bytes_after"] == size_after
    assert table["reclaimed_bytes"] >= size_before - size_after > 0
    assert result.metrics["reclaimed_bytes"] == table["reclaimed_bytes"]
    assert "reclaimed" in result.summary


def test_vacuum_full_selects_by_estimated_bloat_and_size_floor(config: ConfigFactory, target_db: str) -> None:
    bloat_table(target_db, sql.Identifier("public", "bloated"), rows=30000, keep_every=10)
    create_table(target_db, sql.Identifier("public", "dense"), rows=30000)
    with session(target_db) as conn:
        conn.cursor().execute("VACUUM ANALYZE public.bloated")
        conn.cursor().execute("VACUUM ANALYZE public.dense")
    target = target_of(config, pg_block(target_db, "vacuum_full_min_size_mb = 1\nvacuum_full_min_bloat_ratio = 0.5"))
    plan = vacuum_full.vacuum_full(ctx("postgres.vacuum_full", dry_run=True), target)
    assert plan.actions == ['VACUUM (FULL, ANALYZE) "public"."bloated"']
    est = plan.metrics["objects"][0]["estimated_bloat_bytes"]
    assert est > 0.7 * scalar(target_db, "SELECT pg_relation_size('public.bloated')")
    floor = target_of(config, pg_block(target_db, "vacuum_full_min_size_mb = 1000"))
    assert vacuum_full.vacuum_full(ctx("postgres.vacuum_full", dry_run=True), floor).actions == []


def test_vacuum_full_refuses_without_free_disk(config: ConfigFactory, target_db: str) -> None:
    bloat_table(target_db, sql.Identifier("public", "big"), rows=20000, keep_every=10)
    size = scalar(target_db, "SELECT pg_relation_size('public.big')")
    target = target_of(config, pg_block(target_db, 'vacuum_full_tables = ["big"]\nfree_disk_floor_mb = 0.01'))
    result = vacuum_full.vacuum_full(ctx("postgres.vacuum_full"), target)
    assert result.status == "warning"
    assert "not enough free disk" in result.summary and "public.big" in result.summary
    assert result.actions == []
    assert scalar(target_db, "SELECT pg_relation_size('public.big')") == size  # not rewritten


def test_unknown_table_in_config_is_one_clear_error(config: ConfigFactory, target_db: str) -> None:
    target = target_of(config, pg_block(target_db, 'vacuum_full_tables = ["nope"]'))
    with pytest.raises(PermanentError) as err:
        vacuum_full.vacuum_full(ctx("postgres.vacuum_full", dry_run=True), target)
    message = str(err.value)
    assert "\n" not in message
    assert "'main'" in message and "vacuum_full_tables" in message and "'nope'" in message
    target = target_of(config, pg_block(target_db, 'analyze_tables = ["public.missing"]'))
    with pytest.raises(PermanentError, match="analyze_tables: table 'public.missing' does not exist"):
        analyze.analyze(ctx("postgres.analyze"), target)


def test_analyze_whole_database_or_configured_tables(config: ConfigFactory, target_db: str) -> None:
    create_table(target_db, sql.Identifier("public", "a"), rows=100)
    create_table(target_db, sql.Identifier("public", "b"), rows=100)
    target = target_of(config, pg_block(target_db, 'analyze_tables = ["a"]'))
    result = analyze.analyze(ctx("postgres.analyze"), target)
    assert result.status == "ok" and result.actions == ['ANALYZE "public"."a"']
    assert table_stats(target_db, "public", "a")["analyzes"] == 1
    assert table_stats(target_db, "public", "b")["analyzes"] == 0
    whole = target_of(config, pg_block(target_db))
    assert analyze.analyze(ctx("postgres.analyze"), whole).actions == ["ANALYZE"]
    assert table_stats(target_db, "public", "b")["analyzes"] == 1


def _bloat_index(dsn: str) -> int:
    with session(dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE ix (id bigint, v int) WITH (autovacuum_enabled = false)")
        cur.execute("INSERT INTO ix SELECT g, g FROM generate_series(1, 100000) g")
        cur.execute("CREATE INDEX ix_v ON ix (v)")
        cur.execute("DELETE FROM ix WHERE v % 20 <> 0")
        cur.execute("VACUUM ANALYZE ix")
        cur.execute("SELECT pg_relation_size('ix_v')")
        return int(cur.fetchone()[0])


def _interrupted_rebuild(dsn: str, statement: str) -> None:
    """Start ``statement`` (a concurrent build) and cancel it while it waits for an old snapshot."""
    blocker = psycopg2.connect(dsn, connect_timeout=5)
    try:
        blocker.set_session(isolation_level="REPEATABLE READ")
        blocker.cursor().execute("SELECT count(*) FROM ix")  # holds a snapshot the build must wait out
        with session(dsn) as builder:
            pid = builder.get_backend_pid()
            with session(dsn) as admin:
                import threading

                def cancel_when_waiting() -> None:
                    cur = admin.cursor()
                    for _ in range(100):
                        cur.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
                        row = cur.fetchone()
                        if row and row[0] == "Lock":
                            break
                        import time

                        time.sleep(0.05)
                    cur.execute("SELECT pg_cancel_backend(%s)", (pid,))

                thread = threading.Thread(target=cancel_when_waiting)
                thread.start()
                with pytest.raises(psycopg2.errors.QueryCanceled):
                    builder.cursor().execute(statement)
                thread.join(10)
    finally:
        blocker.close()


def test_reindex_rebuilds_bloated_and_invalid_and_drops_leftovers(config: ConfigFactory, target_db: str) -> None:
    bloated_size = _bloat_index(target_db)
    _interrupted_rebuild(target_db, "REINDEX INDEX CONCURRENTLY ix_v")  # leaves ix_v_ccnew, invalid
    _interrupted_rebuild(target_db, "CREATE INDEX CONCURRENTLY ix_id ON ix (id)")  # leaves ix_id, invalid
    invalid = {r for r in _invalid(target_db)}
    assert invalid == {"ix_v_ccnew", "ix_id"}
    target = target_of(config, pg_block(target_db, "reindex_min_size_mb = 0.5"))

    plan = reindex.reindex(ctx("postgres.reindex", dry_run=True), target)
    assert plan.actions == ['DROP INDEX CONCURRENTLY IF EXISTS "public"."ix_v_ccnew"',
                            'REINDEX INDEX CONCURRENTLY "public"."ix_id"',
                            'REINDEX INDEX CONCURRENTLY "public"."ix_v"']
    assert [o["kind"] for o in plan.metrics["objects"]] == ["leftover", "invalid", "bloated"]

    result = reindex.reindex(ctx("postgres.reindex"), target)
    assert result.status == "ok", result.summary
    assert result.actions == plan.actions
    assert _invalid(target_db) == set()
    after = scalar(target_db, "SELECT pg_relation_size('ix_v')")
    assert after < bloated_size / 4
    rebuilt = next(o for o in result.metrics["objects"] if o["index"] == "public.ix_v")
    assert rebuilt["reclaimed_bytes"] == bloated_size - after
    # a freshly built index is not bloated: nothing left
    assert reindex.reindex(ctx("postgres.reindex", dry_run=True), target).actions == []


def _invalid(dsn: str) -> set[str]:
    with session(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid")
        return {r[0] for r in cur.fetchall()}


def test_unused_indexes_excludes_constraints_and_never_drops(config: ConfigFactory, target_db: str) -> None:
    with session(target_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE u (id bigint PRIMARY KEY, code text UNIQUE, v int, w int)")
        cur.execute("INSERT INTO u SELECT g, 'c' || g, g, g FROM generate_series(1, 60000) g")
        cur.execute("CREATE INDEX u_v ON u (v)")  # > 1 MB, never scanned
        cur.execute("CREATE INDEX u_w ON u (w)")
        cur.execute("SET enable_seqscan = off")
        cur.execute("SELECT count(*) FROM u WHERE w = 5")  # u_w is used
    target = target_of(config, pg_block(target_db))
    from tests.conftest import wait_until

    def report() -> object:
        r = indexes.unused_indexes(ctx("postgres.unused_indexes"), target)
        return r if [i["index"] for i in r.metrics["indexes"]] == ["public.u_v"] else None

    result = wait_until(report, 15, "u_w's scan to be counted")
    assert result.status == "warning" and "public.u_v" in result.summary  # type: ignore[attr-defined]
    assert result.metrics["indexes"][0]["size_bytes"] > 1024 * 1024  # type: ignore[attr-defined]
    assert scalar(target_db, "SELECT count(*) FROM pg_indexes WHERE tablename = 'u'") == 4


def test_stats_reports_sizes_connections_and_xid_age(config: ConfigFactory, target_db: str) -> None:
    create_table(target_db, sql.Identifier("public", "sized"), rows=20000)
    target = target_of(config, pg_block(target_db))
    result = stats.stats(ctx("postgres.stats"), target)
    m = result.metrics
    assert m["database_bytes"] > 0 and m["max_connections"] > 0 and m["client_connections"] >= 1
    assert m["tables"][0]["name"] == "public.sized" and m["tables"][0]["total_bytes"] > 0
    assert 0 <= m["xid_age_percent"] < 50
    assert result.status in ("ok", "warning")  # cache hit ratio of a fresh database may be low


def test_stats_reset_is_planned_and_resets_counters(config: ConfigFactory, target_db: str) -> None:
    create_table(target_db, sql.Identifier("public", "r"), rows=100)
    with session(target_db) as conn:
        conn.cursor().execute("ANALYZE r")
    target = target_of(config, pg_block(target_db))
    plan = stats.stats_reset(ctx("postgres.stats_reset", dry_run=True), target, all_counters=True)
    assert plan.actions[-2:] == ["SELECT pg_stat_reset()", "ANALYZE"]
    result = stats.stats_reset(ctx("postgres.stats_reset"), target, all_counters=True)
    assert result.status == "ok", result.summary
    s = table_stats(target_db, "public", "r")
    assert s["analyzes"] == 1 and s["live"] == 100  # reset, then live/dead estimates restored by ANALYZE
