"""What a store holds for one target: every backup dir, with its manifest (if any) and
verification state. A dir without a ``complete`` manifest is listed (prune removes
it) but never offered for verification or restore.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from tasks.core.backup.layout import MANIFEST, BackupRef, target_prefix
from tasks.core.backup.manifest import (
    BackupManifest,
    Verification,
    read_manifest,
    read_verification,
)
from tasks.core.backup.store import BackupStore


@dataclass
class BackupRecord:
    ref: BackupRef
    keys: list[str]
    manifest: BackupManifest | None
    verification: Verification = field(default_factory=Verification)
    sizes: dict[str, int] = field(default_factory=dict)  # object name → size as listed by the store

    def size_problem(self) -> str | None:
        """A data object missing from the store, or of another size than its manifest says
        (the cheap check: a listing, no read). None when every object is there, whole."""
        if self.manifest is None:
            return None
        for obj in self.manifest.objects:
            listed = self.sizes.get(obj.name)
            if listed is None:
                return f"{self.ref.key(obj.name)}: missing from the store"
            if listed != obj.size:
                return (f"{self.ref.key(obj.name)}: {listed} bytes in the store, manifest says {obj.size}"
                        " (truncated or replaced)")
        return None

    @property
    def complete(self) -> bool:
        return self.manifest is not None and self.manifest.complete

    @property
    def started_at(self) -> datetime:
        return self.ref.started_at

    @property
    def state(self) -> str:
        """complete / failed (manifest says so) / incomplete (no manifest: killed or running)."""
        if self.manifest is None:
            return "incomplete"
        return self.manifest.status


def list_backups(store: BackupStore, kind: str, target: str) -> list[BackupRecord]:
    """Every backup dir of one target, oldest first."""
    keys: dict[BackupRef, list[str]] = defaultdict(list)
    sizes: dict[BackupRef, dict[str, int]] = defaultdict(dict)
    for obj in store.list_objects(target_prefix(kind, target)):
        parsed = BackupRef.from_key(obj.key)
        if parsed is not None and parsed[0].kind == kind and parsed[0].target == target:
            keys[parsed[0]].append(obj.key)
            sizes[parsed[0]][parsed[1]] = obj.size
    records = []
    for ref in sorted(keys, key=lambda r: r.backup_id):
        names = {k.rsplit("/", 1)[1] for k in keys[ref]}
        manifest = read_manifest(store, ref) if MANIFEST in names else None
        verification = read_verification(store, ref) if manifest is not None and manifest.complete else Verification()
        records.append(BackupRecord(ref, sorted(keys[ref]), manifest, verification, sizes[ref]))
    return records


def complete_backups(records: list[BackupRecord]) -> list[BackupRecord]:
    return [r for r in records if r.complete]


def find(records: list[BackupRecord], backup_id: str | None) -> BackupRecord | None:
    """The complete backup with this id, or the newest complete one when ``backup_id`` is empty."""
    done = complete_backups(records)
    if not backup_id:
        return done[-1] if done else None
    return next((r for r in done if r.ref.backup_id == backup_id), None)
