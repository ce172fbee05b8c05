"""Host file upkeep: thin shells over ``tasks.core.files`` (Celery-free)."""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.core.files import rotate
from workers.config import LogsTarget
from workers.records.outcome import Result, RunContext
from workers.taskdef import maintenance_task


@maintenance_task("files.rotate_logs", impact="low", target="logs", soft_time_limit=1800, time_limit=1920,
                  max_retries=1, repeatable=False)
def rotate_logs(run: RunContext, target: LogsTarget) -> Result:
    """Rotate, compress (gzip or zstd, parallel) and expire the logs of a [[logs]] target, as logrotate would."""
    return rotate.run(target, datetime.now(UTC).astimezone(), dry_run=run.dry_run)
