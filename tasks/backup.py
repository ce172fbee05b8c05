"""Backup tasks: thin shells over ``tasks.core.backup`` (Celery-free).

``backup.postgres|sqlite|redis|files`` write a backup and its manifest; ``backup.verify``,
``backup.restore_test``, ``backup.prune`` and ``backup.restore`` take any backed-up
target by name (the ``backups`` target kind: postgres, sqlite, redis and files targets).
Without a ``[store]`` every backup task is skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.core.backup import drill, redis_backup
from tasks.core.backup import files as files_backup
from tasks.core.backup import postgres as pg_backup
from tasks.core.backup import prune as pruning
from tasks.core.backup import restore as restoring
from tasks.core.backup import sqlite as sqlite_backup
from tasks.core.backup import verify as verifying
from tasks.core.backup.coordinate import Compression
from tasks.core.backup.store import BackupStore
from tasks.core.backup.stores import open_store
from workers.config import (
    FilesTarget,
    PostgresTarget,
    RedisTarget,
    SqliteTarget,
    Target,
    parse_age,
)
from workers.records.outcome import Result, RunContext
from workers.taskdef import maintenance_task

HOUR = 3600


def _store(run: RunContext) -> BackupStore:
    return open_store(run.config.store)


def _budget(run: RunContext) -> float:
    """Seconds left of the run's budget (tools get this as their timeout; never under 30 s)."""
    return run.budget().remaining(floor_s=30.0)


def _context(run: RunContext) -> dict[str, object]:
    return {"host": run.host, "task_id": run.task_id, "compression": Compression.of(run.config.store)}


@maintenance_task("backup.postgres", impact="low", target="postgres",
                  soft_time_limit=3 * HOUR, time_limit=3 * HOUR + 300, max_retries=2)
def postgres(run: RunContext, target: PostgresTarget) -> Result:
    """PostgreSQL: pg_dump -Fc streamed through zstd into the store; manifest last."""
    return pg_backup.backup(target, _store(run), timeout_s=_budget(run), dry_run=run.dry_run,
                            **_context(run))  # type: ignore[arg-type]


@maintenance_task("backup.sqlite", impact="low", target="sqlite", soft_time_limit=HOUR, time_limit=HOUR + 120,
                  max_retries=2)
def sqlite(run: RunContext, target: SqliteTarget) -> Result:
    """SQLite: online backup API copy, compressed into the store; manifest last."""
    return sqlite_backup.backup(target, _store(run), dry_run=run.dry_run, **_context(run))  # type: ignore[arg-type]


@maintenance_task("backup.redis", impact="low", target="redis", soft_time_limit=HOUR, time_limit=HOUR + 120,
                  max_retries=2)
def redis(run: RunContext, target: RedisTarget) -> Result:
    """Redis: RDB over the network (SYNC), header checked, compressed into the store."""
    return redis_backup.backup(target, _store(run), timeout_s=_budget(run), dry_run=run.dry_run,
                               **_context(run))  # type: ignore[arg-type]


@maintenance_task("backup.files", impact="low", target="files", soft_time_limit=2 * HOUR,
                  time_limit=2 * HOUR + 120, max_retries=2)
def files(run: RunContext, target: FilesTarget) -> Result:
    """Files: tar of the configured paths, compressed into the store (host-pinned)."""
    return files_backup.backup(target, _store(run), dry_run=run.dry_run, **_context(run))  # type: ignore[arg-type]


@maintenance_task("backup.verify", impact="none", target="backups", soft_time_limit=2 * HOUR,
                  time_limit=2 * HOUR + 120, max_retries=2)
def verify(run: RunContext, target: Target, full: bool = False) -> Result:
    """Newest backup fresh; sizes every run; re-hash what is due (newest always); full=true: all."""
    retention = run.config.retention
    freshness = verifying.Freshness(parse_age(retention.max_backup_age), parse_age(retention.restore_test_max_age),
                                    parse_age(retention.reverify_after))
    return verifying.verify(_store(run), target, freshness, now=datetime.now(UTC),
                            timeout_s=run.budget().remaining(), dry_run=run.dry_run, full=full)


@maintenance_task("backup.restore_test", impact="medium", target="backups", soft_time_limit=3 * HOUR,
                  time_limit=3 * HOUR + 300, max_retries=1)
def restore_test(run: RunContext, target: Target) -> Result:
    """Restore the newest backup into scratch for real, compare counts, drop the scratch."""
    return drill.restore_test(_store(run), target, now=datetime.now(UTC), timeout_s=_budget(run),
                                        dry_run=run.dry_run)


@maintenance_task("backup.prune", impact="low", target="backups", soft_time_limit=1800, time_limit=1920,
                  max_retries=1)
def prune(run: RunContext, target: Target) -> Result:
    """Retention: age, tiers, keep_min verified; never the newest verified; orphans after a day."""
    policy = pruning.Policy.of(run.config.retention)
    return pruning.apply(_store(run), target.kind, target.name, policy, now=datetime.now(UTC), dry_run=run.dry_run)


# A restore is disaster recovery: it must not wait for a maintenance window (RTO 4 h), and
# is never retried on its own — nor run again after a lost worker (a --clean restore hours
# later would overwrite what was written since): not repeatable. It needs confirm="<target name>".
@maintenance_task("backup.restore", impact="high", target="backups", ad_hoc_only=True, windowed=False,
                  repeatable=False, soft_time_limit=4 * HOUR, time_limit=4 * HOUR + 300, max_retries=0)
def restore(run: RunContext, target: Target, backup_id: str = "", into: str = "", confirm: str = "",
            flush: bool = False, allow_broker: bool = False) -> Result:
    """Restore a checksum-verified backup into the target or `into`; needs confirm=<target name>."""
    return restoring.restore(_store(run), target, run.config, now=datetime.now(UTC), backup_id=backup_id,
                             into=into or None, confirm=confirm, flush=flush, timeout_s=_budget(run),
                             dry_run=run.dry_run, allow_broker=allow_broker)
