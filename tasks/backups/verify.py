"""``backup.verify`` for one target: the newest complete backup is fresh enough, every
backup not verified yet gets its sha256 recomputed and its format checked (state kept
in ``verification.json``, so it is never redone), corrupt backups are named, and a
missing recent restore test is a warning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tasks.backups import handlers
from tasks.backups.catalog import BackupRecord, complete_backups, list_backups
from tasks.backups.manifest import Check, iso, write_verification
from tasks.backups.store import BackupStore
from tasks.backups.stream import CorruptObject
from tasks.checks.common import human_bytes
from workers.config_model import Target
from workers.errors import PermanentError, first_line
from workers.outcome import Result, worst

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Freshness:
    max_backup_age: timedelta
    restore_test_max_age: timedelta


def hours(delta: timedelta) -> str:
    h = delta.total_seconds() / 3600
    return f"{h:.1f}h" if h < 48 else f"{h / 24:.1f}d"


@dataclass
class Findings:
    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, status: str, text: str) -> None:
        self.items.append((status, text))

    @property
    def status(self) -> str:
        return worst(s for s, _ in self.items)

    def summary(self, fallback: str) -> str:
        bad = [t for s, t in self.items if s != "ok"]
        return "; ".join(bad) if bad else fallback


def verify_record(store: BackupStore, record: BackupRecord, target: Target, now: datetime,
                  timeout_s: float) -> tuple[bool, str]:
    """Checksum + format of one backup; updates ``record.verification``. (ok, detail)."""
    state = record.verification
    started = time.monotonic()
    try:
        detail = handlers.check_format(store, record, target, timeout_s)
    except CorruptObject as exc:
        state.checksum = Check(now, False, first_line(exc), round(time.monotonic() - started, 3))
        return False, first_line(exc)
    except PermanentError as exc:  # checksum matched (checked before the format), format did not
        took = round(time.monotonic() - started, 3)
        state.checksum = Check(now, True, "sha256 matches the manifest", took)
        state.format = Check(now, False, first_line(exc), took)
        return False, f"{record.ref.dir}: format check failed: {first_line(exc)}"
    took = round(time.monotonic() - started, 3)
    state.checksum = Check(now, True, "sha256 matches the manifest", took)
    state.format = Check(now, True, detail, took)
    return True, detail


def verify(store: BackupStore, target: Target, freshness: Freshness, *, now: datetime, timeout_s: float,
           dry_run: bool = False) -> Result:
    kind = target.kind
    records = list_backups(store, kind, target.name)
    complete = complete_backups(records)
    found = Findings()
    actions: list[str] = []
    metrics: dict[str, Any] = {"backups": len(complete), "incomplete": len(records) - len(complete),
                               "store": store.location}
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
    checked, corrupt = [], []
    for record in complete:
        if record.verification.checksum is not None:
            if record.verification.corrupt:
                corrupt.append(f"{store.location}/{record.ref.dir}: {record.verification.checksum.detail}")
            continue
        if dry_run:
            actions.append(f"would verify {record.ref.dir}")
            continue
        ok, detail = verify_record(store, record, target, now, timeout_s)
        write_verification(store, record.ref, record.verification)
        checked.append(record.ref.backup_id)
        actions.append(f"verified {record.ref.dir}: {detail}" if ok else f"FAILED {record.ref.dir}: {detail}")
        if not ok and record.verification.corrupt:
            corrupt.append(f"{store.location}/{detail}")
        elif not ok:
            found.add("critical", detail)
    for text in corrupt:
        found.add("critical", f"corrupt backup {text}")
    restored = [r for r in complete if r.verification.restore_ok]
    last = max((r.verification.restore.at for r in restored if r.verification.restore), default=None)
    metrics.update(verified_now=checked, corrupt=len(corrupt), last_verified_restore=iso(last),
                   verified=sum(1 for r in complete if r.verification.verified))
    if complete and now - complete[0].started_at > freshness.restore_test_max_age and \
            (last is None or now - last > freshness.restore_test_max_age):
        found.add("warning", f"no successful restore test of {target.name} in {hours(freshness.restore_test_max_age)}"
                             + (f" (last {iso(last)})" if last else " (never)"))
    ok_text = (f"{target.name}: {len(complete)} complete backups, newest {hours(now - newest.started_at)} old"
               f" ({human_bytes(newest.manifest.size if newest.manifest else 0)}), {len(checked)} verified now"
               if newest else f"{target.name}: no backups")
    return Result(found.status, found.summary(ok_text), metrics, actions)
