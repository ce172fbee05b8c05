"""One door to SQLite files: every open goes through here.

Opens are bounded: a read-only open never takes a write lock and never waits for a
writer longer than the target's ``busy_timeout``; a check can be interrupted by a
deadline (progress handler). Copies use SQLite's online backup API, never a ``cp`` of a
live file. Driver errors leave as the exception tree: busy/locked is transient, the rest
permanent.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

from workers.errors import PermanentError, TransientError


def uri(path: Path, *, read_only: bool = True, must_exist: bool = False) -> str:
    mode = "?mode=ro" if read_only else "?mode=rw" if must_exist else ""
    return f"file:{pathname2url(str(Path(path).resolve()))}{mode}"


def connect(path: Path, *, read_only: bool = True, busy_timeout_s: float = 5.0,
            deadline: float | None = None, must_exist: bool = False) -> sqlite3.Connection:
    """An autocommit connection (``isolation_level=None``); with ``deadline`` (monotonic) any
    statement still running then is interrupted (``sqlite3.OperationalError: interrupted``).
    ``must_exist``: a read-write open that never creates a missing file."""
    conn = sqlite3.connect(uri(path, read_only=read_only, must_exist=must_exist), uri=True, timeout=busy_timeout_s,
                           isolation_level=None, check_same_thread=False)
    if deadline is not None:
        # Returning non-zero interrupts the running statement: bounds checks of huge files.
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    return conn


@contextmanager
def session(path: Path, **kwargs: Any) -> Iterator[sqlite3.Connection]:
    with closing(connect(path, **kwargs)) as conn:
        yield conn


def is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def classify(exc: sqlite3.Error, path: Path) -> Exception:
    """A driver error as TransientError (busy/locked) or PermanentError (everything else)."""
    if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
        return TransientError(f"sqlite {path}: {exc}")
    return PermanentError(f"sqlite {path}: {exc}")


def integrity(conn: sqlite3.Connection, *, quick: bool = False, max_errors: int = 100) -> list[str]:
    """``PRAGMA integrity_check`` (or ``quick_check``): ``[]`` when ok, else the problems.

    SQLite may report several problems as one multi-line row headed ``*** in database main ***``."""
    pragma = "quick_check" if quick else "integrity_check"
    lines = [line for r in conn.execute(f"PRAGMA {pragma}({int(max_errors)})").fetchall()
             for line in str(r[0]).splitlines() if line.strip() and not line.startswith("*** in database")]
    return [] if lines == ["ok"] else lines


def file_integrity(path: Path, max_errors: int = 5) -> str:
    """``integrity_check`` of a private file (a restored copy): 'ok' or the first problems."""
    with session(path, read_only=True) as conn:
        problems = integrity(conn, max_errors=max_errors)
    return "; ".join(problems) if problems else "ok"


def quote(name: str) -> str:
    """An SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


def online_copy(source: Path, dest: Path, busy_timeout_s: float, read_only: bool = True) -> None:
    """Copy ``source`` into ``dest`` with the backup API, in one step: a stepwise copy of a
    busy database restarts on every write and may never finish."""
    try:
        with closing(sqlite3.connect(uri(source, read_only=read_only), uri=True, timeout=busy_timeout_s)) as src, \
                closing(sqlite3.connect(dest, timeout=busy_timeout_s)) as dst:
            src.backup(dst)
    except sqlite3.Error as exc:
        raise classify(exc, source) from None


def wal_path(path: Path) -> Path:
    return Path(f"{path}-wal")


def file_stats(conn: sqlite3.Connection) -> dict[str, Any]:
    """page_size, page_count, freelist_count, journal_mode of the open database (cheap: header reads)."""
    out: dict[str, Any] = {}
    for pragma in ("page_size", "page_count", "freelist_count", "journal_mode", "auto_vacuum"):
        out[pragma] = conn.execute(f"PRAGMA {pragma}").fetchone()[0]
    return out


def foreign_key_problems(conn: sqlite3.Connection, limit: int = 100) -> list[str]:
    """``PRAGMA foreign_key_check``: one line per row whose parent is missing (first ``limit``)."""
    out = []
    for table, rowid, parent, fk in conn.execute("PRAGMA foreign_key_check"):
        out.append(f"{table} rowid {rowid}: no parent row in {parent} (foreign key {fk})")
        if len(out) >= limit:
            break
    return out


def stepped_snapshot(source: Path, dest: Path, busy_timeout_s: float, deadline: float, pages: int = 256) -> None:
    """Copy ``source`` into ``dest`` with the backup API ``pages`` at a time: between steps the
    read lock is let go, so a writer of a rollback-journal database waits one step at most
    (a write restarts the copy). Interrupted (TransientError) when not done by ``deadline``."""

    def progress(_status: int, _remaining: int, _total: int) -> None:
        if time.monotonic() > deadline:
            raise TransientError(f"sqlite {source}: snapshot not finished in time (busy database)")

    try:
        with closing(sqlite3.connect(uri(source, read_only=True), uri=True, timeout=busy_timeout_s)) as src, \
                closing(sqlite3.connect(dest, timeout=busy_timeout_s)) as dst:
            src.backup(dst, pages=pages, progress=progress, sleep=0.005)
    except sqlite3.Error as exc:
        raise classify(exc, source) from None


def read_time_s(path: Path, deadline: float) -> float:
    """Seconds to read the file once (no SQLite lock taken): the floor of any copy of it."""
    started = time.monotonic()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(1 << 20):
            if time.monotonic() > deadline:
                break
    return time.monotonic() - started


def snapshot(source: Path, dest: Path, busy_timeout_s: float, deadline: float) -> str:
    """A consistent copy of ``source`` that holds a writer up for at most half ``busy_timeout_s``:
    one backup step (one read lock for the whole copy) when a copy is estimated to fit (twice
    the time to read the file), else small steps that let go of the lock between them (a busy
    database may then never finish: TransientError at ``deadline``). Returns the method used."""
    estimate = 2 * read_time_s(source, deadline)
    if estimate <= busy_timeout_s / 2:
        online_copy(source, dest, busy_timeout_s)
        return f"one-step copy (est. {estimate * 1000:.0f} ms)"
    stepped_snapshot(source, dest, busy_timeout_s, deadline)
    return "stepped copy"
