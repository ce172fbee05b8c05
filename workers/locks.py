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
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import psycopg2
import psycopg2.extensions
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


LOCK_SESSION_IDLE_S = 60.0
IDLE_LABEL = "maintd:lock-session (idle)"


class LockSessions:
    """Per-process sessions that hold advisory locks, reused while busy.

    Opening a PostgreSQL session costs more than the rest of the gate together; a
    session unused for ``LOCK_SESSION_IDLE_S`` is closed by a timer, so a quiet worker
    holds no connections to its targets. The session names its holder in
    ``application_name`` while it holds a lock.
    """

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str], tuple[psycopg2.extensions.connection, float]] = {}
        self._mutex = threading.Lock()
        self._pid = os.getpid()
        self._timer: threading.Timer | None = None

    def take(self, target: PostgresTarget, label: str) -> psycopg2.extensions.connection:
        key = (target.name, target.dsn.reveal())
        with self._mutex:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._idle, self._pid, self._timer = {}, os.getpid(), None
            cached = self._idle.pop(key, None)
        if cached is not None and not cached[0].closed:
            return cached[0]
        return db.connect(target.dsn, application_name=label, connect_timeout_s=target.connect_timeout_s,
                          statement_timeout_s=30, password=target.password)

    def give_back(self, target: PostgresTarget, conn: psycopg2.extensions.connection) -> None:
        key = (target.name, target.dsn.reveal())
        with self._mutex:
            old = self._idle.pop(key, None)
            self._idle[key] = (conn, time.monotonic())
            if self._timer is None:
                self._timer = threading.Timer(LOCK_SESSION_IDLE_S, self.reap)
                self._timer.daemon = True
                self._timer.start()
        if old is not None:
            old[0].close()

    def reap(self, force: bool = False) -> None:
        with self._mutex:
            now = time.monotonic()
            stale = [k for k, (_, t) in self._idle.items() if force or now - t >= LOCK_SESSION_IDLE_S]
            conns = [self._idle.pop(k)[0] for k in stale]
            self._timer = None
            if self._idle:
                self._timer = threading.Timer(LOCK_SESSION_IDLE_S, self.reap)
                self._timer.daemon = True
                self._timer.start()
        for conn in conns:
            conn.close()


SESSIONS = LockSessions()


def _holder(conn: psycopg2.extensions.connection, k1: int, k2: int) -> str:
    held = db.query(
        conn,
        "SELECT a.application_name, a.pid, a.query_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2",
        (k1, k2),
    )
    if not held:
        return "another session"
    since = f", since {held[0]['query_start']:%Y-%m-%d %H:%M:%S}Z" if held[0]["query_start"] else ""
    return f"{held[0]['application_name'] or 'unknown'} (backend pid {held[0]['pid']}{since})"


@contextmanager
def postgres_lock(target: PostgresTarget, label: str) -> Iterator[None]:
    k1, k2 = advisory_key(target.name)
    conn = SESSIONS.take(target, label)
    try:
        rows = db.query(conn, "SELECT set_config('application_name', %s, false), pg_try_advisory_lock(%s, %s) AS got",
                        (label[:63], k1, k2))
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        conn.close()  # a cached session the server dropped: one fresh try
        conn = SESSIONS.take(target, label)
        try:
            rows = db.query(conn, "SELECT set_config('application_name', %s, false),"
                            " pg_try_advisory_lock(%s, %s) AS got", (label[:63], k1, k2))
        except psycopg2.Error as exc:
            conn.close()
            raise db.classify(exc, target.dsn, "take lock on") from None
    if not rows[0]["got"]:
        try:
            who = _holder(conn, k1, k2)
        finally:
            SESSIONS.give_back(target, conn)
        raise LockHeld(target.name, who)
    try:
        yield
    finally:
        try:
            db.query(conn, "SELECT pg_advisory_unlock(%s, %s), set_config('application_name', %s, false)",
                     (k1, k2, IDLE_LABEL))
            SESSIONS.give_back(target, conn)
        except psycopg2.Error:
            conn.close()  # ending the session releases the lock in any case


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
        text = holder.decode(errors="replace") if isinstance(holder, bytes) else holder
        raise LockHeld(name, text or "another worker")
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
