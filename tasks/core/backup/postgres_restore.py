"""PostgreSQL restores: the restore test into a scratch database, and the real restore.

Restore test: on the restore server (``restore_dsn``, default the target's own), leftovers
of killed runs are dropped first, then the free disk is checked against the database's
size (like ``postgres.vacuum_full``: measured with ``statvfs`` when the data directory is
visible here, else ``free_disk_floor_mb`` / ``restore_free_disk_floor_mb``, never guessed),
then ``maintd_restore_<id>_<tag>`` is created, restored, counted and dropped.

Real restore: all or nothing. With a ``pg_restore`` of the server's major (or any before
17) it runs ``--clean --if-exists --single-transaction --exit-on-error``. A ``pg_restore``
17+ into a server before 17 cannot (``SET transaction_timeout``), so it may only restore
into a database with nothing in it (``into``, created when missing, or an empty target on
a new server); an in-place restore over data is refused before anything is touched,
naming the fix.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from tasks.core.backup import pgarchive, scratch
from tasks.core.backup.inventory import BackupRecord
from tasks.core.backup.postgres import OBJECT, TABLES, archive_tool, compare_counts
from tasks.core.backup.scratch import ScratchDatabase, ScratchRefused
from tasks.core.backup.store import BackupStore
from tasks.core.backup.stream import open_verified
from tasks.core.postgres import disk
from workers.config import PostgresTarget
from workers.doors import pgtools
from workers.doors import postgres as db
from workers.errors import PermanentError

logger = logging.getLogger(__name__)
_SCRATCHES = """
SELECT d.datname AS name, shobj_description(d.oid, 'pg_database') AS comment,
       (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname AND a.pid <> pg_backend_pid()) AS sessions
FROM pg_database d WHERE d.datname LIKE 'maintd\\_restore\\_%' ORDER BY 1
"""
_USER_RELATIONS = """
SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
"""


def _drop(conn: psycopg2.extensions.connection, name: str) -> None:
    force = " WITH (FORCE)" if conn.server_version >= 130000 else ""
    db.query(conn, sql.SQL("DROP DATABASE IF EXISTS {}" + force).format(sql.Identifier(name)))


def drop_leftovers(admin: psycopg2.extensions.connection, target: str, now: datetime) -> list[str]:
    """Drop the scratch databases killed runs left behind (``scratch.leftovers`` decides)."""
    found = [ScratchDatabase(r["name"], r["comment"], int(r["sessions"])) for r in db.query(admin, _SCRATCHES)]
    actions = []
    for name, why in scratch.leftovers(found, target, now):
        try:
            _drop(admin, name)
        except psycopg2.Error as exc:  # e.g. another login's scratch: say so, go on with the test
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            logger.warning("backup.restore_test %s: could not drop scratch database %s: %s", target, name, reason)
            actions.append(f"could not drop leftover scratch database {name} ({why}): {reason}")
            continue
        logger.warning("backup.restore_test %s: dropped scratch database %s (%s)", target, name, why)
        actions.append(f"dropped leftover scratch database {name} ({why})")
    return actions


def _scratch_server(target: PostgresTarget) -> PostgresTarget:
    """The target as ``disk.free_space`` should see the restore server."""
    if not target.restore_dsn:
        return target
    return target.model_copy(update={"dsn": target.restore_dsn, "free_disk_floor_mb": target.restore_free_disk_floor_mb})


def restore_test(store: BackupStore, record: BackupRecord, target: PostgresTarget, timeout_s: float) -> dict[str, Any]:
    """Restore into a scratch database on the restore server, count rows, drop it. Returns
    the findings (``problems`` empty when the restore is proven); ``ScratchRefused`` when no
    scratch may be created there."""
    assert record.manifest is not None
    server = pgtools.Endpoint.restore_server_of(target)
    app = "maintd:backup.restore_test"
    name = scratch.scratch_name(record.ref.backup_id, target.name)
    admin = db.connect(server.url, application_name=app, connect_timeout_s=target.connect_timeout_s,
                       statement_timeout_s=600, password=server.password)
    try:
        major = admin.server_version // 10000
        tool = archive_tool(record, target.pg_bin_dir)
        now = datetime.now(UTC)
        dropped = drop_leftovers(admin, target.name, now)
        needed = scratch.restored_size(record.manifest)
        tablespace = db.query(admin, "SELECT dattablespace AS t FROM pg_database WHERE datname = 'template1'")
        free = disk.free_space(admin, _scratch_server(target), int(tablespace[0]["t"]) if tablespace else 1663)
        refusal = scratch.space_refusal(needed, free, f"restore server {server.url.masked}")
        if refusal:
            raise ScratchRefused(refusal, dropped)
        db.query(admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            db.query(admin, sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(scratch.comment(target.name, now))))
            scratch_db = pgtools.login(server, application_name=app, connect_timeout_s=target.connect_timeout_s,
                                       dbname=name)
            started = time.monotonic()
            obj = record.manifest.object(OBJECT)
            with closing(open_verified(store, record.ref.key(OBJECT), obj)) as reader:
                notes = pgarchive.restore_stream(reader, tool, major, scratch_db, timeout_s=timeout_s, no_owner=True,
                                                 secrets=pgtools.target_secrets(target))
            duration = time.monotonic() - started
            with db.session(scratch_db.conninfo, application_name=app, password=scratch_db.password,
                            statement_timeout_s=timeout_s) as conn:
                restored = {f"{r['schema']}.{r['table']}": r for r in db.query(conn, TABLES)}
                actual = {}
                for key, entry in restored.items():
                    n = db.query(conn, sql.SQL("SELECT count(*) AS n FROM {}.{}").format(
                        sql.Identifier(entry["schema"]), sql.Identifier(entry["table"])))
                    actual[key] = int(n[0]["n"])
        finally:
            _drop(admin, name)
    finally:
        admin.close()
    problems, stats = compare_counts(record.manifest.counts, actual)
    return {"duration_s": round(duration, 3), "problems": problems, "notes": notes, "compared": stats,
            "rows": sum(actual.values()), "tables": len(actual), "scratch": name, "pg_restore": tool.version,
            "leftovers_dropped": dropped, "free_disk_bytes": free.bytes, "needed_bytes": needed}


@dataclass(frozen=True)
class RestorePlan:
    dbname: str
    server_major: int
    tool: pgtools.Tool
    exists: bool  # False: ``into`` is created by the restore

    @property
    def tolerant(self) -> bool:
        return pgarchive.tolerant(self.tool, self.server_major)

    def describe(self) -> str:
        if self.tolerant:
            return (f"pg_restore {self.tool.version} into PostgreSQL {self.server_major} (not one transaction:"
                    f" allowed into an empty database only) into {self.dbname}")
        return f"pg_restore {self.tool.version} --clean --if-exists --single-transaction into {self.dbname}"


def _relations(target: PostgresTarget, dbname: str, app: str) -> int:
    login = pgtools.login(pgtools.Endpoint.of(target), application_name=app, connect_timeout_s=target.connect_timeout_s,
                          dbname=dbname)
    with db.session(login.conninfo, application_name=app, password=login.password, statement_timeout_s=60) as conn:
        return int(db.query(conn, _USER_RELATIONS)[0]["n"])


def restore_plan(record: BackupRecord, target: PostgresTarget, into: str | None) -> RestorePlan:
    """Where and how the restore would run; ``PermanentError`` when it must not run at all
    (checked before anything is read or written, and again just before the restore)."""
    app = "maintd:backup.restore"
    admin = db.connect(target.dsn, application_name=app, connect_timeout_s=target.connect_timeout_s,
                       statement_timeout_s=600, password=target.password)
    try:
        major = admin.server_version // 10000
        dbname = into or db.query(admin, "SELECT current_database() AS d")[0]["d"]
        exists = bool(db.query(admin, "SELECT 1 AS x FROM pg_database WHERE datname = %s", (dbname,)))
    finally:
        admin.close()
    plan = RestorePlan(dbname, major, archive_tool(record, target.pg_bin_dir), exists)
    if plan.tolerant:
        why = (f"pg_restore {plan.tool.version} is newer than the PostgreSQL {major} server, so the restore cannot"
               " run as one transaction and a failure would leave the database half-restored")
        fix = (f"restore into a new database (--arg into={dbname}_restored), check it, then switch the application"
               f" to it; or install the PostgreSQL {major} client tools (postgresql-client-{major}) or set pg_bin_dir")
        if exists and (n := _relations(target, dbname, app)):
            if into is None:
                raise PermanentError(f"refusing to restore database {dbname} in place ({n} relations): {why}."
                                     f" Instead: {fix}")
            raise PermanentError(f"refusing to restore into database {dbname}: it holds {n} relations and {why}."
                                 f" Instead: {fix.replace(f'{dbname}_restored', f'{dbname}_new')}")
    return plan


def restore(store: BackupStore, record: BackupRecord, target: PostgresTarget, into: str | None,
            timeout_s: float) -> list[str]:
    """Restore into the target database (or ``into`` on the same server, created if missing)."""
    assert record.manifest is not None
    app = "maintd:backup.restore"
    plan = restore_plan(record, target, into)
    actions = []
    if not plan.exists:
        with db.session(target.dsn, application_name=app, connect_timeout_s=target.connect_timeout_s,
                        statement_timeout_s=600, password=target.password) as admin:
            db.query(admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(plan.dbname)))
        actions.append(f"CREATE DATABASE {plan.dbname}")
    into_db = pgtools.login(pgtools.Endpoint.of(target), application_name=app,
                            connect_timeout_s=target.connect_timeout_s, dbname=plan.dbname)
    obj = record.manifest.object(OBJECT)
    try:
        with closing(open_verified(store, record.ref.key(OBJECT), obj)) as reader:
            notes = pgarchive.restore_stream(reader, plan.tool, plan.server_major, into_db, timeout_s=timeout_s,
                                             clean=plan.exists, single_transaction=True,
                                             secrets=pgtools.target_secrets(target))
    except BaseException:
        if not plan.exists:  # ours, and not restored: leave no half-restored database behind
            try:
                with db.session(target.dsn, application_name=app, connect_timeout_s=target.connect_timeout_s,
                                statement_timeout_s=600, password=target.password) as admin:
                    _drop(admin, plan.dbname)
                logger.warning("backup.restore %s: restore into %s failed; dropped the database it had created",
                               target.name, plan.dbname)
            except Exception as exc:  # the restore's own error is the one to report
                logger.warning("backup.restore %s: could not drop %s after the failed restore: %s", target.name,
                               plan.dbname, exc)
        raise
    return [*actions, plan.describe(), *notes]
