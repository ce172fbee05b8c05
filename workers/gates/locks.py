"""One maintenance change per target at a time.

- Database targets: a PostgreSQL advisory lock held by a session whose
  ``application_name`` names the holder; it dies with the holder's process. PostgreSQL
  keeps advisory locks per database, so the key is one constant: the lock *is* the
  database's (its cluster and oid), and two target names — or two spellings of the host —
  for one database exclude each other.
- Everything else: a redis-py ``Lock`` on the broker Redis, keyed by what the target is
  (``Target.lock_scope``: host:port/db of a Redis, host and path of a SQLite file), with an
  owner token naming the holder and a heartbeat thread that extends it while the work runs.

A held lock raises ``LockHeld`` (a ``SkippedError``) naming the holder. A lock taken
yields a *lease*: ``lease.check()`` raises ``LockLostError`` once the lock may no longer be
ours (the heartbeat could not extend it before its TTL ran out, or another holder has it;
the session holding the advisory lock ended, e.g. killed by ``idle_session_timeout`` or a
pooler). The gate registers ``check`` on the run, so the body stops at its next step.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
import redis

from workers.config import Config, PostgresTarget, Target
from workers.doors import postgres as db
from workers.doors.pg_activity import ADVISORY_HELD_SQL, ADVISORY_HOLDER_SQL
from workers.doors.redis import broker_client
from workers.errors import LockLostError, SkippedError, TransientError, first_line

logger = logging.getLogger(__name__)

ADVISORY_CLASS = 0x6D61  # first key of the two-int advisory lock: "ma"
ADVISORY_DATABASE = 0x6D6E74  # second key: "the maintenance lock of this database" ("mnt")
REDIS_LOCK_TTL_S = 60
HEARTBEAT_S = 15
RETRY_HEARTBEAT_S = 2.0  # after a failed extend, try again this soon (the TTL is still running)
CHECK_EVERY_S = 1.0  # the advisory lock's session is asked at most this often


class LockHeld(SkippedError):
    def __init__(self, target: str, holder: str) -> None:
        super().__init__(f"lock on target {target!r} is held by {holder}")
        self.holder = holder


def holder_label(task: str, host: str, task_id: str) -> str:
    return f"maintd:{task}@{host} pid {os.getpid()} run {task_id[:8]}"


def advisory_key() -> tuple[int, int]:
    """The two-int advisory lock key; per database by PostgreSQL's own scoping."""
    return ADVISORY_CLASS, ADVISORY_DATABASE


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
        conn = db.connect(target.dsn, application_name=label, connect_timeout_s=target.connect_timeout_s,
                          statement_timeout_s=30, password=target.password)
        if conn.server_version >= 140000:
            # The session sits idle while the work runs on another one: a server-wide
            # idle_session_timeout must not end it (and with it the lock).
            db.query(conn, "SELECT set_config('idle_session_timeout', '0', false)")
        return conn

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


class Lease:
    """A lock this run holds. ``check()`` raises ``LockLostError`` once it may not be held."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.lost: str | None = None

    def check(self) -> None:
        if self.lost is not None:
            raise LockLostError(self.lost)


class AdvisoryLease(Lease):
    """The advisory lock lives as long as its session: the session is asked (at most once a
    second) whether it still holds it."""

    def __init__(self, target: str, conn: psycopg2.extensions.connection, k1: int, k2: int) -> None:
        super().__init__(target)
        self.conn, self.keys = conn, (k1, k2)
        self._checked = time.monotonic()

    def check(self) -> None:
        super().check()
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY_S:
            return
        self._checked = now
        try:
            held = db.query(self.conn, ADVISORY_HELD_SQL, self.keys)[0]["held"]
        except psycopg2.Error as exc:
            self.lost = (f"lock lost on target {self.target!r}: the session holding it ended"
                         f" ({first_line(exc, 160)})")
        else:
            if not held:
                self.lost = f"lock lost on target {self.target!r}: its session no longer holds it"
        super().check()


class RedisLease(Lease):
    """Ours while a heartbeat extended it less than ``ttl_s`` ago and no extend was refused."""

    def __init__(self, target: str, ttl_s: float) -> None:
        super().__init__(target)
        self.ttl_s = ttl_s
        self.extended_at = time.monotonic()

    def check(self) -> None:
        if self.lost is None and time.monotonic() - self.extended_at >= self.ttl_s:
            self.lost = (f"lock lost on target {self.target!r}: not extended for {self.ttl_s:.0f}s"
                         " (Redis unreachable), so it may have expired")
        super().check()


def _holder(conn: psycopg2.extensions.connection, k1: int, k2: int) -> str:
    held = db.query(conn, ADVISORY_HOLDER_SQL, (k1, k2))
    if not held:
        return "another session"
    since = f", since {held[0]['query_start']:%Y-%m-%d %H:%M:%S}Z" if held[0]["query_start"] else ""
    return f"{held[0]['application_name'] or 'unknown'} (backend pid {held[0]['pid']}{since})"


_TAKE_SQL = "SELECT set_config('application_name', %s, false), pg_try_advisory_lock(%s, %s) AS got"


@contextmanager
def postgres_lock(target: PostgresTarget, label: str) -> Iterator[Lease]:
    k1, k2 = advisory_key()
    conn = SESSIONS.take(target, label)
    try:
        rows = db.query(conn, _TAKE_SQL, (label[:63], k1, k2))
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        conn.close()  # a cached session the server dropped: one fresh try
        conn = SESSIONS.take(target, label)
        try:
            rows = db.query(conn, _TAKE_SQL, (label[:63], k1, k2))
        except psycopg2.Error as exc:
            conn.close()
            raise db.classify(exc, target.dsn, "take lock on") from None
    if not rows[0]["got"]:
        try:
            who = _holder(conn, k1, k2)
        finally:
            SESSIONS.give_back(target, conn)
        raise LockHeld(target.name, who)
    lease = AdvisoryLease(target.name, conn, k1, k2)
    try:
        yield lease
    finally:
        try:
            db.query(conn, "SELECT pg_advisory_unlock(%s, %s), set_config('application_name', %s, false)",
                     (k1, k2, IDLE_LABEL))
            SESSIONS.give_back(target, conn)
        except psycopg2.Error:
            conn.close()  # ending the session releases the lock in any case


@contextmanager
def redis_lock(client: redis.Redis, kind: str, name: str, label: str, ttl_s: float = REDIS_LOCK_TTL_S,
               heartbeat_s: float = HEARTBEAT_S, scope: str | None = None) -> Iterator[Lease]:
    """The token names the holder; the heartbeat keeps a short TTL alive while the work runs,
    so a killed holder frees the lock within ``ttl_s``. The key is ``maintd:lock:<scope>``
    (``<kind>:<name>`` unless the target's ``lock_scope`` is given)."""
    key = f"maintd:lock:{scope or f'{kind}:{name}'}"
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
    lease = RedisLease(name, ttl_s)
    stop = threading.Event()

    def heartbeat() -> None:
        wait = heartbeat_s
        while not stop.wait(wait):
            attempted = time.monotonic()
            try:
                lock.extend(ttl_s, replace_ttl=True)
            except redis.exceptions.LockError as exc:  # LockNotOwnedError: expired, or another holder has it
                lease.lost = f"lock lost on target {name!r}: {first_line(exc, 160)}"
                logger.error("lock %s lost: %s", key, exc)
                return
            except redis.RedisError as exc:
                logger.warning("lock heartbeat for %s failed (retrying in %.0fs): %s", key, RETRY_HEARTBEAT_S, exc)
                wait = min(heartbeat_s, RETRY_HEARTBEAT_S)
                continue
            lease.extended_at, wait = attempted, heartbeat_s

    beat = threading.Thread(target=heartbeat, name=f"lock-heartbeat-{name}", daemon=True)
    beat.start()
    try:
        yield lease
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
def target_lock(config: Config, target: Target, label: str) -> Iterator[Lease]:
    if isinstance(target, PostgresTarget):
        with postgres_lock(target, label) as lease:
            yield lease
    else:
        with redis_lock(broker_client(config), target.kind, target.name, label, scope=target.lock_scope) as lease:
            yield lease
