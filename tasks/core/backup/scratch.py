"""Scratch databases of ``backup.restore_test`` on a PostgreSQL server: their names, which
ones are leftovers of killed runs, and whether there is room for one more. Pure.

A scratch is ``maintd_restore_<backup id>_<tag>`` where the tag is derived from the target
name, and carries a comment saying which target made it and when. At the start of a run:
- this target's scratch databases are leftovers (the target's lock excludes a second run
  of it): dropped;
- another target's are dropped only when nobody is connected and they are older than any
  run can last (``STALE_AFTER``); a scratch of a running test is never touched;
- the untagged ``maintd_restore_<backup id>`` of earlier maintd versions are dropped when
  nobody is connected to them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from tasks.core.backup.manifest import BackupManifest, iso
from tasks.core.postgres.disk import REWRITE_FACTOR, FreeSpace
from workers.errors import PermanentError

PREFIX = "maintd_restore_"
STALE_AFTER = timedelta(hours=4)  # longer than restore_test's hard time limit (3 h 5 min)
_ID = r"\d{8}t\d{6}z_[0-9a-f]{6}"
_TAGGED = re.compile(rf"^{PREFIX}{_ID}_([0-9a-f]{{6}})$")
_LEGACY = re.compile(rf"^{PREFIX}{_ID}$")
_STARTED = re.compile(r"\bstarted=(\S+)")
MB = 1024 * 1024


class ScratchRefused(PermanentError):
    """The restore test could not start (no room for the scratch, free space unknown): says
    nothing about the backup, so it is not recorded as a failed restore."""

    def __init__(self, message: str, actions: list[str] | None = None) -> None:
        super().__init__(message)
        self.actions = actions or []


def tag_of(target: str) -> str:
    return hashlib.sha1(target.encode()).hexdigest()[:6]


def scratch_name(backup_id: str, target: str) -> str:
    return f"{PREFIX}{backup_id.lower().replace('-', '_')}_{tag_of(target)}"


def comment(target: str, started: datetime) -> str:
    return f"maintd backup.restore_test scratch: target={target} started={iso(started)}"


@dataclass(frozen=True)
class ScratchDatabase:
    name: str
    comment: str | None
    sessions: int


def leftovers(found: list[ScratchDatabase], target: str, now: datetime) -> list[tuple[str, str]]:
    """(name, why) of the scratch databases to drop before this target's run."""
    mine = tag_of(target)
    out = []
    for db in found:
        tagged = _TAGGED.match(db.name)
        if tagged and tagged.group(1) == mine:
            out.append((db.name, f"left by an earlier restore test of {target}"))
        elif _LEGACY.match(db.name) and db.sessions == 0:
            out.append((db.name, "left by an earlier maintd version, unused"))
        elif tagged and db.sessions == 0:
            m = _STARTED.search(db.comment or "")
            try:
                started = datetime.fromisoformat(m.group(1)) if m else None
            except ValueError:
                started = None
            if started is not None and now - started > STALE_AFTER:
                out.append((db.name, f"left by a restore test started {iso(started)}, unused since"))
    return out


def restored_size(manifest: BackupManifest) -> int:
    """What a restored copy of the database takes on disk: its size when it was dumped
    (recorded since issue 8), else twice the larger of its tables' heap and the dump."""
    recorded = manifest.source.get("database_size_bytes")
    if recorded:
        return int(recorded)
    heap = sum(int(c.get("bytes", 0)) for c in manifest.counts.values())
    dump = sum(o.raw_size for o in manifest.objects)
    return 2 * max(heap, dump)


def space_refusal(needed_bytes: int, free: FreeSpace, server: str) -> str | None:
    """Why a scratch copy of ``needed_bytes`` must not be created on ``server``, or None."""
    want = int(needed_bytes * REWRITE_FACTOR)
    if free.bytes is None:
        return (f"free disk on {server} is {free.source}; a scratch copy needs {want / MB:.1f} MB: set"
                " free_disk_floor_mb (restore_free_disk_floor_mb for restore_dsn), or restore-test on a server"
                " whose data directory this worker can see")
    if free.bytes < want:
        return (f"not enough free disk on {server} for a scratch copy: needs {want / MB:.1f} MB ({REWRITE_FACTOR}x"
                f" the {needed_bytes / MB:.1f} MB database), {free.bytes / MB:.1f} MB free ({free.source}); free"
                " space there or point restore_dsn at a scratch server with room")
    return None
