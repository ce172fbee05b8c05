"""Host file upkeep: thin shells over ``tasks.core.files`` (Celery-free). Each runs on the
host that holds the files (queue ``<role>.<impact>.<host>``).

From a Python shell::

    from tasks.files import rotate_logs, clean_tmp, audit_permissions
    rotate_logs.delay("app", dry_run=True).get(timeout=60)
    clean_tmp.delay("clo-tmp", dry_run=True).get(timeout=60)
    audit_permissions.delay("clo-app", fix=True, dry_run=True).get(timeout=120)
"""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.core.files import audit as files_audit
from tasks.core.files import clean_tmp as files_clean_tmp
from tasks.core.files import rotate
from workers.config import AuditTarget, LogsTarget, TmpTarget
from workers.records.outcome import Result, RunContext
from workers.taskdef import maintenance_task


@maintenance_task("files.clean_tmp", impact="low", target="tmp", soft_time_limit=900, time_limit=960)
def clean_tmp(run: RunContext, target: TmpTarget) -> Result:
    """Delete old temporary files under a [[tmp]] root (no symlinks followed, open files kept)."""
    budget = run.budget()
    return files_clean_tmp.clean(target, dry_run=run.dry_run, remaining_s=budget.remaining,
                                 checkpoint=run.checkpoint)


@maintenance_task("files.audit_permissions", impact="none", target="audit", soft_time_limit=900, time_limit=960)
def audit_permissions(run: RunContext, target: AuditTarget, fix: bool = False) -> Result:
    """Audit permissions (world-writable, setuid, readable secrets, owners) into a security score."""
    return files_audit.audit(target, dry_run=run.dry_run, fix=fix, checkpoint=run.checkpoint)


@maintenance_task("files.rotate_logs", impact="low", target="logs", soft_time_limit=1800, time_limit=1920,
                  max_retries=1, repeatable=False)
def rotate_logs(run: RunContext, target: LogsTarget) -> Result:
    """Rotate, compress (gzip or zstd, parallel) and expire the logs of a [[logs]] target, as logrotate would."""
    return rotate.run(target, datetime.now(UTC).astimezone(), dry_run=run.dry_run)
