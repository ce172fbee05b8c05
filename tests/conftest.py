"""Real services for the tests.

``MAINTD_TEST_REDIS_URL`` / ``MAINTD_TEST_POSTGRES_DSN`` point at existing servers
(CI: the machine's Redis 7 and PostgreSQL 15); when unset, an embedded Redis 6.2
and PostgreSQL 18 are started for the session. Each session works in its own
PostgreSQL databases (dropped at the end) and its own Redis database index.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg2
import pytest
import redis

from workers.processes.embedded import EmbeddedPostgres, EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class PgServer:
    """A PostgreSQL server the tests may create databases on."""

    admin_dsn: str
    embedded: EmbeddedPostgres | None = None
    created: list[str] = field(default_factory=list)

    def dsn(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))

    def admin(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(self.admin_dsn, connect_timeout=5)
        conn.autocommit = True
        return conn

    def create_database(self, prefix: str = "maintd_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.created.append(name)
        return name

    def drop_database(self, name: str) -> None:
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()

    @property
    def port(self) -> int:
        return urlsplit(self.admin_dsn).port or 5432


@pytest.fixture(scope="session", autouse=True)
def no_orphaned_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the session if any maintd process a test started is still running at the end."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "workers.app" not in cmd and "workers.cli" not in cmd:
            continue
        try:
            if proc.environ().get("MAINTD_CONFIG", "").startswith(base):
                left.append(f"{proc.pid}: {cmd[:120]}")
                proc.kill()
        except psutil.Error:
            continue
    assert not left, "tests left maintd processes running (killed now): " + "; ".join(left)


@pytest.fixture(scope="session")
def scratch_root() -> Iterator[Path]:
    """A temp dir other users can traverse (embedded PostgreSQL runs as its own user when root)."""
    path = Path(tempfile.mkdtemp(prefix="maintd-tests-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(scratch_root: Path) -> Iterator[PgServer]:
    env = os.environ.get("MAINTD_TEST_POSTGRES_DSN")
    if env:
        server = PgServer(env)
    else:
        emb = EmbeddedPostgres(scratch_root / "postgres").start()
        server = PgServer(emb.url(), embedded=emb)
    yield server
    for name in server.created:
        try:
            server.drop_database(name)
        except psycopg2.Error:
            pass
    if server.embedded:
        server.embedded.stop()


def xdist_db(url: str) -> str:
    """Under pytest-xdist each test process flushes and consumes its own Redis database:
    worker ``gwN`` uses the given database number minus N (15, 14, 13… for CI's 15)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    db = base - int(worker[2:])
    if db < 0:
        raise RuntimeError(f"MAINTD_TEST_REDIS_URL: database {base} leaves no room for xdist worker {worker}")
    return urlunsplit(parts._replace(path=f"/{db}"))


@dataclass
class RedisServer:
    url: str
    embedded: EmbeddedRedis | None = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)


@pytest.fixture(scope="session")
def redis_server(scratch_root: Path) -> Iterator[RedisServer]:
    env = os.environ.get("MAINTD_TEST_REDIS_URL")
    if env:
        server = RedisServer(xdist_db(env))
    else:
        emb = EmbeddedRedis(scratch_root / "redis").start()
        server = RedisServer(emb.url, embedded=emb)
    yield server
    if server.embedded:
        server.embedded.stop()


@pytest.fixture(scope="session")
def results_db(pg_server: PgServer) -> str:
    """The results/history database of this test session."""
    return pg_server.dsn(pg_server.create_database("maintd_results"))


@pytest.fixture
def target_db(pg_server: PgServer) -> str:
    """A fresh database to maintain, dropped after the session."""
    return pg_server.dsn(pg_server.create_database("maintd_target"))


@pytest.fixture
def broker_url(redis_server: RedisServer) -> str:
    """The broker with every key of earlier tests removed."""
    redis_server.client().flushdb()
    return redis_server.url


@dataclass
class ConfigFactory:
    path: Path
    broker_url: str
    results_url: str

    def write(self, body: str = "", *, visibility_timeout: int = 21600) -> Path:
        text = textwrap.dedent(f"""\
            [maintd]
            host = "testhost"
            data_dir = "{self.path.parent / 'data'}"

            [broker]
            url = "{self.broker_url}"
            visibility_timeout = {visibility_timeout}

            [results]
            url = "{self.results_url}"

            """) + textwrap.dedent(body)
        self.path.write_text(text)
        os.environ["MAINTD_CONFIG"] = str(self.path)
        from workers.config import reset_config

        reset_config()
        return self.path


@pytest.fixture
def config(tmp_path: Path, broker_url: str, results_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConfigFactory]:
    """Write a config for this test (broker + results filled in) and make it current."""
    monkeypatch.setenv("MAINTD_CONFIG", str(tmp_path / "maintd.toml"))
    factory = ConfigFactory(tmp_path / "maintd.toml", broker_url, results_db)
    yield factory
    from workers.config import reset_config

    reset_config()


def maintd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "workers.cli", *args]


@dataclass
class RunningWorker:
    proc: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self, nodes: list[str], timeout_s: float = 60, after: int = 0) -> None:
        """Until each celery node logged "<node> ready." (after byte offset ``after``)."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            text = self.log.read_text(errors="replace")[after:]
            return all(f"{n} ready." in text for n in nodes)

        wait_until(ready, timeout_s, f"workers {nodes} ready (log {self.log})")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the supervisor (it stops its lanes, slow lane grace 120 s); if anything of the
        tree is still alive after that, kill the whole tree: no test may leave a worker."""
        try:
            tree = [self.proc.pid] + [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = [self.proc.pid]
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=150)
            except subprocess.TimeoutExpired:
                pass
        for pid in tree:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.2) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def wait_for_workers(names: list[str], timeout_s: float = 60) -> None:
    """Until every named celery node answers a ping (their consumers are up)."""
    from workers.app import app

    def all_up() -> bool:
        replies = app.control.ping(timeout=1.0) or []
        seen = {name for reply in replies for name in reply}
        return all(any(s.startswith(n) for s in seen) for n in names)

    wait_until(all_up, timeout_s, f"workers {names}")


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., RunningWorker]]:
    """Start ``maintd worker`` (both lanes) as a real process tree; stopped after the test."""
    started: list[RunningWorker] = []

    def start(role: str = "db", host: str = "testhost", concurrency: int = 2, wait: bool = True) -> RunningWorker:
        log = tmp_path / f"worker-{role}-{host}-{len(started)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(maintd_cmd("worker", "--role", role, "--host", host, "--concurrency", str(concurrency)),
                                    stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                    env={**os.environ})
        worker = RunningWorker(proc, log)
        started.append(worker)
        if wait:
            worker.wait_ready([f"{role}-fast@{host}", f"{role}-slow@{host}"])
        return worker

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def inprocess_worker(config: ConfigFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """An in-process worker on maintd's own app: pytest-celery's embedded worker
    (``celery.contrib.testing.worker.start_worker``, the plugin's legacy fixtures) as a thread
    of the test process, consuming one role's queues on real Redis and writing the real
    results database. For tests of task wiring (gates, records, outcomes, alerts): no process
    to spawn. The fault, lane and shutdown tests keep real worker processes (``start_worker``).
    No hard time limits in a thread pool: tests that need one use ``start_worker``."""
    stack = contextlib.ExitStack()

    def start(role: str = "db", host: str = "testhost", concurrency: int = 2) -> Any:
        from celery.contrib.testing.worker import start_worker as embedded_worker

        from workers.app import app, declare_queue
        from workers.routing import lane_queues

        monkeypatch.setenv("MAINTD_HOST", host)
        queues = sorted({q for lane in ("fast", "slow") for q in lane_queues(role, lane, host)})
        for name in queues:  # the app declared the queues of the config it was first built with
            if name not in app.amqp.queues:
                app.amqp.queues.add(declare_queue(name))
        return stack.enter_context(embedded_worker(
            app, concurrency=concurrency, pool="threads", loglevel="WARNING", perform_ping_check=False,
            shutdown_timeout=60, queues=queues, hostname=f"{role}-inprocess@{host}"))

    try:
        yield start
    finally:
        stack.close()

