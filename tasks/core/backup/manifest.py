"""``BackupManifest`` (``manifest.json``, written last) and ``Verification``
(``verification.json``: what verify and restore_test found, so it is not redone).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tasks.core.backup.layout import MANIFEST, VERIFICATION, BackupRef
from tasks.core.backup.store import BackupStore, ObjectMissing
from tasks.core.backup.stream import ObjectInfo

logger = logging.getLogger(__name__)
FORMAT_VERSION = 1
COMPLETE, FAILED = "complete", "failed"


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when else None


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class BackupManifest:
    """What a backup is: its objects and checksums, where it came from, what was in it."""

    ref: BackupRef
    started_at: datetime
    status: str = FAILED
    finished_at: datetime | None = None
    host: str = ""
    task_id: str = ""
    objects: list[ObjectInfo] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)  # server version, database, paths...
    tools: dict[str, str] = field(default_factory=dict)  # pg_dump 18.6, zstandard 0.25...
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)  # table/db/path → {rows|keys|files, method}
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.status == COMPLETE

    @property
    def duration_s(self) -> float | None:
        return round((self.finished_at - self.started_at).total_seconds(), 3) if self.finished_at else None

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)

    def object(self, name: str | None = None) -> ObjectInfo:
        """The named data object (the first one when ``name`` is None)."""
        for o in self.objects:
            if name is None or o.name == name:
                return o
        raise KeyError(name or "no data object")

    def as_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION, "backup_id": self.ref.backup_id, "kind": self.ref.kind,
            "target": self.ref.target, "status": self.status, "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at), "duration_s": self.duration_s, "host": self.host,
            "task_id": self.task_id, "size": self.size, "objects": [o.as_dict() for o in self.objects],
            "source": self.source, "tools": self.tools, "counts": self.counts, "error": self.error,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False, default=str).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackupManifest:
        ref = BackupRef(data["kind"], data["target"], data["backup_id"])
        started = parse_time(data["started_at"])
        assert started is not None
        return cls(
            ref=ref, started_at=started, status=data.get("status", FAILED),
            finished_at=parse_time(data.get("finished_at")), host=data.get("host", ""),
            task_id=data.get("task_id", ""),
            objects=[ObjectInfo(o["name"], int(o["size"]), o["sha256"], int(o.get("raw_size", 0)), o["format"],
                                o.get("compression", "zstd")) for o in data.get("objects", [])],
            source=data.get("source", {}), tools=data.get("tools", {}), counts=data.get("counts", {}),
            error=data.get("error"),
        )


@dataclass
class Check:
    """One verification step's result."""

    at: datetime
    ok: bool
    detail: str = ""
    duration_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"at": iso(self.at), "ok": self.ok, "detail": self.detail, "duration_s": self.duration_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Check | None:
        if not data:
            return None
        at = parse_time(data.get("at"))
        assert at is not None
        return cls(at, bool(data.get("ok")), data.get("detail", ""), data.get("duration_s"))


@dataclass
class Verification:
    """``verification.json``: checksum and format checks (backup.verify), restore test."""

    checksum: Check | None = None
    format: Check | None = None
    restore: Check | None = None

    @property
    def checksum_ok(self) -> bool:
        return bool(self.checksum and self.checksum.ok)

    @property
    def corrupt(self) -> bool:
        return bool(self.checksum and not self.checksum.ok)

    @property
    def restore_ok(self) -> bool:
        return bool(self.restore and self.restore.ok)

    @property
    def verified(self) -> bool:
        """Counts toward keep_min: checksum-verified (and format-checked) or restore-tested, and
        not found corrupt since (a failed re-check takes the status away at once)."""
        if self.corrupt:
            return False
        return self.restore_ok or (self.checksum_ok and bool(self.format and self.format.ok))

    def to_json(self) -> bytes:
        return json.dumps({k: (getattr(self, k).as_dict() if getattr(self, k) else None)
                           for k in ("checksum", "format", "restore")}, indent=2).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Verification:
        data = json.loads(raw)
        return cls(Check.from_dict(data.get("checksum")), Check.from_dict(data.get("format")),
                   Check.from_dict(data.get("restore")))


def write_manifest(store: BackupStore, manifest: BackupManifest) -> None:
    store.put_bytes(manifest.ref.key(MANIFEST), manifest.to_json())


def read_manifest(store: BackupStore, ref: BackupRef) -> BackupManifest | None:
    """The manifest, or None when absent or unreadable (a backup that does not exist)."""
    try:
        raw = store.get_bytes(ref.key(MANIFEST))
    except ObjectMissing:
        return None
    try:
        return BackupManifest.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        logger.warning("unreadable manifest %s: %s", ref.key(MANIFEST), exc)
        return None


def read_verification(store: BackupStore, ref: BackupRef) -> Verification:
    try:
        return Verification.from_json(store.get_bytes(ref.key(VERIFICATION)))
    except ObjectMissing:
        return Verification()
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        logger.warning("unreadable %s: %s", ref.key(VERIFICATION), exc)
        return Verification()


def write_verification(store: BackupStore, ref: BackupRef, state: Verification) -> None:
    store.put_bytes(ref.key(VERIFICATION), state.to_json())
