"""The restore drill behind ``backup.restore_test``: restore the newest complete backup for real into scratch (a
temporary database on the restore server, a temp SQLite file, a scratch redis-server,
a temp directory), compare row/key/file counts with the manifest, drop the scratch,
and record the duration and ``last_verified_restore`` in ``verification.json``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from tasks.core.backup.inventory import complete_backups, list_backups
from tasks.core.backup.kinds import kind_of
from tasks.core.backup.manifest import Check, iso, write_verification
from tasks.core.backup.scratch import ScratchRefused
from tasks.core.backup.store import BackupStore
from tasks.core.backup.stream import CorruptObject
from workers.config import Target
from workers.errors import PermanentError, first_line
from workers.records.outcome import Result

logger = logging.getLogger(__name__)


def scratch_of(target: Target, backup_id: str) -> str:
    return kind_of(target.kind).scratch(target, backup_id)


def restore_test(store: BackupStore, target: Target, *, now: datetime, timeout_s: float,
                 dry_run: bool = False) -> Result:
    complete = [r for r in complete_backups(list_backups(store, target.kind, target.name)) if not r.verification.corrupt]
    if not complete:
        return Result("critical", f"no complete backup of {target.name} to restore-test in {store.location}",
                      {"store": store.location})
    record = complete[-1]
    where = scratch_of(target, record.ref.backup_id)
    if dry_run:
        return Result("ok", f"would restore {record.ref.backup_id} of {target.name} into {where}", {},
                      [f"restore {record.ref.dir} into {where}", "compare counts with the manifest", "drop the scratch"])
    try:
        report = kind_of(target.kind).restore_test(store, record, target, timeout_s)
    except ScratchRefused as exc:  # nothing was tried: not a verdict on the backup, nothing recorded
        reason = " ".join(str(exc).split())
        return Result("critical", f"restore test of {target.name} not run: {reason}",
                      {"backup_id": record.ref.backup_id, "refused": reason},
                      [*exc.actions, f"restore {record.ref.dir} into {where}: refused"])
    except PermanentError as exc:  # the backup did not restore: a finding, recorded
        record.verification.restore = Check(now, False, first_line(exc))
        if isinstance(exc, CorruptObject):
            record.verification.checksum = Check(now, False, first_line(exc))
        write_verification(store, record.ref, record.verification)
        return Result("critical", f"restore test of {target.name} {record.ref.backup_id} failed: {first_line(exc)}",
                      {"backup_id": record.ref.backup_id}, [f"restore {record.ref.dir} into {where}: failed"])
    problems: list[str] = report.pop("problems")
    ok = not problems
    duration = float(report["duration_s"])
    detail = "counts match the manifest" if ok else "; ".join(problems[:3])
    state = record.verification
    state.restore = Check(now, ok, detail, duration)
    if state.checksum is None:  # the restore streamed and checked every byte
        state.checksum = Check(now, True, "sha256 matched during the restore test")
    write_verification(store, record.ref, state)
    last = iso(now) if ok else iso(max((r.verification.restore.at for r in complete
                                        if r.verification.restore_ok and r.verification.restore), default=None))
    metrics: dict[str, Any] = {"backup_id": record.ref.backup_id, "restore_duration_s": duration,
                               "last_verified_restore": last, **report}
    actions = [*report.pop("leftovers_dropped", []), f"restored {record.ref.dir} into {where} in {duration:.1f}s",
               "compared counts with the manifest", "dropped the scratch"]
    if ok:
        return Result("ok", f"{target.name} {record.ref.backup_id} restored into scratch in {duration:.1f}s; {detail}",
                      metrics, actions)
    return Result("critical", f"restore test of {target.name} {record.ref.backup_id}: {detail}", metrics, actions)
