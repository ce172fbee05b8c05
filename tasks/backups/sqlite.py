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
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

from tasks.backups.catalog import BackupRecord
from tasks.backups.coordinate import BackupSession, Compression, backup_result, coordinate
from tasks.backups.store import BackupStore
from tasks.backups.stream import CHUNK, restore_to_file
from workers.config_model import SqliteTarget
from workers.errors import PermanentError, TransientError
from workers.outcome import Result

logger = logging.getLogger(__name__)
OBJECT = "data.sqlite.zst"
FORMAT = "sqlite3"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_counts(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")]
    return {n: {"rows": int(conn.execute(f"SELECT count(*) FROM {quote(n)}").fetchone()[0]), "method": "exact"}
            for n in names}


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a file: 'ok' or the first problems."""
    with closing(sqlite3.connect(f"file:{pathname2url(str(path))}?mode=ro", uri=True)) as conn:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check(5)")]
    return "ok" if rows == ["ok"] else "; ".join(rows)


def online_copy(source: Path, dest: Path, busy_timeout_s: float, read_only: bool = True) -> None:
    """Copy ``source`` into ``dest`` with the backup API, in one step: a stepwise copy of a
    busy database restarts on every write and may never finish."""
    uri = f"file:{pathname2url(str(source))}" + ("?mode=ro" if read_only else "")
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=busy_timeout_s)) as src, \
                closing(sqlite3.connect(dest, timeout=busy_timeout_s)) as dst:
            src.backup(dst)
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise TransientError(f"sqlite {source}: {exc}") from None
        raise PermanentError(f"sqlite {source}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise PermanentError(f"sqlite {source}: {exc}") from None


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
            online_copy(path, copy, target.busy_timeout_s)
            with closing(sqlite3.connect(copy)) as conn:
                session.manifest.counts = table_counts(conn)
            with session.data_object(OBJECT, FORMAT) as out, open(copy, "rb") as fh:
                for chunk in iter(lambda: fh.read(CHUNK), b""):
                    out.write(chunk)

    manifest = coordinate(store, "sqlite", target.name, produce, host=host, task_id=task_id, compression=compression)
    rows = sum(int(c["rows"]) for c in manifest.counts.values())
    return backup_result(store, manifest, f"{len(manifest.counts)} tables, {rows} rows")


def check_format(store: BackupStore, record: BackupRecord) -> str:
    assert record.manifest is not None
    with tempfile.TemporaryDirectory(prefix="maintd-sqlite-") as tmp:
        copy = Path(tmp) / "check.db"
        restore_to_file(store, record.ref.key(OBJECT), record.manifest.object(OBJECT), str(copy))
        result = integrity(copy)
    if result != "ok":
        raise PermanentError(f"{record.ref.key(OBJECT)}: integrity_check: {result}")
    return "integrity_check ok"


def restore_test(store: BackupStore, record: BackupRecord) -> dict[str, Any]:
    assert record.manifest is not None
    with tempfile.TemporaryDirectory(prefix="maintd-sqlite-") as tmp:
        copy = Path(tmp) / "restore.db"
        started = time.monotonic()
        restore_to_file(store, record.ref.key(OBJECT), record.manifest.object(OBJECT), str(copy))
        check = integrity(copy)
        with closing(sqlite3.connect(copy)) as conn:
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
        check = integrity(copy)
        if check != "ok":
            raise PermanentError(f"{record.ref.key(OBJECT)}: restored copy fails integrity_check: {check}")
        existed = dest.exists()
        online_copy(copy, dest, target.busy_timeout_s, read_only=True)
        if not existed:
            os.chmod(dest, 0o600)
    return [f"restored {record.ref.backup_id} into {dest} (SQLite backup API, integrity_check ok)"]
