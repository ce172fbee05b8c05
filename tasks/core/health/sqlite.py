"""``health.sqlite`` (host-pinned): the file is there, is a SQLite database, passes
``PRAGMA quick_check``, is not locked, and is not too big. Opened read-only.

Journal mode is reported, not graded: rollback-journal databases are fine until a
writer holds them, so a *locked* finding names the mode and suggests WAL (the
runbook's fix for lock contention) when it is not WAL already.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.findings import Findings
from tasks.core.health.common import wait_s
from tasks.core.units import human_bytes
from workers.config import SqliteTarget, Thresholds
from workers.doors import sqlite as sqlite_door
from workers.records.outcome import Result

logger = logging.getLogger(__name__)

HEADER_MAGIC = b"SQLite format 3\x00"
QUICK_CHECK_BUDGET_S = 30.0  # quick_check is interrupted after this (big databases)
MAX_ERRORS_SHOWN = 3
MB = 1024 * 1024


@dataclass(frozen=True)
class SqliteSnapshot:
    path: str
    size_bytes: int  # main file plus its -wal
    header_ok: bool
    wal_header: bool  # the header says WAL (readable even when the database is locked)
    journal_mode: str | None = None
    quick_check: list[str] | None = None  # None: not run (locked, interrupted, unreadable)
    locked: bool = False
    error: str | None = None
    check_s: float = 0.0


def size_thresholds(target: SqliteTarget, thresholds: Thresholds) -> tuple[float, float]:
    """(warning, critical) in MB: ``max_size_mb`` is the ceiling, warned at 80% of it."""
    if target.max_size_mb is not None:
        return (round(target.max_size_mb * 0.8, 3), target.max_size_mb)
    return thresholds.sqlite_size_mb


def read_header(path: Path) -> tuple[bool, bool]:
    """(is a SQLite 3 file, header says WAL) from the first 100 bytes, without any lock."""
    with open(path, "rb") as fh:
        header = fh.read(100)
    ok = header.startswith(HEADER_MAGIC) and len(header) == 100
    return ok, ok and header[18] == 2 and header[19] == 2


def collect(target: SqliteTarget) -> SqliteSnapshot | None:
    """Inspect the file; None when it does not exist."""
    path = target.path
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    wal = Path(f"{path}-wal")
    size += wal.stat().st_size if wal.exists() else 0
    if size == 0:  # SQLite's own "empty database": the application has never written it
        return SqliteSnapshot(str(path), 0, True, False, error="empty file: no database written yet")
    header_ok, wal_header = read_header(path)
    if not header_ok:
        return SqliteSnapshot(str(path), size, False, False, error="file is not a SQLite 3 database (bad header)")
    busy_s = wait_s(target.busy_timeout_s)
    started = time.monotonic()
    deadline = started + QUICK_CHECK_BUDGET_S
    journal: str | None = None
    try:
        conn = sqlite_door.connect(path, read_only=True, busy_timeout_s=busy_s, deadline=deadline)
    except sqlite3.Error as exc:
        return SqliteSnapshot(str(path), size, True, wal_header, error=f"cannot open: {exc}")
    try:
        journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        rows = sqlite_door.integrity(conn, quick=True, max_errors=100) or ["ok"]
        return SqliteSnapshot(str(path), size, True, wal_header, journal, rows,
                              check_s=round(time.monotonic() - started, 3))
    except sqlite3.OperationalError as exc:
        text = str(exc)
        elapsed = round(time.monotonic() - started, 3)
        if "locked" in text or "busy" in text:
            return SqliteSnapshot(str(path), size, True, wal_header, journal, None, locked=True,
                                  error=f"database is locked (still busy after {busy_s:g}s)", check_s=elapsed)
        if "interrupt" in text:
            return SqliteSnapshot(str(path), size, True, wal_header, journal, None,
                                  error=f"quick_check did not finish within {QUICK_CHECK_BUDGET_S:g}s",
                                  check_s=elapsed)
        return SqliteSnapshot(str(path), size, True, wal_header, journal, None, error=text, check_s=elapsed)
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
        return SqliteSnapshot(str(path), size, True, wal_header, journal, ["corrupt: " + str(exc)],
                              error=str(exc), check_s=round(time.monotonic() - started, 3))
    finally:
        conn.close()


def assess(snap: SqliteSnapshot, size_pair: tuple[float, float]) -> Result:
    """Grade what ``collect`` saw."""
    found = Findings()
    size_mb = round(snap.size_bytes / MB, 3)
    found.grade("size", size_mb, size_pair, unit=" MB")
    # The header tells WAL from the rollback-journal modes even when the file is locked.
    mode = snap.journal_mode or ("wal" if snap.wal_header else "rollback")
    if not snap.header_ok:
        found.add("critical", snap.error or "not a SQLite database")
    elif snap.locked:
        hint = "" if mode == "wal" else f"; journal mode {mode}: readers wait for writers (the runbook's fix: WAL)"
        found.add("warning", f"{snap.error}: a writer holds an exclusive lock, integrity not checked{hint}")
    elif snap.size_bytes == 0:
        found.add("warning", snap.error or "empty file")
    elif snap.quick_check is None:
        status = "warning" if snap.error and "did not finish" in snap.error else "critical"
        found.add(status, snap.error or "quick_check not run")
    elif snap.quick_check != ["ok"]:
        shown = "; ".join(snap.quick_check[:MAX_ERRORS_SHOWN])
        more = len(snap.quick_check) - MAX_ERRORS_SHOWN
        found.add("critical", f"quick_check failed: {shown}" + (f" (+{more} more)" if more > 0 else ""))

    integrity = ("integrity ok" if snap.quick_check == ["ok"]
                 else "integrity FAILED" if snap.quick_check else "integrity not checked")
    headline = f"SQLite {snap.path}: {human_bytes(snap.size_bytes)}, journal {mode}, {integrity}"
    metrics: dict[str, Any] = {
        "path": snap.path, "exists": True, "size_bytes": snap.size_bytes, "size_mb": size_mb,
        "journal_mode": mode, "quick_check": (snap.quick_check or [])[:MAX_ERRORS_SHOWN * 3],
        "integrity_ok": snap.quick_check == ["ok"], "locked": snap.locked, "check_s": snap.check_s,
        "error": snap.error,
    }
    return found.result(headline, metrics)


def check(target: SqliteTarget, thresholds: Thresholds) -> Result:
    """Inspect the target's file on this host; a missing file is critical."""
    try:
        snap = collect(target)
    except OSError as exc:  # unreadable file or directory
        reason = f"cannot read {target.path}: {exc.strerror or exc}"
        return Result("critical", f"SQLite {reason}", {"path": str(target.path), "error": reason,
                                                       "problems": [f"critical: {reason}"]})
    if snap is None:
        reason = f"database file {target.path} not found on {os.uname().nodename}"
        return Result("critical", f"SQLite {reason}", {"path": str(target.path), "exists": False,
                                                       "problems": [f"critical: {reason}"]})
    return assess(snap, size_thresholds(target, thresholds))
