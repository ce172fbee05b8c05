"""One maintenance change per target at a time.

- Database targets: a PostgreSQL advisory lock held by a session whose
  ``application_name`` names the holder; it dies with the holder's process.
- Everything else: a redis-py ``Lock`` on the broker Redis, with an owner token
  (naming the holder) and a heartbeat thread that extends it while the work runs.

A held lock raises ``LockHeld`` (a ``SkippedError``) naming the holder.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import redis

from workers import db
from workers.config_model import Config, PostgresTarget, Target
from workers.errors import SkippedError, TransientError

logger = logging.getLogger(__name__)

ADVISORY_CLASS = 0x6D61  # first key of the two-int advisory lock: "ma"
REDIS_LOCK_TTL_S = 60
HEARTBEAT_S = 15


class LockHeld(SkippedError):
    def __init__(self, target: str, holder: str) -> None:
        super().__init__(f"lock on target {target!r} is held by {holder}")
        self.holder = holder


def holder_label(task: str, host: str, task_id: str) -> str:
    return f"maintd:{task}@{host} pid {os.getpid()} run {task_id[:8]}"


def advisory_key(target_name: str) -> tuple[int, int]:
    return ADVISORY_CLASS, zlib.crc32(target_name.encode()) & 0x7FFFFFFF


@contextmanager
def postgres_lock(target: PostgresTarget, label: str) -> Iterator[None]:
    k1, k2 = advisory_key(target.name)
    conn = db.connect(target.dsn, application_name=label, connect_timeout_s=target.connect_timeout_s,
                      statement_timeout_s=30, password=target.password)
    try:
        rows = db.query(conn, "SELECT pg_try_advisory_lock(%s, %s) AS got", (k1, k2))
        if not rows[0]["got"]:
            held = db.query(
                conn,
                "SELECT a.application_name, a.pid, a.backend_start, a.client_addr::text AS client"
                " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s"
                " AND l.objsubid = 2",
                (k1, k2),
            )
            who = (f"{held[0]['application_name'] or 'unknown'} (backend pid {held[0]['pid']},"
                   f" since {held[0]['backend_start']:%Y-%m-%d %H:%M:%S}Z)") if held else "another session"
            raise LockHeld(target.name, who)
        yield
    finally:
        conn.close()  # ends the session: the advisory lock goes with it


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)


def broker_redis(config: Config) -> redis.Redis:
    assert config.broker.url is not None
    return _redis(config.broker.url.reveal())


@contextmanager
def redis_lock(client: redis.Redis, kind: str, name: str, label: str, ttl_s: float = REDIS_LOCK_TTL_S,
               heartbeat_s: float = HEARTBEAT_S) -> Iterator[None]:
    """The token names the holder; the heartbeat keeps a short TTL alive while the work runs,
    so a killed holder frees the lock within ``ttl_s``."""
    key = f"maintd:lock:{kind}:{name}"
    token = f"{label} token {uuid.uuid4().hex[:12]}"
    lock = client.lock(key, timeout=ttl_s, blocking=False, thread_local=False)
    try:
        got = lock.acquire(token=token)
    except redis.RedisError as exc:
        raise TransientError(f"cannot take lock {key}: {exc}") from None
    if not got:
        holder = client.get(key)
        raise LockHeld(name, holder.decode(errors="replace") if holder else "another worker")
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(heartbeat_s):
            try:
                lock.extend(ttl_s, replace_ttl=True)
            except Exception as exc:  # noqa: BLE001 - a lost heartbeat is logged, the work goes on
                logger.warning("lock heartbeat for %s failed: %s", key, exc)

    beat = threading.Thread(target=heartbeat, name=f"lock-heartbeat-{name}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join(timeout=5)
        try:
            lock.release()
        except redis.exceptions.LockError:
            logger.warning("lock %s expired before release (heartbeat lost?)", key)
        except redis.RedisError as exc:
            logger.warning("lock %s not released: %s (expires in %ss)", key, exc, ttl_s)


@contextmanager
def target_lock(config: Config, target: Target, label: str) -> Iterator[None]:
    if isinstance(target, PostgresTarget):
        with postgres_lock(target, label):
            yield
    else:
        with redis_lock(broker_redis(config), target.kind, target.name, label):
            yield
