"""Per-kind steps behind verify, restore_test and restore: one dispatch point, so those
modules stay kind-agnostic. Kinds: postgres, sqlite, redis, files.
"""

from __future__ import annotations

from typing import Any

from tasks.backups import files, postgres, redis_backup, sqlite
from tasks.backups.catalog import BackupRecord
from tasks.backups.store import BackupStore
from workers.config_model import (
    Config,
    FilesTarget,
    PostgresTarget,
    RedisTarget,
    SqliteTarget,
    Target,
)
from workers.errors import PermanentError

KINDS = ("postgres", "sqlite", "redis", "files")


def check_format(store: BackupStore, record: BackupRecord, target: Target, timeout_s: float) -> str:
    """Recompute the checksum and check the format in one pass; a one-line detail.

    Raises ``CorruptObject`` (checksum/decompression) or ``PermanentError`` (format)."""
    kind = record.ref.kind
    if kind == "postgres":
        return postgres.check_format(store, record, target if isinstance(target, PostgresTarget) else None, timeout_s)
    if kind == "sqlite":
        return sqlite.check_format(store, record)
    if kind == "redis":
        return redis_backup.check_format(store, record, timeout_s)
    if kind == "files":
        return files.check_format(store, record)
    raise PermanentError(f"unknown backup kind {kind!r}")


def restore_test(store: BackupStore, record: BackupRecord, target: Target, timeout_s: float) -> dict[str, Any]:
    """Restore into scratch, count, drop the scratch: findings with ``problems`` and ``duration_s``."""
    if isinstance(target, PostgresTarget):
        return postgres.restore_test(store, record, target, timeout_s)
    if isinstance(target, SqliteTarget):
        return sqlite.restore_test(store, record)
    if isinstance(target, RedisTarget):
        return redis_backup.restore_test(store, record)
    if isinstance(target, FilesTarget):
        return files.restore_test(store, record)
    raise PermanentError(f"{target.name}: no restore test for kind {target.kind!r}")


def restore(store: BackupStore, record: BackupRecord, target: Target, config: Config, *, into: str | None,
            flush: bool, timeout_s: float) -> list[str]:
    """Restore for real into the target (or ``into``): the actions taken."""
    if isinstance(target, PostgresTarget):
        return postgres.restore(store, record, target, into, timeout_s)
    if isinstance(target, SqliteTarget):
        return sqlite.restore(store, record, target, into)
    if isinstance(target, RedisTarget):
        dest = target
        if into:
            found = config.target("redis", into)
            if not isinstance(found, RedisTarget):
                raise PermanentError(f"into={into!r}: not a configured redis target")
            dest = found
        return redis_backup.restore(store, record, dest, flush)
    if isinstance(target, FilesTarget):
        return files.restore(store, record, into)
    raise PermanentError(f"{target.name}: no restore for kind {target.kind!r}")


def destination(target: Target, into: str | None) -> str:
    """Where a restore would write, for plans and confirmations."""
    if isinstance(target, PostgresTarget):
        return f"database {into} on {target.dsn.masked}" if into else f"database {target.dsn.masked}"
    if isinstance(target, SqliteTarget):
        return into or str(target.path)
    if isinstance(target, RedisTarget):
        return f"redis target {into}" if into else f"redis {target.url.masked}"
    if isinstance(target, FilesTarget):
        return f"under {into}" if into else "the original paths"
    return target.name
