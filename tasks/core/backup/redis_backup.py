"""``backup.redis`` and its verify/restore-test/restore steps, over ``redis_rdb``."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from tasks.core.backup import redis_rdb
from tasks.core.backup.coordinate import BackupSession, Compression, backup_result, coordinate
from tasks.core.backup.inventory import BackupRecord
from tasks.core.backup.store import BackupStore
from tasks.core.backup.stream import restore_to_file
from workers.config import RedisTarget
from workers.doors import redis as redis_door
from workers.errors import PermanentError
from workers.records.outcome import Result

logger = logging.getLogger(__name__)


def _server_state(target: RedisTarget) -> tuple[dict[str, Any], dict[str, Any]]:
    """(INFO server + memory, INFO keyspace) of the target."""
    conn = redis_rdb.client(target)
    try:
        return {**conn.info("server"), **conn.info("memory")}, conn.info("keyspace")
    except redis.RedisError as exc:
        raise redis_door.classify(exc, f"redis {target.url.masked}", "INFO") from None
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
                          secrets=secrets, size_hint=int(server.get("used_memory", 0)) or None)
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


def _target_version(dest: RedisTarget) -> tuple[int, int]:
    server, _keyspace = _server_state(dest)
    version = redis_door.server_version(f"v={server.get('redis_version', '')}")
    if version is None:
        raise PermanentError(f"redis {dest.name}: cannot tell its version (INFO server: "
                             f"{server.get('redis_version')!r})")
    return version


def preflight(record: BackupRecord, dest: RedisTarget, flush: bool, allow_broker: bool) -> list[str]:
    """Refusals before anything is read in full or flushed: a broker target without
    ``allow_broker``; a target older than the backup's RDB; no scratch server that both
    loads the RDB and writes payloads the target reads. Returns the plan lines."""
    assert record.manifest is not None
    if dest.broker and not allow_broker:
        raise PermanentError(f"refusing to restore into {dest.name}: it is marked broker = true, and a restore"
                             " replays the task messages queued when the backup was taken (stale and duplicate"
                             " runs). Stop beat and the workers first, then pass --arg allow_broker=true")
    version = _target_version(dest)
    reads = redis_rdb.rdb_loaded_by(version)
    lines = [f"target {dest.name}: Redis {version[0]}.{version[1]} (reads RDB {reads})"]
    rdb = record.manifest.source.get("rdb_version")
    if rdb is None:
        return [*lines, "RDB version unknown until the backup is read: checked then, before any FLUSHDB"]
    rdb = int(rdb)
    if rdb > reads:
        need = redis_rdb.RDB_MIN_REDIS.get(rdb, (99, 0))
        raise PermanentError(f"refusing to restore into {dest.name}: the backup is RDB {rdb} (Redis"
                             f" {record.manifest.source.get('redis_version', '?')}), which Redis"
                             f" {version[0]}.{version[1]} cannot read; restore into a Redis {need[0]}.{need[1]}+"
                             " target (into=<another [[redis]] target>)")
    scratch = redis_rdb.server_for(rdb, payload_max=reads)
    return [*lines, f"scratch {scratch} loads RDB {rdb}; every key copied with RESTORE"
                    + (" after FLUSHDB of the dbs in the backup" if flush else "")]


def restore(store: BackupStore, record: BackupRecord, dest: RedisTarget, flush: bool,
            allow_broker: bool = False) -> list[str]:
    """Load the RDB into a scratch server, prove the target takes its payloads, then
    DUMP/RESTORE every key into ``dest`` (FLUSHDB of each db first with ``flush``)."""
    preflight(record, dest, flush, allow_broker)
    reads = redis_rdb.rdb_loaded_by(_target_version(dest))
    with tempfile.TemporaryDirectory(prefix="maintd-rdb-") as tmp:
        path, version = _fetch(store, record, tmp)
        binary = redis_rdb.server_for(version, payload_max=reads)  # the file's own header decides
        with redis_rdb.scratch_server(path, version, binary=binary) as port:
            counts = redis_rdb.scratch_counts(port)
            dbs = [int(name[2:]) for name in counts if name.startswith("db")]
            try:
                proven = redis_rdb.probe_restore(port, dest, dbs)
            except redis.RedisError as exc:
                raise PermanentError(f"redis {dest.name} refused a trial RESTORE, so nothing was flushed or"
                                     f" restored: {redis_door.classify(exc, f'redis {dest.url.masked}', 'RESTORE')}"
                                     ) from None
            try:
                copied = redis_rdb.copy_keys(port, dest, dbs, flush)
            except redis.RedisError as exc:
                raise redis_door.classify(exc, f"redis {dest.url.masked}", "RESTORE") from None
    flushed = " (target dbs flushed first)" if flush else ""
    return [proven, f"restored {copied} keys into {dest.name} dbs {dbs} with RESTORE ... REPLACE{flushed}"]
