"""One runner for external commands (Barman's ``command_wrappers.py`` habit).

Argument lists only (never a shell), the binary resolved to an absolute path once, a
timeout always, allowed exit codes, stderr captured (bounded) and redacted, passwords
through a 0600 passfile or the environment, never argv. A child dies with the process
that started it (``PR_SET_PDEATHSIG``), so a SIGKILLed worker leaves no ``pg_dump``
running. One small builder per binary: ``pg_dump``, ``pg_restore``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from workers.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)

STDERR_KEEP = 64 * 1024
STDOUT_KEEP = 16 * 1024 * 1024
_PR_SET_PDEATHSIG = 1
try:
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def die_with_parent() -> None:  # runs in the child between fork and exec: no allocation, no locks
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class CommandError(PermanentError):
    """A command exited with a code it is not allowed to, or could not start."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class CommandTimeout(TransientError):
    """A command ran past its timeout and was killed."""


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with every secret value and every ``password=...`` replaced by ``***``."""
    for value in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(value, "***")
    text = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.IGNORECASE)
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def first_error_line(stderr: str) -> str:
    """The most telling line of a tool's stderr: the first 'error'/'fatal' line, else the last one."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if re.search(r"\b(error|fatal|failed)\b", ln, re.IGNORECASE):
            return ln[:300]
    return lines[-1][:300] if lines else ""


@lru_cache(maxsize=64)
def resolve_binary(name_or_path: str) -> str:
    """An absolute, executable path for ``name_or_path`` (looked up on PATH once)."""
    found = name_or_path if os.path.isabs(name_or_path) else shutil.which(name_or_path)
    if not found or not os.access(found, os.X_OK):
        raise PermanentError(f"executable {name_or_path!r} not found")
    return str(Path(found).resolve())


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A small environment: PATH and locale, no inherited PG*/REDISCLI_* credentials."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "SYSTEMROOT")}
    env.update({"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"})
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Command:
    """One invocation: what to run, for how long, which exit codes are success."""

    label: str
    argv: tuple[str, ...]
    timeout_s: float
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    ok_codes: frozenset[int] = frozenset({0})
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not os.path.isabs(self.argv[0]):
            raise ValueError(f"{self.label}: binary must be an absolute path, got {self.argv[0]!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"{self.label}: timeout must be positive")

    def failed(self, returncode: int | None, stderr: str) -> CommandError:
        clean = redact(stderr, self.secrets)
        line = first_error_line(clean) or "no error output"
        return CommandError(f"{self.label} exited with code {returncode}: {line}", returncode=returncode,
                            stderr=clean[-4000:])


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: str


def run(cmd: Command, input_bytes: bytes | None = None) -> Completed:
    """Run to completion, capturing output. Raises CommandError / CommandTimeout."""
    logger.debug("run %s: %s", cmd.label, " ".join(redact(a, cmd.secrets) for a in cmd.argv))
    try:
        proc = subprocess.run(list(cmd.argv), input=input_bytes, capture_output=True, timeout=cmd.timeout_s,
                              env=child_env(cmd.env), preexec_fn=die_with_parent, check=False)
    except subprocess.TimeoutExpired:
        raise CommandTimeout(f"{cmd.label} timed out after {cmd.timeout_s:.0f}s") from None
    except OSError as exc:
        raise CommandError(f"{cmd.label} could not start: {exc.strerror}") from None
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode not in cmd.ok_codes:
        raise cmd.failed(proc.returncode, stderr)
    return Completed(proc.returncode, proc.stdout, redact(stderr, cmd.secrets))


class Running:
    """A started command whose stdin or stdout the caller streams; see ``start``."""

    def __init__(self, cmd: Command, proc: subprocess.Popen[bytes], capture_stdout: bool = False) -> None:
        self.cmd = cmd
        self.proc = proc
        self.timed_out = False
        self._stderr: deque[bytes] = deque()
        self._stderr_len = 0
        self._reader = threading.Thread(target=self._drain, name=f"{cmd.label}-stderr", daemon=True)
        self._reader.start()
        self._stdout = bytearray()
        self._stdout_reader: threading.Thread | None = None
        if capture_stdout:  # read concurrently: a full stdout pipe would block the child while we feed stdin
            self._stdout_reader = threading.Thread(target=self._collect_stdout, name=f"{cmd.label}-stdout", daemon=True)
            self._stdout_reader.start()
        self._timer = threading.Timer(cmd.timeout_s, self._expire)
        self._timer.daemon = True
        self._timer.start()

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(8192), b""):  # type: ignore[union-attr,attr-defined]
            self._stderr.append(chunk)
            self._stderr_len += len(chunk)
            while self._stderr_len > STDERR_KEEP and len(self._stderr) > 1:
                self._stderr_len -= len(self._stderr.popleft())

    def _collect_stdout(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):  # type: ignore[union-attr,attr-defined]
            if len(self._stdout) < STDOUT_KEEP:
                self._stdout += chunk

    def stdout_text(self) -> str:
        if self._stdout_reader is not None:
            self._stdout_reader.join(timeout=10)
        return self._stdout.decode(errors="replace")

    def _expire(self) -> None:
        if self.proc.poll() is None:
            self.timed_out = True
            self.proc.kill()

    def stderr_text(self) -> str:
        self._reader.join(timeout=5)
        return redact(b"".join(self._stderr).decode(errors="replace"), self.cmd.secrets)

    def finish(self, allowed: frozenset[int] | None = None) -> int:
        """Close our ends, wait for the exit, check the code. Returns the exit code."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        if self.proc.stdout is not None and self._stdout_reader is None:
            self.proc.stdout.close()
        try:
            code = self.proc.wait(timeout=max(1.0, self.cmd.timeout_s))
        finally:
            self._timer.cancel()
        if self._stdout_reader is not None:
            self._stdout_reader.join(timeout=10)
        if self.timed_out:
            raise CommandTimeout(f"{self.cmd.label} timed out after {self.cmd.timeout_s:.0f}s")
        if code not in (allowed or self.cmd.ok_codes):
            raise self.cmd.failed(code, self.stderr_text())
        return code

    def kill(self) -> None:
        self._timer.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


@contextmanager
def start(cmd: Command, *, stdin: bool = False, stdout: bool = False, capture_stdout: bool = False) -> Iterator[Running]:
    """Start ``cmd`` with a pipe to its stdin and/or from its stdout; killed if still running on exit.

    The caller streams, then calls ``running.finish()`` to check the exit code.
    """
    logger.debug("start %s: %s", cmd.label, " ".join(redact(a, cmd.secrets) for a in cmd.argv))
    try:
        proc = subprocess.Popen(list(cmd.argv), stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=child_env(cmd.env), preexec_fn=die_with_parent)
    except OSError as exc:
        raise CommandError(f"{cmd.label} could not start: {exc.strerror}") from None
    running = Running(cmd, proc, capture_stdout=capture_stdout and stdout)
    try:
        yield running
    finally:
        running.kill()


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


@lru_cache(maxsize=32)
def tool_version(binary: str) -> str:
    """``pg_dump (PostgreSQL) 18.6`` etc.: the first line of ``--version``."""
    out = run(Command(Path(binary).name, (binary, "--version"), timeout_s=15))
    return out.stdout.decode(errors="replace").strip().splitlines()[0] if out.stdout else ""


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
