"""PostgreSQL backups: ``pg_dump -Fc -Z 0`` streamed through multithreaded zstd straight
into the store, inside a snapshot exported by our own REPEATABLE READ transaction so the
per-table row counts in the manifest describe exactly what was dumped.

Counts: exact ``count(*)`` for tables under ``EXACT_COUNT_MAX_BYTES``, the planner's
``reltuples`` estimate above (said per table: ``method``). Restores and restore tests are
in ``postgres_restore``.
"""

from __future__ import annotations

import logging
from contextlib import closing
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from tasks.core.backup import pgarchive
from tasks.core.backup.coordinate import BackupSession, Compression, backup_result, coordinate
from tasks.core.backup.inventory import BackupRecord
from tasks.core.backup.store import BackupStore
from tasks.core.backup.stream import open_verified
from workers.config import PostgresTarget
from workers.doors import commands, pgtools
from workers.doors import postgres as db
from workers.doors.commands import CommandError
from workers.records.outcome import Result

logger = logging.getLogger(__name__)
OBJECT = "data.dump.zst"
FORMAT = "pg_dump-custom"
EXACT_COUNT_MAX_BYTES = 64 * 1024 * 1024
LOCK_WAIT_S = 300  # pg_dump waits this long for a table lock held by someone else
ESTIMATE_TOLERANCE = 0.10

TABLES = """
SELECT n.nspname AS schema, c.relname AS table, c.reltuples::bigint AS estimate,
       pg_relation_size(c.oid) AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""


def table_counts(conn: psycopg2.extensions.connection) -> dict[str, dict[str, Any]]:
    """Rows per table in the current snapshot: exact below the size limit, estimated above."""
    out: dict[str, dict[str, Any]] = {}
    for row in db.query(conn, TABLES):
        key = f"{row['schema']}.{row['table']}"
        entry: dict[str, Any] = {"schema": row["schema"], "table": row["table"], "bytes": int(row["bytes"])}
        if row["bytes"] <= EXACT_COUNT_MAX_BYTES:
            counted = db.query(conn, sql.SQL("SELECT count(*) AS n FROM {}.{}").format(
                sql.Identifier(row["schema"]), sql.Identifier(row["table"])))
            entry.update(rows=int(counted[0]["n"]), method="exact")
        else:
            entry.update(rows=int(row["estimate"]), method="estimate" if row["estimate"] >= 0 else "unknown")
        out[key] = entry
    return out


def compare_counts(expected: dict[str, dict[str, Any]], actual: dict[str, int]) -> tuple[list[str], dict[str, int]]:
    """Mismatches between a manifest's counts and restored exact counts (pure)."""
    problems, stats = [], {"exact": 0, "estimate": 0, "unknown": 0}
    for name, entry in sorted(expected.items()):
        method = entry.get("method", "exact")
        stats[method] = stats.get(method, 0) + 1
        got = actual.get(name)
        if got is None:
            problems.append(f"{name}: missing after restore")
            continue
        want = int(entry.get("rows", 0))
        if method == "exact" and got != want:
            problems.append(f"{name}: {got} rows restored, manifest says {want}")
        elif method == "estimate" and abs(got - want) > max(1000, ESTIMATE_TOLERANCE * want):
            problems.append(f"{name}: {got} rows restored, manifest estimated {want}")
    return problems, stats


def _exporter(target: PostgresTarget) -> psycopg2.extensions.connection:
    conn = db.connect(target.dsn, application_name="maintd:backup.postgres", connect_timeout_s=target.connect_timeout_s,
                      statement_timeout_s=target.statement_timeout_s, password=target.password, autocommit=False)
    conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
    return conn


def backup(target: PostgresTarget, store: BackupStore, *, host: str, task_id: str, compression: Compression,
           timeout_s: float, dry_run: bool = False) -> Result:
    """Dump ``target`` into ``store``; a complete manifest when it worked, an exception when not."""
    conn = _exporter(target)
    try:
        server = db.query(conn, "SELECT current_setting('server_version') AS v, current_database() AS db,"
                                " pg_database_size(current_database()) AS size")[0]
        tool = pgtools.tool_for("pg_dump", conn.server_version // 10000, f"the server ({server['v']})",
                                target.pg_bin_dir)
        if dry_run:
            conn.rollback()
            plan = (f"pg_dump {tool.version} ({tool.path}) -Fc -Z 0 {target.dsn.masked} | zstd -{compression.level}"
                    f" → {store.location}/postgres/{target.name}/<date>/<backup_id>/{OBJECT}, then manifest.json")
            return Result("ok", f"would back up {target.name} (PostgreSQL {server['v']}) with pg_dump {tool.version}",
                          {"pg_dump": tool.path}, [plan])
        with conn.cursor() as cur:
            cur.execute("SET idle_in_transaction_session_timeout = 0")
            if conn.server_version >= 170000:
                cur.execute("SET transaction_timeout = 0")
            cur.execute("SELECT pg_export_snapshot()")
            snapshot = cur.fetchone()[0]  # type: ignore[index]
        secrets = pgtools.target_secrets(target)

        def produce(session: BackupSession) -> None:
            session.manifest.source = {"server_version": server["v"], "database": server["db"],
                                       "dsn": target.dsn.masked, "snapshot": snapshot,
                                       "database_size_bytes": int(server["size"])}
            session.manifest.tools["pg_dump"] = commands.tool_version(tool.path)
            source = pgtools.login(pgtools.Endpoint.of(target), application_name="maintd:pg_dump",
                                   connect_timeout_s=target.connect_timeout_s)
            with pgtools.passfile(source.password.reveal() if source.password else None) as env:
                cmd = pgtools.pg_dump(tool.path, source.conninfo, timeout_s=timeout_s, env=env, snapshot=snapshot,
                                       secrets=secrets, lock_wait_timeout_s=LOCK_WAIT_S)
                with session.data_object(OBJECT, FORMAT) as out, commands.start(cmd, stdout=True) as proc:
                    buf = bytearray(1024 * 1024)
                    view = memoryview(buf)
                    while n := proc.stdout.readinto(buf):  # type: ignore[attr-defined]
                        out.write(view[:n])
                    try:
                        proc.finish()
                    except CommandError as exc:
                        raise pgtools.classify_tool_error(exc) from None
            session.manifest.counts = table_counts(conn)

        manifest = coordinate(store, "postgres", target.name, produce, host=host, task_id=task_id,
                              compression=compression, secrets=secrets, size_hint=int(server["size"]))
    except psycopg2.Error as exc:
        raise db.classify(exc, target.dsn, "backup") from None
    finally:
        conn.close()
    rows = sum(int(c.get("rows", 0)) for c in manifest.counts.values())
    return backup_result(store, manifest, f"{len(manifest.counts)} tables, ~{rows} rows")


def archive_tool(record: BackupRecord, pg_bin_dir: Any = None) -> pgtools.Tool:
    """A pg_restore able to read this archive (at least the pg_dump major that wrote it)."""
    assert record.manifest is not None
    made_by = pgtools.parse_version(record.manifest.tools.get("pg_dump", "")) or (0, 0)
    return pgtools.tool_for("pg_restore", made_by[0], f"the archive's pg_dump {made_by[0]}", pg_bin_dir)


def check_format(store: BackupStore, record: BackupRecord, target: PostgresTarget | None, timeout_s: float) -> str:
    """sha256 + zstd + ``pg_restore --list`` in one pass. Raises CorruptObject / CommandError."""
    assert record.manifest is not None
    info = record.manifest.object(OBJECT)
    tool = archive_tool(record, target.pg_bin_dir if target else None)
    with closing(open_verified(store, record.ref.key(OBJECT), info)) as reader:
        entries = pgarchive.list_archive(reader, tool, timeout_s)
    return f"pg_restore --list: {entries} TOC entries"
