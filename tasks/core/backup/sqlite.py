"""SQLite backups through SQLite's online backup API (never a ``cp`` of a live file):
the database is copied page-consistently into a private temp file, counted, then
compressed into the store. Restores go the other way, through the backup API again,
so even a live destination is replaced under SQLite's own locking.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks.core.backup.coordinate import BackupSession, Compression, backup_result, coordinate
from tasks.core.backup.inventory import BackupRecord
from tasks.core.backup.store import BackupStore
from tasks.core.backup.stream import CHUNK, restore_to_file
from workers.config import SqliteTarget
from workers.doors import sqlite as sqlite_door
from workers.errors import PermanentError
from workers.records.outcome import Result

logger = logging.getLogger(__name__)
OBJECT = "data.sqlite.zst"
FORMAT = "sqlite3"


def table_counts(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")]
    return {n: {"rows": int(conn.execute(f"SELECT count(*) FROM {sqlite_door.quote(n)}").fetchone()[0]), "method": "exact"}
            for n in names}


def backup(target: SqliteTarget, store: BackupStore, *, host: str, task_id: str, compression: Compression,
           dry_run: bool = False) -> Result:
    path = target.path
    if not path.is_file():
        raise PermanentError(f"sqlite {target.name}: {path} does not exist")
    if dry_run:
        return Result("ok", f"would back up {target.name} ({path}) with the SQLite backup API",
                      {}, [f"sqlite3 backup {path} → temp copy | zstd -{compression.level} → {store.location}/sqlite/"
                           f"{target.name}/<date>/<backup_id>/{OBJECT}, then manifest.json"])

    def produce(session: BackupSession) -> None:
        session.manifest.source = {"path": str(path), "size_bytes": path.stat().st_size}
        session.manifest.tools["sqlite"] = sqlite3.sqlite_version
        with tempfile.TemporaryDirectory(prefix="maintd-sqlite-") as tmp:
            copy = Path(tmp) / "backup.db"
            sqlite_door.online_copy(path, copy, target.busy_timeout_s)
            with sqlite_door.session(copy, read_only=True) as conn:
                session.manifest.counts = table_counts(conn)
            with session.data_object(OBJECT, FORMAT) as out, open(copy, "rb") as fh:
                for chunk in iter(lambda: fh.read(CHUNK), b""):
                    out.write(chunk)

    wal = path.with_name(path.name + "-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    manifest = coordinate(store, "sqlite", target.name, produce, host=host, task_id=task_id, compression=compression,
                          size_hint=size)
    rows = sum(int(c["rows"]) for c in manifest.counts.values())
    return backup_result(store, manifest, f"{len(manifest.counts)} tables, {rows} rows")


def check_format(store: BackupStore, record: BackupRecord) -> str:
    assert record.manifest is not None
    with tempfile.TemporaryDirectory(prefix="maintd-sqlite-") as tmp:
        copy = Path(tmp) / "check.db"
        restore_to_file(store, record.ref.key(OBJECT), record.manifest.object(OBJECT), str(copy))
        result = sqlite_door.file_integrity(copy)
    if result != "ok":
        raise PermanentError(f"{record.ref.key(OBJECT)}: integrity_check: {result}")
    return "integrity_check ok"


def restore_test(store: BackupStore, record: BackupRecord) -> dict[str, Any]:
    assert record.manifest is not None
    with tempfile.TemporaryDirectory(prefix="maintd-sqlite-") as tmp:
        copy = Path(tmp) / "restore.db"
        started = time.monotonic()
        restore_to_file(store, record.ref.key(OBJECT), record.manifest.object(OBJECT), str(copy))
        check = sqlite_door.file_integrity(copy)
        with sqlite_door.session(copy, read_only=True) as conn:
            actual = {k: int(v["rows"]) for k, v in table_counts(conn).items()}
        duration = time.monotonic() - started
    problems = [] if check == "ok" else [f"integrity_check: {check}"]
    for name, entry in sorted(record.manifest.counts.items()):
        if actual.get(name) != int(entry["rows"]):
            problems.append(f"{name}: {actual.get(name, 'missing')} rows restored, manifest says {entry['rows']}")
    return {"duration_s": round(duration, 3), "problems": problems, "tables": len(actual),
            "rows": sum(actual.values()), "scratch": "temp file"}


def restore(store: BackupStore, record: BackupRecord, target: SqliteTarget, into: str | None) -> list[str]:
    """Replace the target file (or create ``into``) from the backup, through the backup API."""
    assert record.manifest is not None
    dest = Path(into) if into else target.path
    if not dest.is_absolute():
        raise PermanentError(f"restore destination {dest} must be an absolute path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".maintd-restore-", dir=dest.parent) as tmp:
        copy = Path(tmp) / "restore.db"
        restore_to_file(store, record.ref.key(OBJECT), record.manifest.object(OBJECT), str(copy))
        check = sqlite_door.file_integrity(copy)
        if check != "ok":
            raise PermanentError(f"{record.ref.key(OBJECT)}: restored copy fails integrity_check: {check}")
        existed = dest.exists()
        sqlite_door.online_copy(copy, dest, target.busy_timeout_s, read_only=True)
        if not existed:
            os.chmod(dest, 0o600)
    return [f"restored {record.ref.backup_id} into {dest} (SQLite backup API, integrity_check ok)"]
