"""``sqlite.optimize`` (medium, windowed): ``PRAGMA optimize``, ``ANALYZE``,
``wal_checkpoint(TRUNCATE)``, and ``VACUUM`` only when it pays and is safe.

Writers are never held off longer than the target's ``busy_timeout_s`` by design:
- ``ANALYZE`` and ``PRAGMA optimize`` run with ``analysis_limit`` (approximate statistics from
  a bounded sample per index, SQLite's recommendation for routine runs), so the write lock
  they take is short whatever the file size;
- the checkpoint waits for readers through the busy handler, at most ``busy_timeout_s``;
- ``VACUUM`` rewrites the whole file under an exclusive lock: it runs only when the free pages
  exceed ``vacuum_min_freelist_ratio`` (default 20 %), there is free disk for a copy (twice the
  file: SQLite's temporary copy and the journal), and its duration, estimated from a timed
  snapshot copy of the file (``workers.doors.sqlite.snapshot``: a writer waits at most half
  ``busy_timeout_s`` for it), fits in
  ``vacuum_max_lock_s`` (default ``busy_timeout_s``). Otherwise it is reported, not run.
- ``vacuum_into = true``: when no other process has the file open, ``VACUUM INTO`` a copy and
  swap it in atomically instead (``vacuum_into``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.core.sqlite import vacuum_into
from tasks.core.units import human_bytes
from workers.config import SqliteTarget
from workers.doors import sqlite as sqlite_door
from workers.records.outcome import Result

ANALYSIS_LIMIT = 1000  # rows examined per index by ANALYZE (0 would be unlimited)
VACUUM_COST = 2.5  # VACUUM ≈ copy out + copy back + fsyncs: this many snapshot copies
SWAP_STEP = "VACUUM INTO <copy>, then atomic swap"


def _size(path: Path) -> int:
    wal = sqlite_door.wal_path(path)
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def vacuum_decision(target: SqliteTarget, stats: dict[str, Any], size: int,
                    estimate_s: Callable[[], float]) -> tuple[bool, str, dict[str, Any]]:
    """(run VACUUM?, why, metrics). ``estimate_s`` is only called when the rest allows it."""
    pages = int(stats["page_count"]) or 1
    ratio = int(stats["freelist_count"]) / pages
    m: dict[str, Any] = {"freelist_ratio": round(ratio, 4), "vacuum_min_freelist_ratio": target.vacuum_min_freelist_ratio}
    if ratio <= target.vacuum_min_freelist_ratio:
        return False, f"freelist {ratio * 100:.1f}% <= {target.vacuum_min_freelist_ratio * 100:g}%: no VACUUM needed", m
    if target.vacuum_into and not vacuum_into.held_by_others(target.path):
        free = shutil.disk_usage(target.path.parent).free
        m.update(free_bytes_db_dir=free, vacuum_needs_bytes=int(size * 1.1), vacuum_into=True)
        if free < size * 1.1:
            return False, f"VACUUM INTO skipped: needs {human_bytes(size * 1.1)} free next to the file", m
        return True, (f"freelist {ratio * 100:.1f}% > {target.vacuum_min_freelist_ratio * 100:g}%, nothing else has"
                      " the file open: VACUUM INTO + swap"), m
    need = 2 * size
    free_db = shutil.disk_usage(target.path.parent).free
    free_tmp = shutil.disk_usage(tempfile.gettempdir()).free
    m.update(free_bytes_db_dir=free_db, free_bytes_tmp=free_tmp, vacuum_needs_bytes=need)
    if min(free_db, free_tmp) < need:
        return False, (f"VACUUM skipped: needs {human_bytes(need)} free, {human_bytes(min(free_db, free_tmp))}"
                       " available"), m
    limit = target.vacuum_max_lock_s or target.busy_timeout_s
    est = estimate_s()
    m.update(vacuum_estimate_s=round(est, 3), vacuum_max_lock_s=limit)
    if est > limit:
        return False, (f"VACUUM skipped: estimated {est:.1f}s of exclusive lock > {limit:g}s writers may wait"
                       " (raise vacuum_max_lock_s and busy_timeout_s of the application for a window)"), m
    return True, f"freelist {ratio * 100:.1f}% > {target.vacuum_min_freelist_ratio * 100:g}%", m


def estimate_vacuum_s(target: SqliteTarget, deadline: float) -> float:
    """Time one stepped snapshot copy of the file (never blocks a writer) and scale it."""
    with tempfile.TemporaryDirectory(prefix="maintd-optimize-") as tmp:
        started = time.monotonic()
        sqlite_door.snapshot(target.path, Path(tmp) / "probe.db", target.busy_timeout_s, deadline)
        return (time.monotonic() - started) * VACUUM_COST


def optimize(target: SqliteTarget, *, dry_run: bool, remaining_s: float,
             checkpoint: Callable[[], None] = lambda: None) -> Result:
    path = target.path
    if not path.exists():
        return Result("critical", f"SQLite database file {path} not found on {os.uname().nodename}",
                      {"path": str(path)})
    deadline = time.monotonic() + max(1.0, remaining_s)
    before = _size(path)
    try:
        with sqlite_door.session(path, read_only=False, must_exist=True, busy_timeout_s=target.busy_timeout_s,
                                 deadline=deadline) as conn:
            result = _run(target, conn, before, dry_run, deadline, checkpoint)
    except sqlite3.Error as exc:
        raise sqlite_door.classify(exc, path) from None
    if dry_run or SWAP_STEP not in result.actions:
        return result
    checkpoint()  # the swap runs on no connection of ours: the session above is closed
    swapped, why, extra = vacuum_into.swap(target, deadline)
    after = _size(path)
    metrics = {**result.metrics, **extra, "vacuumed": swapped, "size_after_bytes": after,
               "bytes_reclaimed": max(0, before - after)}
    actions = [a for a in result.actions if a != SWAP_STEP] + ([SWAP_STEP] if swapped else [])
    return Result(result.status if swapped else "warning",
                  f"optimized {path}: reclaimed {human_bytes(max(0, before - after))} ({human_bytes(before)} →"
                  f" {human_bytes(after)}); {why}", metrics, actions)


def _run(target: SqliteTarget, conn: sqlite3.Connection, before: int, dry_run: bool, deadline: float,
         checkpoint: Callable[[], None]) -> Result:
    stats = sqlite_door.file_stats(conn)
    wal = str(stats["journal_mode"]).lower() == "wal"
    steps = [f"PRAGMA analysis_limit={ANALYSIS_LIMIT}", "PRAGMA optimize", "ANALYZE"]
    vacuum, why, metrics = vacuum_decision(target, stats, before, lambda: estimate_vacuum_s(target, deadline))
    if vacuum:
        steps.append(SWAP_STEP if metrics.get("vacuum_into") else "VACUUM")
    if wal:  # after VACUUM: in WAL mode the rewritten pages reach the main file (and it shrinks) here
        steps.append("PRAGMA wal_checkpoint(TRUNCATE)")
    metrics.update(path=str(target.path), journal_mode=stats["journal_mode"], size_before_bytes=before,
                   page_count_before=int(stats["page_count"]), freelist_before=int(stats["freelist_count"]))
    if dry_run:
        return Result("ok", f"would run {', '.join(s for s in steps if not s.startswith('PRAGMA analysis'))}"
                            f" on {target.path} ({why})", metrics, steps)
    actions, timings = [], {}
    for sql in steps:
        if sql == SWAP_STEP:  # after this session (optimize): a swap must not meet our own connection
            actions.append(sql)
            continue
        checkpoint()
        started = time.monotonic()
        rows = conn.execute(sql).fetchall()
        timings[sql] = round(time.monotonic() - started, 3)
        if sql.startswith("PRAGMA wal_checkpoint") and rows:
            busy, log, done = rows[0]
            metrics.update(checkpoint_busy=bool(busy), wal_frames=log, wal_frames_checkpointed=done)
        actions.append(sql)
    after = _size(target.path)
    stats_after = sqlite_door.file_stats(conn)
    metrics.update(size_after_bytes=after, bytes_reclaimed=max(0, before - after), step_s=timings,
                   freelist_after=int(stats_after["freelist_count"]), vacuumed=vacuum,
                   longest_lock_s=max(timings.values(), default=0.0))
    status = "ok"
    note = ""
    if metrics.get("checkpoint_busy"):
        status, note = "warning", "; WAL checkpoint incomplete (readers held it: the WAL was not truncated)"
    return Result(status, f"optimized {target.path}: reclaimed {human_bytes(max(0, before - after))}"
                          f" ({human_bytes(before)} → {human_bytes(after)}); {why}{note}", metrics, actions)
