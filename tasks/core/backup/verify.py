"""``backup.verify`` for one target: the newest complete backup is fresh enough, and the
backups are proven intact again and again, not once:

- every run, every complete backup's objects are compared with the manifest's sizes from
  one store listing (cheap: no byte is read); a missing or resized object is corrupt at once;
- every run re-hashes (sha256 + format check, one streamed pass) each backup whose last
  checksum is older than ``reverify_after`` (default 7 days) or was never taken, plus the
  newest backup always: the newest first, then the oldest check first, while the run's time
  budget lasts (what is left over is named and goes first next time); ``full`` re-checks all;
- a backup found corrupt loses its verified status at once (``verification.json`` is
  rewritten before the next backup is looked at), so prune no longer counts it;
- a missing recent restore test is a warning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tasks.core.backup.inventory import BackupRecord, complete_backups, list_backups
from tasks.core.backup.kinds import kind_of
from tasks.core.backup.manifest import Check, iso, write_verification
from tasks.core.backup.store import BackupStore
from tasks.core.backup.stream import CorruptObject
from tasks.core.findings import Findings
from tasks.core.units import hours, human_bytes
from workers.config import Target
from workers.doors.commands import CommandTimeout
from workers.errors import PermanentError, first_line
from workers.records.outcome import Result

logger = logging.getLogger(__name__)
TOOL_TIMEOUT_FLOOR_S = 30.0  # a check started inside the budget gets at least this long
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Freshness:
    max_backup_age: timedelta
    restore_test_max_age: timedelta
    reverify_after: timedelta = timedelta(days=7)


def verify_record(store: BackupStore, record: BackupRecord, target: Target, now: datetime,
                  timeout_s: float) -> tuple[bool, str]:
    """Checksum + format of one backup; updates ``record.verification``. (ok, detail)."""
    state = record.verification
    started = time.monotonic()
    try:
        detail = kind_of(record.ref.kind).check_format(store, record, target, timeout_s)
    except CorruptObject as exc:
        state.checksum = Check(now, False, first_line(exc), round(time.monotonic() - started, 3))
        return False, first_line(exc)
    except CommandTimeout:
        raise
    except PermanentError as exc:  # checksum matched (checked before the format), format did not
        took = round(time.monotonic() - started, 3)
        state.checksum = Check(now, True, "sha256 matches the manifest", took)
        state.format = Check(now, False, first_line(exc), took)
        return False, f"{record.ref.dir}: format check failed: {first_line(exc)}"
    took = round(time.monotonic() - started, 3)
    state.checksum = Check(now, True, "sha256 matches the manifest", took)
    state.format = Check(now, True, detail, took)
    return True, detail


def last_checked(record: BackupRecord) -> datetime | None:
    return record.verification.checksum.at if record.verification.checksum else None


def due_for_recheck(complete: list[BackupRecord], now: datetime, reverify_after: timedelta,
                    full: bool = False) -> list[BackupRecord]:
    """The backups to re-hash, in order: the newest first (always, unless known corrupt),
    then every backup never checked or last checked ``reverify_after`` ago, oldest check
    first. ``full``: every complete backup, corrupt ones included (a re-check may clear a
    verdict caused by a bad read). Pure."""
    if not complete:
        return []
    newest = complete[-1]
    due = []
    for r in complete:
        if r.verification.corrupt and not full:
            continue
        last = last_checked(r)
        if full or r is newest or last is None or now - last >= reverify_after:
            due.append(r)
    rest = sorted((r for r in due if r is not newest), key=lambda r: (last_checked(r) or _NEVER, r.ref.backup_id))
    return ([newest] if newest in due else []) + rest


def verify(store: BackupStore, target: Target, freshness: Freshness, *, now: datetime, timeout_s: float,
           dry_run: bool = False, full: bool = False) -> Result:
    deadline = time.monotonic() + max(0.0, timeout_s)
    kind = target.kind
    records = list_backups(store, kind, target.name)
    complete = complete_backups(records)
    found = Findings()
    actions: list[str] = []
    metrics: dict[str, Any] = {"backups": len(complete), "incomplete": len(records) - len(complete),
                               "store": store.location, "full": full}
    newest = complete[-1] if complete else None
    if newest is None:
        found.add("critical", f"no complete backup of {target.name} in {store.location}")
    else:
        age = now - newest.started_at
        metrics.update(newest=newest.ref.backup_id, newest_age_h=round(age.total_seconds() / 3600, 2),
                       newest_size_bytes=newest.manifest.size if newest.manifest else 0)
        if age > freshness.max_backup_age:
            found.add("critical", f"newest complete backup of {target.name} is {hours(age)} old "
                                  f"(max {hours(freshness.max_backup_age)}): {newest.ref.backup_id}")

    # 1. sizes from the listing, every backup, every run
    for record in complete:
        problem = record.size_problem()
        if problem is None or (record.verification.corrupt and not full):
            continue
        record.verification.checksum = Check(now, False, problem)
        actions.append(f"{'would mark' if dry_run else 'marked'} {record.ref.dir} corrupt: {problem}")
        if not dry_run:
            write_verification(store, record.ref, record.verification)
    # 2. re-hash what is due, within the budget
    checked: list[str] = []
    pending: list[str] = []
    order = due_for_recheck(complete, now, freshness.reverify_after, full)
    if full:  # a size mismatch is already a verdict: reading those again proves nothing more
        order = [r for r in order if r.size_problem() is None]
    for i, record in enumerate(order):
        left = deadline - time.monotonic()
        if i > 0 and left <= 0:
            pending = [r.ref.backup_id for r in order[i:]]
            break
        last = last_checked(record)
        if dry_run:
            actions.append(f"would verify {record.ref.dir} (last checked {iso(last) or 'never'})")
            continue
        try:
            ok, detail = verify_record(store, record, target, now, max(TOOL_TIMEOUT_FLOOR_S, left))
        except CommandTimeout as exc:  # the budget ran out inside this check: not a finding
            logger.warning("backup.verify %s: %s not finished within the budget: %s", target.name,
                           record.ref.backup_id, first_line(exc))
            pending = [r.ref.backup_id for r in order[i:]]
            break
        write_verification(store, record.ref, record.verification)  # at once: prune must see a verdict
        checked.append(record.ref.backup_id)
        again = f" (last checked {iso(last)})" if last else ""
        actions.append(f"verified {record.ref.dir}{again}: {detail}" if ok else f"FAILED {record.ref.dir}: {detail}")
        if not ok and not record.verification.corrupt:
            found.add("critical", detail)
    if pending:
        actions.append(f"left for the next run (time budget spent): {', '.join(pending)}")
    # 3. verdicts
    corrupt = [r for r in complete if r.verification.corrupt]
    for r in corrupt:
        detail = r.verification.checksum.detail if r.verification.checksum else "corrupt"
        found.add("critical", f"corrupt backup {store.location}/{detail}"
                  if detail.startswith(r.ref.dir) else f"corrupt backup {store.location}/{r.ref.dir}: {detail}")
    overdue = [r for r in complete if not r.verification.corrupt
               and now - (last_checked(r) or r.started_at) > 2 * freshness.reverify_after]
    if overdue:
        found.add("warning", f"{len(overdue)} backup(s) of {target.name} not re-checked within "
                             f"{hours(2 * freshness.reverify_after)} (oldest {overdue[0].ref.backup_id}): the time"
                             " budget is too small for the store; run it with --arg full=true or raise its soft limit")
    restored = [r for r in complete if r.verification.restore_ok]
    last_restore = max((r.verification.restore.at for r in restored if r.verification.restore), default=None)
    checks = [t for r in complete if not r.verification.corrupt and (t := last_checked(r)) is not None]
    metrics.update(verified_now=checked, pending=pending, corrupt=len(corrupt), size_checked=len(complete),
                   last_verified_restore=iso(last_restore),
                   verified=sum(1 for r in complete if r.verification.verified),
                   oldest_check_age_h=round((now - min(checks)).total_seconds() / 3600, 2) if checks else None)
    if complete and now - complete[0].started_at > freshness.restore_test_max_age and \
            (last_restore is None or now - last_restore > freshness.restore_test_max_age):
        found.add("warning", f"no successful restore test of {target.name} in {hours(freshness.restore_test_max_age)}"
                             + (f" (last {iso(last_restore)})" if last_restore else " (never)"))
    ok_text = (f"{target.name}: {len(complete)} complete backups, newest {hours(now - newest.started_at)} old"
               f" ({human_bytes(newest.manifest.size if newest.manifest else 0)}), {len(checked)} re-hashed now,"
               f" all sizes match" if newest else f"{target.name}: no backups")
    return Result(found.status, found.summary(ok_text), metrics, actions)
