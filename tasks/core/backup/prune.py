"""``backup.prune``: verified-aware retention.

``select`` is pure (tested with a table of cases): which backups go and why.
- incomplete (no manifest: killed or still running) and failed backups go once older
  than ``incomplete_after`` (1 day); corrupt ones (checksum mismatch) go at once;
- complete backups younger than ``max_age_days`` stay; so do the daily/weekly/monthly
  tier representatives;
- whatever the policy, the newest *complete* backup (not known corrupt) and the newest
  *verified* backup always stay: prune never leaves a target without its last good
  backup, even when verification is failing or off and backups stopped long ago;
- ``keep_min`` counts verified backups only (checksum-verified or restore-tested): the
  newest verified ones are kept until there are ``keep_min`` of them.
``apply`` deletes the manifest first, so an interrupted delete leaves an incomplete
backup (pruned next time), never a complete manifest over missing data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tasks.core.backup.inventory import BackupRecord, list_backups
from tasks.core.backup.layout import MANIFEST, target_prefix
from tasks.core.backup.store import BackupStore
from tasks.core.units import human_bytes
from workers.config import RetentionSection, parse_age
from workers.records.outcome import Result

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    backup_id: str
    started_at: datetime
    state: str  # complete / failed / incomplete
    verified: bool = False
    corrupt: bool = False


@dataclass(frozen=True)
class Policy:
    max_age: timedelta = timedelta(days=30)
    keep_min: int = 3
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    incomplete_after: timedelta = timedelta(days=1)

    @classmethod
    def of(cls, section: RetentionSection) -> Policy:
        return cls(timedelta(days=section.max_age_days), section.keep_min, section.daily, section.weekly,
                   section.monthly, parse_age(section.incomplete_after))


@dataclass(frozen=True)
class Decision:
    backup_id: str
    keep: bool
    reason: str


_TIERS: dict[str, Callable[[datetime], Hashable]] = {
    "daily": lambda t: t.date(),
    "weekly": lambda t: t.isocalendar()[:2],
    "monthly": lambda t: (t.year, t.month),
}


def select(candidates: Sequence[Candidate], policy: Policy, now: datetime) -> list[Decision]:
    """Keep or delete each candidate, with the reason. Pure."""
    keep: dict[str, str] = {}
    drop: dict[str, str] = {}
    good = sorted((c for c in candidates if c.state == "complete" and not c.corrupt),
                  key=lambda c: (c.started_at, c.backup_id), reverse=True)  # newest first (ids sort by time)
    verified = [c for c in good if c.verified]  # a corrupt backup is never counted as verified
    for c in candidates:
        age = now - c.started_at
        if c.state != "complete":
            if age > policy.incomplete_after:
                drop[c.backup_id] = f"{c.state} backup older than {_age(policy.incomplete_after)}"
            else:
                keep[c.backup_id] = f"recent {c.state} backup (may still be running)"
        elif c.corrupt:
            drop[c.backup_id] = "corrupt: checksum does not match its manifest"
    if verified:
        keep[verified[0].backup_id] = "newest verified backup"
    if good:  # kept even unverified and however old: it may be the only copy there is
        keep.setdefault(good[0].backup_id, "newest complete backup")
    for c in good:
        if now - c.started_at <= policy.max_age:
            keep.setdefault(c.backup_id, f"younger than {_age(policy.max_age)}")
    for tier, count in (("daily", policy.daily), ("weekly", policy.weekly), ("monthly", policy.monthly)):
        buckets: dict[Hashable, list[Candidate]] = {}
        for c in good:
            buckets.setdefault(_TIERS[tier](c.started_at), []).append(c)
        for bucket in list(buckets.values())[:count]:  # dicts keep insertion order: newest buckets first
            chosen = next((c for c in bucket if c.verified), bucket[0])
            keep.setdefault(chosen.backup_id, f"{tier} tier ({chosen.started_at:%Y-%m-%d})")
    kept_verified = sum(1 for c in verified if c.backup_id in keep)
    for c in verified:
        if kept_verified >= policy.keep_min:
            break
        if c.backup_id not in keep:
            keep[c.backup_id] = f"keep_min={policy.keep_min} verified backups"
            kept_verified += 1
    out = []
    for c in sorted(candidates, key=lambda c: c.started_at):
        if c.backup_id in drop:
            out.append(Decision(c.backup_id, False, drop[c.backup_id]))
        elif c.backup_id in keep:
            out.append(Decision(c.backup_id, True, keep[c.backup_id]))
        else:
            out.append(Decision(c.backup_id, False, f"older than {_age(policy.max_age)}, in no tier, "
                                                   f"not needed for keep_min"))
    return out


def _age(delta: timedelta) -> str:
    s = delta.total_seconds()
    return f"{s / 86400:g}d" if s >= 86400 else f"{s / 3600:g}h"


def candidate(record: BackupRecord) -> Candidate:
    return Candidate(record.ref.backup_id, record.started_at, record.state, record.verification.verified,
                     record.verification.corrupt)


def apply(store: BackupStore, kind: str, target: str, policy: Policy, *, now: datetime,
          dry_run: bool = False) -> Result:
    records = {r.ref.backup_id: r for r in list_backups(store, kind, target)}
    decisions = select([candidate(r) for r in records.values()], policy, now)
    actions: list[str] = []
    freed = 0
    for d in decisions:
        if d.keep:
            continue
        record = records[d.backup_id]
        size = 0
        if record.manifest is not None:
            size = record.manifest.size
        actions.append(f"{'would delete' if dry_run else 'deleted'} {record.ref.dir} ({d.reason})")
        if not dry_run:
            first = [k for k in record.keys if k.endswith("/" + MANIFEST)]
            store.delete(first)  # the manifest first: a half-deleted backup is merely incomplete
            store.delete([k for k in record.keys if k not in first])
        freed += size
    uploads = store.cleanup_stale_uploads(target_prefix(kind, target), now - policy.incomplete_after, dry_run)
    actions += [f"{'would abort' if dry_run else 'aborted'} stale upload {u}" for u in uploads]
    gone = [d for d in decisions if not d.keep]
    kept = [d for d in decisions if d.keep]
    metrics: dict[str, Any] = {"kept": len(kept), "deleted": len(gone), "freed_bytes": freed,
                               "stale_uploads": len(uploads), "dry_run": dry_run,
                               "kept_reasons": {d.backup_id: d.reason for d in kept}}
    verb = "would delete" if dry_run else "deleted"
    summary = (f"{target}: {verb} {len(gone)} of {len(decisions)} backups ({human_bytes(freed)}), kept {len(kept)}"
               if decisions else f"{target}: no backups in {store.location}")
    return Result("ok", summary, metrics, actions)
