"""Backup kinds as a table (like the alert senders): what verify, restore_test and restore
do for each kind of target. Those modules look a kind up here and stay kind-agnostic; a
new kind is one module with its backup/check/restore functions and one row below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.core.backup import files, postgres, postgres_restore, redis_backup, scratch, sqlite
from tasks.core.backup.inventory import BackupRecord
from tasks.core.backup.store import BackupStore
from workers.config import Config, FilesTarget, PostgresTarget, RedisTarget, SqliteTarget, Target
from workers.errors import PermanentError


@dataclass(frozen=True)
class RestoreRequest:
    """What a real restore was asked to do: where (``into``), whether to empty first, how long."""

    config: Config
    into: str | None
    flush: bool
    timeout_s: float
    allow_broker: bool = False  # redis: a target marked ``broker = true`` is refused without it


@dataclass(frozen=True)
class BackupKind:
    target_type: type[Target]
    # Recompute the checksum and check the format in one pass; a one-line detail. Raises
    # ``CorruptObject`` (checksum/decompression) or ``PermanentError`` (format).
    check_format: Callable[[BackupStore, BackupRecord, Target, float], str]
    # Restore into scratch, count, drop the scratch: findings with ``problems`` and ``duration_s``.
    restore_test: Callable[[BackupStore, BackupRecord, Target, float], dict[str, Any]]
    # Restore for real into the target (or ``into``): the actions taken.
    restore: Callable[[BackupStore, BackupRecord, Target, RestoreRequest], list[str]]
    # Where a restore would write, for plans and confirmations.
    destination: Callable[[Target, str | None], str]
    # Where a restore test restores to, for plans.
    scratch: Callable[[Target, str], str]
    # Checks a restore must pass before anything is read in full or written (and in a dry
    # run): raises ``PermanentError`` naming the problem and the fix; returns plan lines.
    preflight: Callable[[BackupRecord, Target, RestoreRequest], list[str]] = lambda r, t, req: []


def _redis_dest(target: Target, req: RestoreRequest) -> RedisTarget:
    if not req.into:
        assert isinstance(target, RedisTarget)
        return target
    found = req.config.target("redis", req.into)
    if not isinstance(found, RedisTarget):
        raise PermanentError(f"into={req.into!r}: not a configured redis target")
    return found


def _redis_restore(store: BackupStore, record: BackupRecord, target: Target, req: RestoreRequest) -> list[str]:
    return redis_backup.restore(store, record, _redis_dest(target, req), req.flush, req.allow_broker)


def _redis_preflight(record: BackupRecord, target: Target, req: RestoreRequest) -> list[str]:
    return redis_backup.preflight(record, _redis_dest(target, req), req.flush, req.allow_broker)


def _pg_scratch(target: Target, backup_id: str) -> str:
    assert isinstance(target, PostgresTarget)
    return f"database {scratch.scratch_name(backup_id, target.name)} on {(target.restore_dsn or target.dsn).masked}"


KINDS: dict[str, BackupKind] = {
    "postgres": BackupKind(
        PostgresTarget,
        check_format=lambda s, r, t, timeout: postgres.check_format(
            s, r, t if isinstance(t, PostgresTarget) else None, timeout),
        restore_test=lambda s, r, t, timeout: postgres_restore.restore_test(s, r, t, timeout),  # type: ignore[arg-type]
        restore=lambda s, r, t, req: postgres_restore.restore(s, r, t, req.into, req.timeout_s),  # type: ignore[arg-type]
        destination=lambda t, into: (f"database {into} on {t.dsn.masked}" if into  # type: ignore[attr-defined]
                                     else f"database {t.dsn.masked}"),  # type: ignore[attr-defined]
        scratch=_pg_scratch,
        preflight=lambda r, t, req: [postgres_restore.restore_plan(r, t, req.into).describe()],  # type: ignore[arg-type]
    ),
    "sqlite": BackupKind(
        SqliteTarget,
        check_format=lambda s, r, t, timeout: sqlite.check_format(s, r),
        restore_test=lambda s, r, t, timeout: sqlite.restore_test(s, r),
        restore=lambda s, r, t, req: sqlite.restore(s, r, t, req.into),  # type: ignore[arg-type]
        destination=lambda t, into: into or str(t.path),  # type: ignore[attr-defined]
        scratch=lambda t, backup_id: "a temp SQLite file",
    ),
    "redis": BackupKind(
        RedisTarget,
        check_format=lambda s, r, t, timeout: redis_backup.check_format(s, r, timeout),
        restore_test=lambda s, r, t, timeout: redis_backup.restore_test(s, r),
        restore=_redis_restore,
        destination=lambda t, into: f"redis target {into}" if into else f"redis {t.url.masked}",  # type: ignore[attr-defined]
        scratch=lambda t, backup_id: "a scratch redis-server on 127.0.0.1",
        preflight=_redis_preflight,
    ),
    "files": BackupKind(
        FilesTarget,
        check_format=lambda s, r, t, timeout: files.check_format(s, r),
        restore_test=lambda s, r, t, timeout: files.restore_test(s, r),
        restore=lambda s, r, t, req: files.restore(s, r, req.into),
        destination=lambda t, into: f"under {into}" if into else "the original paths",
        scratch=lambda t, backup_id: "a temp directory",
    ),
}


def kind_of(kind: str) -> BackupKind:
    try:
        return KINDS[kind]
    except KeyError:
        raise PermanentError(f"unknown backup kind {kind!r} (known: {', '.join(KINDS)})") from None
