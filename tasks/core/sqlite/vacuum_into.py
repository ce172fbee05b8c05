"""``VACUUM INTO`` a compact copy and swap it in atomically (``vacuum_into = true``): for a
database whose application is stopped in the window, or a file nothing else keeps open.

The copy is made next to the file (same filesystem: ``os.replace`` is atomic, a crash leaves
either the old file or the new one), checked (``quick_check``), given the original's mode and
owner, and swapped in only when no other process has the database (or its WAL) open and
nothing was committed since the copy began (``PRAGMA data_version``). Otherwise the copy is
dropped and the summary says why: swapping under a live writer would lose its writes.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from tasks.core.files import open_files
from workers.config import SqliteTarget
from workers.doors import sqlite as sqlite_door
from workers.errors import PermanentError


def held_by_others(path: Path) -> bool:
    held = open_files.scan(skip_self=True)
    for p in (path, sqlite_door.wal_path(path)):
        try:
            if held.holds(os.stat(p)):
                return True
        except FileNotFoundError:
            continue
    return False


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap(target: SqliteTarget, deadline: float) -> tuple[bool, str, dict[str, Any]]:
    """(swapped, why, metrics)."""
    path = target.path
    copy = path.with_name(f".{path.name}.maintd-vacuum")
    copy.unlink(missing_ok=True)
    if held_by_others(path):
        return False, "VACUUM INTO not swapped: another process has the database open", {}
    try:
        with sqlite_door.session(path, read_only=False, must_exist=True, busy_timeout_s=target.busy_timeout_s,
                                 deadline=deadline) as conn:
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            conn.execute("VACUUM INTO ?", (str(copy),))
            changed = conn.execute("PRAGMA data_version").fetchone()[0] != version
        if changed:
            return False, "VACUUM INTO not swapped: the database was written during the copy", {}
        if sqlite_door.file_integrity(copy) != "ok":
            raise PermanentError(f"sqlite {path}: the VACUUM INTO copy failed integrity_check; original kept")
        if mode == "wal":
            with sqlite_door.session(copy, read_only=False, must_exist=True) as c:
                c.execute("PRAGMA journal_mode=wal")
        st = path.stat()
        os.chmod(copy, st.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(copy, st.st_uid, st.st_gid)
        _fsync(copy)
        wal = sqlite_door.wal_path(path)
        if (wal.exists() and wal.stat().st_size) or held_by_others(path):
            return False, "VACUUM INTO not swapped: the database was opened or written meanwhile", {}
        os.replace(copy, path)
        for leftover in (wal, Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)  # the old file's (empty) WAL index must not meet the new file
        _fsync(path.parent)
        return True, "VACUUM INTO + atomic swap", {"swap_copy_bytes": path.stat().st_size}
    except sqlite3.Error as exc:
        raise sqlite_door.classify(exc, path) from None
    finally:
        copy.unlink(missing_ok=True)
