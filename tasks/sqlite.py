"""SQLite upkeep tasks: thin shells over ``tasks.core.sqlite`` (Celery-free), on the host that
holds the file.

From a Python shell::

    from tasks.sqlite import integrity, optimize
    integrity.delay("assets").get(timeout=600)
    optimize.delay("assets", dry_run=True).get(timeout=600)
"""

from __future__ import annotations

from tasks.core.sqlite import integrity as sqlite_integrity
from tasks.core.sqlite import optimize as sqlite_optimize
from workers.config import SqliteTarget
from workers.records.outcome import Result, RunContext
from workers.taskdef import maintenance_task


@maintenance_task("sqlite.integrity", impact="none", target="sqlite", soft_time_limit=1800, time_limit=1860,
                  max_retries=2)
def integrity(run: RunContext, target: SqliteTarget) -> Result:
    """Full integrity_check and foreign_key_check, page count, freelist ratio, WAL size (read-only)."""
    return sqlite_integrity.check(target, remaining_s=run.budget().remaining(floor_s=5.0))


@maintenance_task("sqlite.optimize", impact="medium", target="sqlite", windowed=True, soft_time_limit=1800,
                  time_limit=1860)
def optimize(run: RunContext, target: SqliteTarget) -> Result:
    """PRAGMA optimize, ANALYZE, WAL checkpoint, and VACUUM when the freelist is large and it is safe."""
    return sqlite_optimize.optimize(target, dry_run=run.dry_run, remaining_s=run.budget().remaining(floor_s=5.0),
                                    checkpoint=run.checkpoint)
