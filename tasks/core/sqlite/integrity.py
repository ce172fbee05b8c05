"""``sqlite.integrity``: ``PRAGMA integrity_check`` (full), ``foreign_key_check``, page count,
freelist ratio and WAL size, without ever holding a writer up longer than ``busy_timeout_s``.

- WAL databases are checked in place on a read-only connection: WAL readers never block writers.
- Rollback-journal databases are checked on a snapshot (a reader of such a database blocks
  every commit while it reads, and a full check reads the whole file): one backup-API step
  when the copy is estimated to take under half ``busy_timeout_s``, else small steps that let
  go of the lock between them (``workers.doors.sqlite.snapshot``).
- Corruption is critical, naming the first errors and the restore command.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks.core.findings import Findings
from tasks.core.units import human_bytes
from workers.config import SqliteTarget
from workers.doors import sqlite as sqlite_door
from workers.errors import TransientError
from workers.records.outcome import Result

FIRST_ERRORS = 5


def restore_command(target: SqliteTarget) -> str:
    return f"maintd run backup.restore {target.name} --arg confirm={target.name} --wait"


def _check(conn: sqlite3.Connection, max_errors: int) -> tuple[list[str], list[str], dict[str, Any]]:
    stats = sqlite_door.file_stats(conn)
    problems = sqlite_door.integrity(conn, quick=False, max_errors=max_errors)
    fk = sqlite_door.foreign_key_problems(conn, limit=max_errors)
    return problems, fk, stats


def collect(target: SqliteTarget, *, remaining_s: float, scratch: Path | None = None) -> dict[str, Any]:
    """Everything the check saw, as metrics (raises the door's errors: busy is transient)."""
    path = target.path
    size = path.stat().st_size
    wal = sqlite_door.wal_path(path)
    wal_size = wal.stat().st_size if wal.exists() else 0
    deadline = time.monotonic() + max(1.0, remaining_s)
    started = time.monotonic()
    with sqlite_door.session(path, read_only=True, busy_timeout_s=target.busy_timeout_s, deadline=deadline) as conn:
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode == "wal":
            problems, fk, stats = _check(conn, 100)
            how = "in place (WAL: readers never block writers)"
    if mode != "wal":
        where = scratch or Path(tempfile.gettempdir())
        free = shutil.disk_usage(where).free
        if free < size * 1.1:
            raise TransientError(f"sqlite {path}: no room for a snapshot in {where}"
                                             f" ({human_bytes(free)} free, {human_bytes(size)} needed)")
        with tempfile.TemporaryDirectory(prefix="maintd-integrity-", dir=where) as tmp:
            copy = Path(tmp) / "snapshot.db"
            method = sqlite_door.snapshot(path, copy, target.busy_timeout_s, deadline)
            with sqlite_door.session(copy, read_only=True, deadline=deadline) as conn:
                problems, fk, stats = _check(conn, 100)
        how = f"on a snapshot, {method} (journal mode {mode}: an in-place check would block writers)"
    stats["journal_mode"] = mode
    pages = int(stats["page_count"])
    return {
        "path": str(path), "size_bytes": size, "wal_bytes": wal_size, "page_size": int(stats["page_size"]),
        "page_count": pages, "freelist_count": int(stats["freelist_count"]),
        "freelist_ratio": round(int(stats["freelist_count"]) / pages, 4) if pages else 0.0,
        "journal_mode": mode, "integrity_errors": problems, "foreign_key_errors": fk,
        "checked": how, "check_s": round(time.monotonic() - started, 3),
    }


def check(target: SqliteTarget, *, remaining_s: float, scratch: Path | None = None) -> Result:
    if not target.path.exists():
        reason = f"database file {target.path} not found on {os.uname().nodename}"
        return Result("critical", f"SQLite {reason}", {"path": str(target.path), "problems": [f"critical: {reason}"]})
    try:
        m = collect(target, remaining_s=remaining_s, scratch=scratch)
    except sqlite3.DatabaseError as exc:
        if sqlite_door.is_busy(exc) or "interrupt" in str(exc):
            raise sqlite_door.classify(exc, target.path) from None
        m = {"path": str(target.path), "integrity_errors": [f"cannot read the database: {exc}"],
             "foreign_key_errors": []}
    found = Findings()
    errors: list[str] = m["integrity_errors"]
    if errors:
        shown = "; ".join(errors[:FIRST_ERRORS])
        more = f" (+{len(errors) - FIRST_ERRORS} more)" if len(errors) > FIRST_ERRORS else ""
        found.add("critical", f"integrity_check failed: {shown}{more} — restore the last verified backup:"
                              f" {restore_command(target)}")
    fk: list[str] = m["foreign_key_errors"]
    if fk:
        found.add("warning", f"{len(fk)} foreign key violation(s): {'; '.join(fk[:3])}")
    if "page_count" not in m:
        return found.result(f"SQLite {target.path}: unreadable", m)
    headline = (f"SQLite {target.path}: integrity {'FAILED' if errors else 'ok'}, {m['page_count']} pages,"
                f" freelist {m['freelist_ratio'] * 100:.1f}%, WAL {human_bytes(m['wal_bytes'])}, checked {m['checked']}")
    return found.result(headline, {**m, "integrity_ok": not errors, "restore_command": restore_command(target)})
