"""Hostile identifiers in config (quotes, semicolons, mixed case, unicode, dots) are
maintained correctly and inject nothing."""

from __future__ import annotations

from psycopg2 import sql

from tasks.core.postgres import analyze, reindex, retention, vacuum, vacuum_full
from tests.conftest import ConfigFactory
from tests.test_postgres_support import (
    bloat_table,
    ctx,
    pg_block,
    scalar,
    session,
    table_stats,
    target_of,
    toml_str,
    wait_dead,
)

TABLE = 'Audit "Logs"; DROP TABLE victim; --ü'
COLUMN = 'Created "At"; DELETE FROM victim; --ß'
ARCHIVE = "Audit 'Archive'); DROP TABLE victim; --ä"
SCHEMA = 'MySchema "x"'
DOTTED = "Tëst.Dot;"  # a dot inside the table name; lives in SCHEMA


def _victim(dsn: str) -> None:
    with session(dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE victim (id int)")
        cur.execute("INSERT INTO victim VALUES (1), (2), (3)")


def _victim_intact(dsn: str) -> bool:
    return scalar(dsn, "SELECT count(*) FROM victim") == 3


def test_retention_with_hostile_table_column_and_archive(config: ConfigFactory, target_db: str) -> None:
    _victim(target_db)
    t, c = sql.Identifier("public", TABLE), sql.Identifier(COLUMN)
    with session(target_db) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} timestamptz NOT NULL, {} text)").format(
            t, c, sql.Identifier("Nötë; x")))
        cur.execute(sql.SQL("INSERT INTO {} SELECT g, now() - CASE WHEN g <= 300 THEN interval '2 years'"
                            " ELSE interval '1 day' END, 'n' FROM generate_series(1, 500) g").format(t))
    policy = (f"[[postgres.retention]]\ntable = {toml_str(TABLE)}\ncolumn = {toml_str(COLUMN)}\n"
              f'older_than = "365d"\narchive_table = {toml_str(ARCHIVE)}\nbatch_size = 100\n')
    target = target_of(config, pg_block(target_db) + policy)
    plan = retention.retention(ctx("postgres.retention", dry_run=True), target)
    assert plan.actions[0] == ('CREATE TABLE IF NOT EXISTS "public"."Audit \'Archive\'); DROP TABLE victim; --ä"'
                               ' (LIKE "public"."Audit ""Logs""; DROP TABLE victim; --ü")')
    assert '"Created ""At""; DELETE FROM victim; --ß" < ' in plan.actions[1]
    result = retention.retention(ctx("postgres.retention"), target)
    assert result.status == "ok", result.summary
    assert result.metrics["deleted"] == result.metrics["archived"] == 300
    assert scalar(target_db, sql.SQL("SELECT count(*) FROM {}").format(t)) == 200
    assert scalar(target_db, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", ARCHIVE))) == 300
    assert _victim_intact(target_db)


def test_vacuum_analyze_reindex_with_hostile_names(config: ConfigFactory, target_db: str) -> None:
    _victim(target_db)
    with session(target_db) as conn:
        conn.cursor().execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    hostile = sql.Identifier("public", TABLE)
    dotted = sql.Identifier(SCHEMA, DOTTED)
    bloat_table(target_db, hostile, rows=8000, keep_every=10)
    bloat_table(target_db, dotted, rows=8000, keep_every=10)
    wait_dead(target_db, "public", TABLE, 7000)
    wait_dead(target_db, SCHEMA, DOTTED, 7000)
    tables = f"[{toml_str(TABLE)}, {toml_str(SCHEMA + '.' + DOTTED)}]"
    target = target_of(config, pg_block(target_db, f"vacuum_full_tables = {tables}\nanalyze_tables = {tables}\n"
                                                   "reindex_min_size_mb = 0.01"))
    q_hostile = '"public"."Audit ""Logs""; DROP TABLE victim; --ü"'
    q_dotted = '"MySchema ""x"""."Tëst.Dot;"'

    vac = vacuum.vacuum_bloated(ctx("postgres.vacuum_bloated"), target)
    assert vac.status == "ok", vac.summary
    assert sorted(vac.actions) == sorted([f"VACUUM (ANALYZE) {q_hostile}", f"VACUUM (ANALYZE) {q_dotted}"])
    assert table_stats(target_db, "public", TABLE)["dead"] == 0
    assert table_stats(target_db, SCHEMA, DOTTED)["dead"] == 0

    an = analyze.analyze(ctx("postgres.analyze"), target)
    assert an.actions == [f"ANALYZE {q_hostile}", f"ANALYZE {q_dotted}"]
    assert table_stats(target_db, SCHEMA, DOTTED)["analyzes"] == 2

    before = table_stats(target_db, "public", TABLE)["bytes"]
    full = vacuum_full.vacuum_full(ctx("postgres.vacuum_full"), target)
    assert full.status == "ok", full.summary
    assert full.actions == [f"VACUUM (FULL, ANALYZE) {q_hostile}", f"VACUUM (FULL, ANALYZE) {q_dotted}"]
    assert table_stats(target_db, "public", TABLE)["bytes"] < before / 3

    with session(target_db) as conn, conn.cursor() as cur:
        idx = 'Idx "ü"; DROP TABLE victim'
        cur.execute(sql.SQL("CREATE INDEX {} ON {} (payload)").format(sql.Identifier(idx), dotted))
        # An invalid index as a failed CREATE INDEX CONCURRENTLY leaves it (see the reindex tests for the real thing).
        cur.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass",
                    (sql.Identifier(SCHEMA, idx).as_string(conn),))
    rx = reindex.reindex(ctx("postgres.reindex"), target)
    assert 'REINDEX INDEX CONCURRENTLY "MySchema ""x"""."Idx ""ü""; DROP TABLE victim"' in rx.actions
    assert scalar(target_db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
    assert _victim_intact(target_db)
