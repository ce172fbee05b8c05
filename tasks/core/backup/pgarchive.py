"""Feeding a stored custom-format archive into ``pg_restore``: ``--list`` (format check) or a
real restore, streamed from the store with the checksum verified on the way.

pg_restore 17+ sends ``SET transaction_timeout`` which servers before 17 reject: restoring
across that gap runs without ``--exit-on-error`` and accepts that error only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from tasks.core.backup.stream import CHUNK, VerifiedReader
from workers.doors import commands, pgtools
from workers.doors.commands import CommandError
from workers.doors.pgtools import Login, Tool, classify_tool_error
from workers.errors import PermanentError


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
    cmd = pgtools.pg_restore(tool.path, conninfo=None, list_only=True, timeout_s=timeout_s)
    with commands.start(cmd, stdin=True, stdout=True, capture_stdout=True) as proc:
        pump(reader, proc.stdin)
        reader.finish()
        proc.finish()
        listing = proc.stdout_text()
    entries = [ln for ln in listing.splitlines() if ln.strip() and not ln.startswith(";")]
    if not entries:
        raise PermanentError("pg_restore --list found no TOC entries")
    return len(entries)


def tolerant(tool: Tool, server_major: int) -> bool:
    """pg_restore 17+ into a server before 17: no ``--single-transaction``, no
    ``--exit-on-error`` (its ``SET transaction_timeout`` fails there), so a failure part way
    leaves what was done: only restores into a fresh database may run like that."""
    return tool.major >= 17 and server_major < 17


def restore_stream(reader: VerifiedReader, tool: Tool, server_major: int, server: Login, *,
                   timeout_s: float, clean: bool = False, single_transaction: bool = False, no_owner: bool = False,
                   secrets: Sequence[str] = ()) -> list[str]:
    """Feed the archive into ``pg_restore -d``. Returns notes (e.g. tolerated errors)."""
    notes = []
    loose = tolerant(tool, server_major)
    if loose:
        notes.append(f"pg_restore {tool.version} into PostgreSQL {server_major}: run without --exit-on-error/"
                     "--single-transaction; only the transaction_timeout error is accepted")
    revealed = server.password.reveal() if server.password else None
    with pgtools.passfile(revealed) as env:
        cmd = pgtools.pg_restore(tool.path, conninfo=server.conninfo, timeout_s=timeout_s, env=env, clean=clean,
                                  single_transaction=single_transaction and not loose,
                                  exit_on_error=not loose, no_owner=no_owner,
                                  secrets=[*secrets, *([revealed] if revealed else [])])
        with commands.start(cmd, stdin=True) as proc:
            pump(reader, proc.stdin)
            reader.finish()
            try:
                code = proc.finish(frozenset({0, 1}) if loose else None)
            except CommandError as exc:
                raise classify_tool_error(exc) from None
            if code == 1:
                errors = [ln for ln in proc.stderr_text().splitlines() if "error:" in ln]
                unexpected = [ln for ln in errors if "transaction_timeout" not in ln]
                if unexpected or not errors:
                    raise cmd.failed(code, "\n".join(unexpected) or proc.stderr_text())
                notes.append("ignored: unrecognized configuration parameter \"transaction_timeout\"")
    return notes
