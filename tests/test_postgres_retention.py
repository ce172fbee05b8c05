"""Retention on a real server: archive-then-delete in batches of one transaction each,
counts that must match, adaptive batch size, the allow_empty guard, lock timeouts."""

from __future__ import annotations

import psycopg2
import pytest

from tasks.core.postgres import retention
from tests.conftest import ConfigFactory
from tests.test_postgres_support import ctx, pg_block, scalar, session, target_of
from workers.errors import PermanentError


def _events(dsn: str, expired: int = 3000, fresh: int = 2000) -> None:
    """Rows 400+ days old (expired under 365d) and rows under 10 days old: no boundary cases."""
    with session(dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE events (id bigint PRIMARY KEY, ts timestamptz NOT NULL, kind text)")
        cur.execute("INSERT INTO events SELECT g, now() - interval '400 days' - g * interval '1 minute',"
                    " CASE WHEN g %% 10 = 0 THEN 'keep' ELSE 'log' END FROM generate_series(1, %s) g", (expired,))
        cur.execute("INSERT INTO events SELECT g, now() - (g %% 10) * interval '1 day', 'log'"
                    " FROM generate_series(%s, %s) g", (expired + 1, expired + fresh))
        cur.execute("CREATE INDEX events_ts ON events (ts)")


def _policy(extra: str = "", archive: bool = True) -> str:
    body = '[[postgres.retention]]\ntable = "events"\ncolumn = "ts"\nolder_than = "365d"\n'
    if archive:
        body += 'archive_table = "events_archive"\n'
    return body + extra


@pytest.mark.parametrize("strategy", ["sweep", "limit"])
def test_archive_then_delete_in_batches(config: ConfigFactory, target_db: str, strategy: str) -> None:
    _events(target_db)
    target = target_of(config, pg_block(target_db) + _policy("batch_size = 200\nmin_batch_size = 100\n"
                                                             f'max_batch_size = 400\nstrategy = "{strategy}"\n'))
    plan = retention.retention(ctx("postgres.retention", dry_run=True), target)
    assert plan.actions[0] == 'CREATE TABLE IF NOT EXISTS "public"."events_archive" (LIKE "public"."events")'
    batch = plan.actions[1]
    if strategy == "sweep":
        assert batch.startswith('WITH moved AS (DELETE FROM "public"."events" WHERE ctid >= \'(0,0)\'::tid'
                                " AND ctid < '(")
    else:
        assert batch.startswith('WITH moved AS (DELETE FROM "public"."events" WHERE ctid = ANY(ARRAY('
                                'SELECT ctid FROM "public"."events" WHERE "ts" < \'')
        assert "LIMIT 200 FOR UPDATE SKIP LOCKED" in batch
    assert ' RETURNING "id", "ts", "kind"), archived AS (INSERT INTO "public"."events_archive" ("id", "ts", "kind")' in batch
    assert plan.metrics["deleted"] == 3000  # expired rows counted, nothing changed
    assert plan.metrics["policies"][0]["strategy"] == strategy
    assert scalar(target_db, "SELECT to_regclass('events_archive')") is None
    assert scalar(target_db, "SELECT count(*) FROM events") == 5000

    result = retention.retention(ctx("postgres.retention"), target)
    assert result.status == "ok", result.summary
    policy = result.metrics["policies"][0]
    assert policy["deleted"] == policy["archived"] == 3000 and policy["strategy"] == strategy
    assert policy["batches"] > 3  # short transactions, not one
    assert scalar(target_db, "SELECT count(*) FROM events") == 2000
    assert scalar(target_db, "SELECT count(*) FROM events_archive") == 3000
    assert scalar(target_db, "SELECT count(DISTINCT id) FROM events_archive") == 3000
    assert scalar(target_db, "SELECT max(id) FROM events_archive") == 3000
    assert scalar(target_db, "SELECT count(*) FROM events WHERE ts < now() - interval '365 days'") == 0
    assert scalar(target_db, "SELECT count(*) FROM events e JOIN events_archive a USING (id)") == 0
    # a second run has nothing left
    again = retention.retention(ctx("postgres.retention"), target)
    assert again.status == "ok" and again.metrics["deleted"] == 0


def test_auto_strategy_sweeps_when_much_expires_else_uses_the_index(config: ConfigFactory, target_db: str) -> None:
    _events(target_db, expired=3000, fresh=2000)
    with session(target_db) as conn:
        conn.cursor().execute("ANALYZE events")
    target = target_of(config, pg_block(target_db) + _policy(archive=False))
    assert retention.retention(ctx("postgres.retention", dry_run=True), target).metrics["policies"][0][
        "strategy"] == "sweep"  # 60% expires: one pass over the table
    with session(target_db) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO events SELECT g, now(), 'log' FROM generate_series(10001, 100000) g")
        cur.execute("ANALYZE events")
    assert retention.retention(ctx("postgres.retention", dry_run=True), target).metrics["policies"][0][
        "strategy"] == "limit"  # 3% expires and ts is indexed: read only those rows


def test_without_archive_and_with_where(config: ConfigFactory, target_db: str) -> None:
    _events(target_db)
    target = target_of(config, pg_block(target_db) + _policy("where = \"kind <> 'keep'\"\n", archive=False))
    result = retention.retention(ctx("postgres.retention"), target)
    assert result.status == "ok", result.summary
    assert result.metrics["deleted"] == 2700 and result.metrics["archived"] == 0
    assert scalar(target_db, "SELECT count(*) FROM events WHERE ts < now() - interval '365 days'") == 300
    assert scalar(target_db, "SELECT count(*) FROM events WHERE ts < now() - interval '365 days'"
                             " AND kind <> 'keep'") == 0


def test_batch_size_adapts_to_target_duration(config: ConfigFactory, target_db: str) -> None:
    _events(target_db, expired=6000)
    grow = target_of(config, pg_block(target_db) + _policy("batch_size = 100\nmin_batch_size = 100\n"
                                                           "max_batch_size = 3200\ntarget_batch_s = 30\n"
                                                           'strategy = "limit"\n'))
    result = retention.retention(ctx("postgres.retention"), grow)
    policy = result.metrics["policies"][0]
    # 100, 200, 400, 800, 1600, 2900 (rest), then the empty batch: doubled each time
    assert policy["batches"] == 7 and policy["batch_size"] == 3200 and policy["deleted"] == 6000


def test_delete_everything_is_refused_unless_allowed(config: ConfigFactory, target_db: str) -> None:
    _events(target_db, expired=500, fresh=0)
    target = target_of(config, pg_block(target_db) + _policy())
    result = retention.retention(ctx("postgres.retention"), target)
    assert result.status == "warning"
    assert "would delete every row of public.events" in result.summary and "allow_empty" in result.summary
    assert scalar(target_db, "SELECT count(*) FROM events") == 500
    allowed = target_of(config, pg_block(target_db) + _policy("allow_empty = true\n"))
    result = retention.retention(ctx("postgres.retention"), allowed)
    assert result.status == "ok" and result.metrics["deleted"] == 500
    assert scalar(target_db, "SELECT count(*) FROM events") == 0


def test_count_mismatch_rolls_the_batch_back(config: ConfigFactory, target_db: str) -> None:
    _events(target_db)
    with session(target_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE events_archive (LIKE events)")
        # An archive that silently drops rows: archived < deleted must never commit.
        cur.execute("CREATE FUNCTION drop_odd() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN IF NEW.id % 2 = 1 THEN RETURN NULL; END IF; RETURN NEW; END $$")
        cur.execute("CREATE TRIGGER lossy BEFORE INSERT ON events_archive FOR EACH ROW EXECUTE FUNCTION drop_odd()")
    target = target_of(config, pg_block(target_db) + _policy())
    with pytest.raises(retention.BatchMismatch, match="rolled back"):
        retention.retention(ctx("postgres.retention"), target)
    assert scalar(target_db, "SELECT count(*) FROM events") == 5000
    assert scalar(target_db, "SELECT count(*) FROM events_archive") == 0


def test_config_errors_name_target_table_and_column(config: ConfigFactory, target_db: str) -> None:
    _events(target_db)
    with session(target_db) as conn:
        conn.cursor().execute("CREATE TABLE events_archive (id bigint, ts timestamptz)")
    target = target_of(config, pg_block(target_db) + _policy())
    with pytest.raises(PermanentError, match=r"retention\[0\].archive_table: 'public.events_archive' lacks"
                                             r" column\(s\) \['kind'\]"):
        retention.retention(ctx("postgres.retention"), target)
    body = '[[postgres.retention]]\ntable = "events"\ncolumn = "nope"\nolder_than = "30d"\n'
    with pytest.raises(PermanentError, match=r"'main': retention\[0\].column: column 'nope' does not exist"):
        retention.retention(ctx("postgres.retention"), target_of(config, pg_block(target_db) + body))
    body = '[[postgres.retention]]\ntable = "kind_of_events"\ncolumn = "ts"\nolder_than = "30d"\n'
    with pytest.raises(PermanentError, match=r"retention\[0\].table: table 'kind_of_events' does not exist"):
        retention.retention(ctx("postgres.retention"), target_of(config, pg_block(target_db) + body))
    body = '[[postgres.retention]]\ntable = "events"\ncolumn = "kind"\nolder_than = "30d"\n'
    with pytest.raises(PermanentError, match="is text; need a timestamp or date column"):
        retention.retention(ctx("postgres.retention"), target_of(config, pg_block(target_db) + body))


def test_lock_timeout_moves_on_to_the_next_policy(config: ConfigFactory, target_db: str) -> None:
    _events(target_db)
    with session(target_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE other (id int, ts timestamptz)")
        cur.execute("INSERT INTO other VALUES (1, now() - interval '2 years'), (2, now())")
    second = '[[postgres.retention]]\ntable = "other"\ncolumn = "ts"\nolder_than = "365d"\n'
    target = target_of(config, pg_block(target_db, "lock_timeout_s = 0.3") + _policy() + second)
    locker = psycopg2.connect(target_db, connect_timeout=5)
    try:
        locker.cursor().execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        result = retention.retention(ctx("postgres.retention"), target)
    finally:
        locker.close()
    assert result.status == "warning"
    first, nxt = result.metrics["policies"]
    assert first["status"] == "failed" and first["reason"] == "lock timeout" and first["deleted"] == 0
    assert nxt["status"] == "done" and nxt["deleted"] == 1
    assert "lock timeout" in result.summary
    assert scalar(target_db, "SELECT count(*) FROM events") == 5000


def test_sweep_grows_its_block_ranges_and_confirms_with_a_second_pass(config: ConfigFactory, target_db: str) -> None:
    _events(target_db, expired=6000)
    target = target_of(config, pg_block(target_db) + _policy("batch_size = 100\nmin_batch_size = 100\n"
                                                             "max_batch_size = 100000\ntarget_batch_s = 30\n"
                                                             'strategy = "sweep"\n', archive=False))
    policy = retention.retention(ctx("postgres.retention"), target).metrics["policies"][0]
    assert policy["deleted"] == 6000 and policy["sweeps"] == 2  # the second pass finds nothing left
    pages = scalar(target_db, "SELECT pg_relation_size('events') / 8192")
    assert policy["batches"] < pages  # ranges doubled: far fewer batches than pages
    assert scalar(target_db, "SELECT count(*) FROM events WHERE ts < now() - interval '365 days'") == 0


def test_sweep_skips_a_row_a_writer_holds_and_says_so(config: ConfigFactory, target_db: str) -> None:
    _events(target_db)
    target = target_of(config, pg_block(target_db, "lock_timeout_s = 0.3")
                       + _policy('strategy = "sweep"\n'))
    writer = psycopg2.connect(target_db, connect_timeout=5)
    try:
        writer.cursor().execute("SELECT * FROM events WHERE id = 7 FOR UPDATE")  # an expired row, held
        result = retention.retention(ctx("postgres.retention"), target)
    finally:
        writer.close()
    assert result.status == "warning"
    policy = result.metrics["policies"][0]
    assert policy["status"] == "partial" and "locked by other sessions" in policy["reason"]
    assert policy["deleted"] == policy["archived"] == 2999
    assert scalar(target_db, "SELECT count(*) FROM events WHERE ts < now() - interval '365 days'") == 1
    again = retention.retention(ctx("postgres.retention"), target)  # the writer is gone
    assert again.status == "ok" and again.metrics["deleted"] == 1
    assert scalar(target_db, "SELECT count(*) FROM events_archive") == 3000
