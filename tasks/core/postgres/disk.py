"""Free disk for a rewrite (VACUUM FULL) on the server's data filesystem.

PostgreSQL tells where the data lives (``data_directory``, tablespace locations) but
not how much space is free there. So:

- server on this machine (DSN host loopback or a Unix socket) and the directory is
  visible here with a ``PG_VERSION`` of the server's major version: ``statvfs`` it;
- ``free_disk_floor_mb`` configured: the operator's figure (from their monitoring) for
  a remote server; with both, the smaller one counts;
- neither: unknown, and the rewrite is refused (never guessed).

A containerised server on localhost whose data directory path also exists on the host
would be measured wrongly: give ``free_disk_floor_mb`` for it (the smaller one wins).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions

from workers.config import PostgresTarget
from workers.doors import postgres as db

logger = logging.getLogger(__name__)

REWRITE_FACTOR = 1.2  # a full copy of table + indexes, plus room for WAL and sorting
LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1", "[::1]"}


@dataclass(frozen=True)
class FreeSpace:
    bytes: int | None
    source: str  # how the figure was obtained, for the report


def _is_local(target: PostgresTarget) -> bool:
    try:
        params = psycopg2.extensions.parse_dsn(db.plain_dsn(target.dsn))
    except psycopg2.ProgrammingError:
        return False
    hosts = [h.strip() for h in params.get("host", "").split(",")]
    return all(h in LOCAL_HOSTS or h.startswith("/") for h in hosts)


def data_path(conn: psycopg2.extensions.connection, tablespace_oid: int) -> str | None:
    """Where the relation's files live, as the server sees it (None without the privilege)."""
    try:
        rows = db.query(conn, (
            "SELECT CASE WHEN t.spcname IN ('pg_default', 'pg_global') OR t.spcname IS NULL"
            " THEN current_setting('data_directory') ELSE pg_tablespace_location(t.oid) END AS path,"
            " current_setting('server_version_num')::int / 10000 AS major"
            " FROM (SELECT %s::oid AS oid) x LEFT JOIN pg_tablespace t ON t.oid = x.oid"), (tablespace_oid,))
    except psycopg2.errors.InsufficientPrivilege:
        return None
    return str(rows[0]["path"]) if rows and rows[0]["path"] else None


def _statvfs(path: str, conn: psycopg2.extensions.connection) -> int | None:
    major = str(db.query(conn, "SELECT current_setting('server_version_num')::int / 10000 AS m")[0]["m"])
    root = Path(path)
    version = root / "PG_VERSION"
    try:
        if version.is_file() and version.read_text().strip() != major:
            return None
        if not root.is_dir():
            return None
        st = os.statvfs(root)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def free_space(conn: psycopg2.extensions.connection, target: PostgresTarget, tablespace_oid: int) -> FreeSpace:
    measured: int | None = None
    source = []
    if _is_local(target):
        path = data_path(conn, tablespace_oid)
        if path:
            measured = _statvfs(path, conn)
            if measured is not None:
                source.append(f"statvfs {path}")
    floor = int(target.free_disk_floor_mb * 1024 * 1024) if target.free_disk_floor_mb is not None else None
    if floor is not None:
        source.append("free_disk_floor_mb")
    values = [v for v in (measured, floor) if v is not None]
    if not values:
        return FreeSpace(None, "unknown (remote server or no access to data_directory; set free_disk_floor_mb)")
    return FreeSpace(min(values), " and ".join(source))


def rewrite_refusal(needed_bytes: int, free: FreeSpace) -> str | None:
    """Why a rewrite of ``needed_bytes`` (table + indexes) must not start, or None."""
    if free.bytes is None:
        return f"free disk {free.source}"
    want = int(needed_bytes * REWRITE_FACTOR)
    if free.bytes < want:
        return (f"not enough free disk: needs {want / 1048576:.1f} MB ({REWRITE_FACTOR}x table+indexes),"
                f" {free.bytes / 1048576:.1f} MB free ({free.source})")
    return None
