"""Where a backup lives in a store: ``<kind>/<target>/<YYYY>/<MM>/<DD>/<backup_id>/<object>``
(the store adds its own prefix). Backup ids sort by time: ``20260105T010203Z-1a2b3c``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

MANIFEST = "manifest.json"
VERIFICATION = "verification.json"
_ID = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{6})$")


def new_backup_id(now: datetime | None = None) -> str:
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{when:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def id_time(backup_id: str) -> datetime | None:
    """When a backup started, from its id (None if the id is not one of ours)."""
    m = _ID.match(backup_id)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def is_backup_id(text: str) -> bool:
    return bool(_ID.match(text))


@dataclass(frozen=True)
class BackupRef:
    """One backup's address in a store."""

    kind: str
    target: str
    backup_id: str

    @property
    def started_at(self) -> datetime:
        when = id_time(self.backup_id)
        if when is None:
            raise ValueError(f"not a backup id: {self.backup_id!r}")
        return when

    @property
    def dir(self) -> str:
        t = self.started_at
        return f"{self.kind}/{self.target}/{t:%Y}/{t:%m}/{t:%d}/{self.backup_id}"

    def key(self, name: str) -> str:
        return f"{self.dir}/{name}"

    @classmethod
    def new(cls, kind: str, target: str, now: datetime | None = None) -> BackupRef:
        return cls(kind, target, new_backup_id(now))

    @classmethod
    def from_key(cls, key: str) -> tuple[BackupRef, str] | None:
        """``(ref, object name)`` for a key inside a backup dir, else None."""
        parts = key.split("/")
        if len(parts) != 7 or not is_backup_id(parts[5]):
            return None
        return cls(parts[0], parts[1], parts[5]), parts[6]


def target_prefix(kind: str, target: str) -> str:
    return f"{kind}/{target}/"
