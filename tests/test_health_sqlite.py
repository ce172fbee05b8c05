"""health.sqlite's check against real SQLite files: healthy (WAL and rollback journal),
missing, empty, not a database, corrupted, locked by a writer, too big."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from tasks.core.health import sqlite as sc
from workers.config import SqliteTarget, Thresholds


def make_db(path: Path, *, wal: bool, rows: int = 200) -> Path:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE assets (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    conn.execute("CREATE INDEX assets_name ON assets (name)")
    conn.executemany("INSERT INTO assets (name) VALUES (?)", [(f"asset-{i:06d}" * 3,) for i in range(rows)])
    conn.commit()
    conn.close()
    return path


def target(path: Path, **kw: object) -> SqliteTarget:
    return SqliteTarget.model_validate({"name": "assets", "path": str(path), "host": "testhost", **kw})


def test_healthy_wal_database(tmp_path: Path) -> None:
    db = make_db(tmp_path / "assets.db", wal=True)
    result = sc.check(target(db), Thresholds())
    assert result.status == "ok", result.summary
    m = result.metrics
    assert m["journal_mode"] == "wal" and m["integrity_ok"] is True and m["locked"] is False
    assert m["size_bytes"] >= db.stat().st_size > 0
    assert result.summary.startswith(f"SQLite {db}: ") and "journal wal, integrity ok" in result.summary


def test_rollback_journal_is_reported_not_graded(tmp_path: Path) -> None:
    result = sc.check(target(make_db(tmp_path / "config.db", wal=False)), Thresholds())
    assert result.status == "ok" and result.metrics["journal_mode"] == "delete"


def test_read_only_check_changes_nothing(tmp_path: Path) -> None:
    db = make_db(tmp_path / "ro.db", wal=False)
    before = db.read_bytes()
    sc.check(target(db), Thresholds())
    assert db.read_bytes() == before


def test_missing_file_is_critical(tmp_path: Path) -> None:
    result = sc.check(target(tmp_path / "gone.db"), Thresholds())
    assert result.status == "critical" and "not found" in result.summary
    assert result.metrics["exists"] is False
    assert not (tmp_path / "gone.db").exists()  # read-only: never created


def test_empty_file_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    result = sc.check(target(tmp_path / "empty.db"), Thresholds())
    assert result.status == "warning" and "empty file" in result.summary


def test_not_a_database_is_critical(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not a database\n" * 300)
    result = sc.check(target(tmp_path / "junk.db"), Thresholds())
    assert result.status == "critical" and "not a SQLite 3 database" in result.summary


def test_corrupted_pages_fail_quick_check(tmp_path: Path) -> None:
    db = make_db(tmp_path / "broken.db", wal=False, rows=3000)
    data = bytearray(db.read_bytes())
    page = 4096
    for n in range(3, len(data) // page, 3):  # page 1 (header, schema) stays intact
        data[n * page + 8:n * page + 208] = os.urandom(200)
    db.write_bytes(bytes(data))
    result = sc.check(target(db), Thresholds())
    assert result.status == "critical", result.summary
    assert "quick_check failed" in result.summary and result.metrics["integrity_ok"] is False
    assert len(result.summary) < 1000  # a line a human reads, not the whole report
    assert 1 <= len(result.metrics["quick_check"]) <= 9


def test_locked_by_a_writer_is_a_warning_within_busy_timeout(tmp_path: Path) -> None:
    db = make_db(tmp_path / "busy.db", wal=False)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("INSERT INTO assets (name) VALUES ('pending')")
    try:
        started = time.monotonic()
        result = sc.check(target(db, busy_timeout_s=0.5), Thresholds())
        elapsed = time.monotonic() - started
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert result.status == "warning", result.summary
    assert result.metrics["locked"] is True and "database is locked" in result.summary
    assert "journal mode rollback" in result.summary and "WAL" in result.summary  # the runbook's fix
    assert 0.4 <= elapsed < 3, elapsed
    assert sc.check(target(db, busy_timeout_s=0.5), Thresholds()).status == "ok"  # released


def test_wal_readers_are_not_blocked_by_a_writer(tmp_path: Path) -> None:
    db = make_db(tmp_path / "wal.db", wal=True)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("INSERT INTO assets (name) VALUES ('pending')")
    try:
        result = sc.check(target(db, busy_timeout_s=0.5), Thresholds())
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert result.status == "ok", result.summary


def test_size_against_max_size_mb_and_thresholds(tmp_path: Path) -> None:
    db = make_db(tmp_path / "big.db", wal=False, rows=2000)  # a few hundred KB
    size_mb = db.stat().st_size / 2**20
    assert sc.check(target(db, max_size_mb=size_mb * 0.5), Thresholds()).status == "critical"
    warn = sc.check(target(db, max_size_mb=size_mb * 1.1), Thresholds())  # above 80% of the ceiling
    assert warn.status == "warning" and "size" in warn.summary
    assert sc.check(target(db), Thresholds(sqlite_size_mb=(size_mb / 2, size_mb * 10))).status == "warning"
    assert sc.check(target(db), Thresholds()).status == "ok"


@pytest.mark.parametrize(("snap", "status", "reason"), [
    (sc.SqliteSnapshot("/x.db", 100, True, True, "wal", ["ok"]), "ok", None),
    (sc.SqliteSnapshot("/x.db", 100, True, False, "delete", ["ok"]), "ok", None),
    (sc.SqliteSnapshot("/x.db", 100, True, True, "wal", ["row 3 missing from index i"]), "critical",
     "quick_check failed: row 3 missing"),
    (sc.SqliteSnapshot("/x.db", 100, True, True, None, None, locked=True, error="database is locked"), "warning",
     "database is locked"),
    (sc.SqliteSnapshot("/x.db", 100, True, True, None, None, error="quick_check did not finish within 30s"),
     "warning", "did not finish"),
    (sc.SqliteSnapshot("/x.db", 100, True, True, None, None, error="cannot open: unable to open"), "critical",
     "cannot open"),
    (sc.SqliteSnapshot("/x.db", 100, False, False, error="bad header"), "critical", "bad header"),
    (sc.SqliteSnapshot("/x.db", 2 * 2**30, True, True, "wal", ["ok"]), "warning", "size 2048 MB >= 1024 MB"),
    (sc.SqliteSnapshot("/x.db", 5 * 2**30, True, True, "wal", ["ok"]), "critical", "size 5120 MB >= 4096 MB"),
])
def test_assess_table(snap: sc.SqliteSnapshot, status: str, reason: str | None) -> None:
    result = sc.assess(snap, Thresholds().sqlite_size_mb)
    assert result.status == status, result.summary
    if reason:
        assert reason in result.summary
