"""SQLite, Redis and files backups against the real things (Celery-free code): a WAL
database with a writer mid-transaction, a private redis-server (RDB over SYNC, restore
through a scratch server), a directory tree; each verified, restore-tested, restored."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tasks.core.backup import drill, files, redis_backup, restore, sqlite, verify
from tasks.core.backup.coordinate import Compression
from tasks.core.backup.inventory import list_backups
from tasks.core.backup.local import LocalStore
from tasks.core.backup.redis_rdb import RDB_MIN_REDIS
from tasks.core.backup.stores import open_store
from tests.test_backup_support import MotoS3, PrivateRedis, data_files, flip_byte
from workers.config import FilesTarget, RedisTarget, SqliteTarget
from workers.errors import PermanentError

FRESH = verify.Freshness(timedelta(hours=24), timedelta(days=8))
CTX: dict[str, Any] = {"host": "testhost", "task_id": "t-1", "compression": Compression(3, 2)}


def now() -> datetime:
    return datetime.now(UTC)


def make_sqlite(path: Path, rows: int = 2000) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE assets (id INTEGER PRIMARY KEY, name TEXT, value REAL, meta TEXT)")
    conn.execute('CREATE TABLE "odd ""name""" (x)')
    conn.executemany("INSERT INTO assets (name, value, meta) VALUES (?, ?, ?)",
                     [(f"asset-{i}", i * 1.5, f'{{"k": {i}}}') for i in range(rows)])
    conn.execute('INSERT INTO "odd ""name""" VALUES (1)')
    conn.commit()
    conn.close()


def test_sqlite_online_backup_while_a_writer_is_mid_transaction(tmp_path: Path) -> None:
    db = tmp_path / "app" / "assets.db"
    db.parent.mkdir()
    make_sqlite(db)
    target = SqliteTarget(name="assets", path=db, host="testhost")
    store = LocalStore(tmp_path / "store")
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO assets (name) VALUES ('uncommitted')")
    try:
        result = sqlite.backup(target, store, **CTX)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert result.status == "ok"
    [record] = list_backups(store, "sqlite", "assets")
    assert record.manifest is not None and record.manifest.counts["assets"]["rows"] == 2000  # committed rows only
    assert record.manifest.counts['odd "name"']["rows"] == 1
    assert verify.verify(store, target, FRESH, now=now(), timeout_s=60).status == "ok"
    tested = drill.restore_test(store, target, now=now(), timeout_s=60)
    assert tested.status == "ok" and tested.metrics["rows"] == 2001, tested

    # restore over the live file while a reader has it open
    reader = sqlite3.connect(db)
    change = sqlite3.connect(db)
    change.execute("DELETE FROM assets WHERE id > 10")
    change.commit()
    change.close()
    restore.restore(store, target, None, now=now(), confirm="assets")  # type: ignore[arg-type]
    assert reader.execute("SELECT count(*) FROM assets").fetchone()[0] == 2000
    reader.close()
    alt = tmp_path / "restored" / "copy.db"
    restore.restore(store, target, None, now=now(), into=str(alt), confirm="assets")  # type: ignore[arg-type]
    assert stat.S_IMODE(alt.stat().st_mode) == 0o600
    assert sqlite3.connect(alt).execute("SELECT count(*) FROM assets").fetchone()[0] == 2000


def test_sqlite_corrupt_backup_is_critical(tmp_path: Path) -> None:
    db = tmp_path / "assets.db"
    make_sqlite(db, 200)
    target = SqliteTarget(name="assets", path=db, host="testhost")
    store = LocalStore(tmp_path / "store")
    sqlite.backup(target, store, **CTX)
    [obj] = data_files(tmp_path / "store", "data.sqlite.zst")
    flip_byte(obj, 40)
    result = verify.verify(store, target, FRESH, now=now(), timeout_s=60)
    assert result.status == "critical" and "data.sqlite.zst" in result.summary


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def seed_redis(url: str) -> None:
    r0 = redis.Redis.from_url(url)
    r0.mset({f"user:{i}": f"name-{i}" for i in range(300)})
    r0.hset("config", mapping={"a": "1", "b": "2"})
    r0.set("session:x", "live", ex=3600)
    r3 = redis.Redis.from_url(url.rsplit("/", 1)[0] + "/3")
    r3.rpush("queue", *[f"job-{i}" for i in range(50)])
    r0.close()
    r3.close()


def test_redis_rdb_over_the_network_restore_test_and_restore(private_redis: PrivateRedis, tmp_path: Path) -> None:
    seed_redis(private_redis.url())
    target = RedisTarget(name="cache", url=private_redis.url())
    store = LocalStore(tmp_path / "store")
    result = redis_backup.backup(target, store, timeout_s=60, **CTX)
    assert result.status == "ok", result
    [record] = list_backups(store, "redis", "cache")
    assert record.manifest is not None
    rdb = record.manifest.source["rdb_version"]
    assert RDB_MIN_REDIS.get(rdb, (0, 0)) <= private_redis.version  # what this server writes
    assert record.manifest.counts["db0"]["keys"] == 302 and record.manifest.counts["db3"]["keys"] == 1
    checked = verify.verify(store, target, FRESH, now=now(), timeout_s=60)
    assert checked.status == "ok" and "redis-check-rdb ok" in checked.actions[0], checked
    tested = drill.restore_test(store, target, now=now(), timeout_s=60)
    assert tested.status == "ok" and tested.metrics["keys"] == 303, tested

    other = PrivateRedis(tmp_path / "redis-2").start()
    try:
        redis.Redis.from_url(other.url()).set("stale", "x")
        dest = RedisTarget(name="cache2", url=other.url())
        from workers.config import Config

        config = Config(redis=[target, dest])
        done = restore.restore(store, target, config, now=now(), into="cache2", confirm="cache", flush=True)
        assert done.status == "ok", done
        r0 = redis.Redis.from_url(other.url())
        assert r0.dbsize() == 302 and r0.get("user:7") == b"name-7" and r0.get("stale") is None
        assert 0 < r0.ttl("session:x") <= 3600  # expiry travels with the key
        assert redis.Redis.from_url(other.url(3)).lrange("queue", 0, 1) == [b"job-0", b"job-1"]
    finally:
        other.stop()


def test_redis_password_and_a_wrong_one(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path / "redis", password="Redis-S3cret-pw").start()
    try:
        store = LocalStore(tmp_path / "store")
        good = RedisTarget(name="cache", url=server.url(), password="Redis-S3cret-pw")  # type: ignore[arg-type]
        redis.Redis.from_url(server.url(), password="Redis-S3cret-pw").set("k", "v")
        assert redis_backup.backup(good, store, timeout_s=60, **CTX).status == "ok"
        wrong = RedisTarget(name="cache", url=server.url().replace("redis://", "redis://:Wr0ng-pw@"))
        with pytest.raises(PermanentError) as err:
            redis_backup.backup(wrong, store, timeout_s=60, **CTX)
        assert "Wr0ng-pw" not in str(err.value) and "Redis-S3cret-pw" not in str(err.value)
    finally:
        server.stop()


def test_files_tar_backup_to_s3_restore_test_and_restore(tmp_path: Path, scratch_root: Path) -> None:
    src = tmp_path / "srv" / "config"
    (src / "nested").mkdir(parents=True)
    (src / "app.env").write_text("MODE=prod\n")
    (src / "nested" / "big.bin").write_bytes(bytes(range(256)) * 4000)
    (src / "skip.tmp").write_text("excluded")
    (src / "link").symlink_to("app.env")
    target = FilesTarget(name="config", paths=[src], exclude=["*.tmp"], host="testhost")
    s3 = MotoS3(scratch_root / "moto")
    try:
        store = open_store(s3.section(s3.bucket()))
        plan = files.backup(target, store, dry_run=True, **CTX)
        assert plan.metrics["files"] == 2
        assert files.backup(target, store, **CTX).status == "ok"
        [record] = list_backups(store, "files", "config")
        assert record.manifest is not None and record.manifest.counts[str(src)]["files"] == 2
        assert verify.verify(store, target, FRESH, now=now(), timeout_s=60).status == "ok"
        assert drill.restore_test(store, target, now=now(), timeout_s=60).status == "ok"
        out = tmp_path / "restored"
        restore.restore(store, target, None, now=now(), into=str(out), confirm="config")  # type: ignore[arg-type]
        back = out / str(src).lstrip("/")
        assert (back / "app.env").read_text() == "MODE=prod\n"
        assert (back / "nested" / "big.bin").read_bytes() == (src / "nested" / "big.bin").read_bytes()
        assert (back / "link").is_symlink() and not (back / "skip.tmp").exists()
    finally:
        s3.stop()
