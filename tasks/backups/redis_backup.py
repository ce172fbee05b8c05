"""``backup.redis`` and its verify/restore-test/restore steps, over ``redis_rdb``."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from tasks.backups import redis_rdb
from tasks.backups.catalog import BackupRecord
from tasks.backups.coordinate import BackupSession, Compression, backup_result, coordinate
from tasks.backups.store import BackupStore
from tasks.backups.stream import restore_to_file
from workers.config_model import RedisTarget
from workers.errors import PermanentError, TransientError
from workers.outcome import Result

logger = logging.getLogger(__name__)


def _redis_error(exc: redis.RedisError, target: RedisTarget, what: str) -> Exception:
    where = f"redis {target.url.masked}"
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        return PermanentError(f"{where}: {what}: authentication or permission refused")
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return TransientError(f"{where}: {what}: {type(exc).__name__}")
    return PermanentError(f"{where}: {what}: {str(exc).splitlines()[0][:200]}")


def _server_state(target: RedisTarget) -> tuple[dict[str, Any], dict[str, Any]]:
    """(INFO server, INFO keyspace) of the target."""
    conn = redis_rdb.client(target)
    try:
        return conn.info("server"), conn.info("keyspace")
    except redis.RedisError as exc:
        raise _redis_error(exc, target, "INFO") from None
    finally:
        conn.close()


def counts_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Key counts per db from INFO keyspace before and after the transfer (pure)."""
    out = {}
    for db in sorted(set(before) | set(after)):
        b = before.get(db, {}) if isinstance(before.get(db), dict) else {}
        a = after.get(db, {}) if isinstance(after.get(db), dict) else {}
        kb, ka = int(b.get("keys", 0)), int(a.get("keys", 0))
        out[db] = {"keys": kb, "min": min(kb, ka), "max": max(kb, ka),
                   "expires": max(int(b.get("expires", 0)), int(a.get("expires", 0))),
                   "method": "exact" if kb == ka else "range"}
    return out


def check_counts(expected: dict[str, dict[str, Any]], actual: dict[str, int]) -> list[str]:
    """Restored key counts must fall in the recorded range, less keys that may have expired (pure)."""
    problems = []
    for db, entry in sorted(expected.items()):
        got = actual.get(db, 0)
        low, high = int(entry["min"]) - int(entry.get("expires", 0)), int(entry["max"])
        if not low <= got <= high:
            problems.append(f"{db}: {got} keys restored, manifest says {entry['min']}..{entry['max']}")
    return problems


def backup(target: RedisTarget, store: BackupStore, *, host: str, task_id: str, compression: Compression,
           timeout_s: float, dry_run: bool = False) -> Result:
    server, before = _server_state(target)
    version = str(server.get("redis_version", "?"))
    if dry_run:
        return Result("ok", f"would back up {target.name} (Redis {version}) with SYNC", {},
                      [f"SYNC {target.url.masked} | zstd -{compression.level} → {store.location}/redis/{target.name}/"
                       f"<date>/<backup_id>/{redis_rdb.OBJECT}, then manifest.json"])
    secrets = [target.password.reveal()] if target.password else []

    def produce(session: BackupSession) -> None:
        session.manifest.source = {"redis_version": version, "url": target.url.masked}
        session.manifest.tools["redis"] = "SYNC (replication protocol)"
        with session.data_object(redis_rdb.OBJECT, redis_rdb.FORMAT) as out:
            rdb_version, _size = redis_rdb.sync_rdb(target, out.write, timeout_s)
        session.manifest.source["rdb_version"] = rdb_version
        _server, after = _server_state(target)
        session.manifest.counts = counts_between(before, after)

    manifest = coordinate(store, "redis", target.name, produce, host=host, task_id=task_id, compression=compression,
                          secrets=secrets)
    keys = sum(int(c["keys"]) for c in manifest.counts.values())
    return backup_result(store, manifest, f"{len(manifest.counts)} dbs, {keys} keys")


def _fetch(store: BackupStore, record: BackupRecord, tmp: str) -> tuple[Path, int]:
    assert record.manifest is not None
    path = Path(tmp) / "dump.rdb"
    restore_to_file(store, record.ref.key(redis_rdb.OBJECT), record.manifest.object(redis_rdb.OBJECT), str(path))
    with open(path, "rb") as fh:
        version = redis_rdb.rdb_version(fh.read(9))
    return path, version


def check_format(store: BackupStore, record: BackupRecord, timeout_s: float) -> str:
    with tempfile.TemporaryDirectory(prefix="maintd-rdb-") as tmp:
        path, version = _fetch(store, record, tmp)
        return redis_rdb.check_rdb(path, version, timeout_s)


def restore_test(store: BackupStore, record: BackupRecord) -> dict[str, Any]:
    assert record.manifest is not None
    with tempfile.TemporaryDirectory(prefix="maintd-rdb-") as tmp:
        started = time.monotonic()
        path, version = _fetch(store, record, tmp)
        with redis_rdb.scratch_server(path, version) as port:
            actual = redis_rdb.scratch_counts(port)
        duration = time.monotonic() - started
    return {"duration_s": round(duration, 3), "problems": check_counts(record.manifest.counts, actual),
            "keys": sum(actual.values()), "dbs": len(actual), "scratch": "redis-server on 127.0.0.1",
            "rdb_version": version}


def restore(store: BackupStore, record: BackupRecord, dest: RedisTarget, flush: bool) -> list[str]:
    """Load the RDB into a scratch server, then DUMP/RESTORE every key into ``dest``."""
    with tempfile.TemporaryDirectory(prefix="maintd-rdb-") as tmp:
        path, version = _fetch(store, record, tmp)
        with redis_rdb.scratch_server(path, version) as port:
            counts = redis_rdb.scratch_counts(port)
            dbs = [int(name[2:]) for name in counts if name.startswith("db")]
            try:
                copied = redis_rdb.copy_keys(port, dest, dbs, flush)
            except redis.RedisError as exc:
                raise _redis_error(exc, dest, "RESTORE") from None
    flushed = " (target dbs flushed first)" if flush else ""
    return [f"restored {copied} keys into {dest.name} dbs {dbs} with RESTORE ... REPLACE{flushed}"]
