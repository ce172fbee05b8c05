"""One door to external commands (Barman's ``command_wrappers.py`` habit).

Argument lists only (never a shell), the binary resolved to an absolute path once, a
timeout always, allowed exit codes, stderr captured (bounded) and masked, passwords
through a 0600 passfile or the environment, never argv. A child dies with the process
that started it (``PR_SET_PDEATHSIG``), so a SIGKILLed worker leaves no ``pg_dump``
running. The builders for PostgreSQL's tools are in ``workers.doors.pgtools``; background
servers (a scratch redis-server, the embedded services) start and stop through ``servers``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from workers.config.secrets import mask_secrets
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
        clean = mask_secrets(stderr, *self.secrets)
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
    logger.debug("run %s: %s", cmd.label, " ".join(mask_secrets(a, *cmd.secrets) for a in cmd.argv))
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
    return Completed(proc.returncode, proc.stdout, mask_secrets(stderr, cmd.secrets))


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
        return mask_secrets(b"".join(self._stderr).decode(errors="replace"), *self.cmd.secrets)

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
    logger.debug("start %s: %s", cmd.label, " ".join(mask_secrets(a, *cmd.secrets) for a in cmd.argv))
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


@lru_cache(maxsize=32)
def tool_version(binary: str) -> str:
    """``pg_dump (PostgreSQL) 18.6`` etc.: the first line of ``--version``."""
    out = run(Command(Path(binary).name, (binary, "--version"), timeout_s=15))
    return out.stdout.decode(errors="replace").strip().splitlines()[0] if out.stdout else ""




# -- background servers ---------------------------------------------------------------

def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float, what: str, log: Path) -> None:
    """Until something listens on 127.0.0.1:``port``; RuntimeError if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode}: {tail.strip().splitlines()[-1:]}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f}s (log: {log})")


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout_s: float = 20) -> None:
    """Signal ``proc`` and wait; SIGKILL after ``timeout_s``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class Server:
    """A server maintd runs as its own foreground child on 127.0.0.1 (never daemonised):
    the caller owns its PID and stops it, so nothing is orphaned. Output goes to ``log``
    (or the server writes its own log there and stdout is discarded)."""

    label: str
    argv: Sequence[str]
    port: int
    log: Path
    stdout_to_log: bool = True
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 20
    die_with_parent: bool = False  # True for scratch servers: a killed worker takes them along
    popen: Mapping[str, Any] = field(default_factory=dict)  # e.g. user=/group= for PostgreSQL as root
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> Server:
        # Not resolved: a server may behave by the name it is started under (Debian's redis-server).
        if not os.path.isabs(self.argv[0]):
            raise ValueError(f"{self.label}: binary must be an absolute path, got {self.argv[0]!r}")
        with open(self.log if self.stdout_to_log else os.devnull, "ab") as out:
            self.proc = subprocess.Popen(
                list(self.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent if self.die_with_parent else None,
                **dict(self.popen))
        logger.debug("started %s (pid %d) on 127.0.0.1:%d", self.label, self.proc.pid, self.port)
        wait_for_port(self.port, self.proc, timeout_s, self.label, self.log)
        return self

    def stop(self) -> None:
        stop_process(self.proc, self.stop_signal, self.stop_timeout_s)


@contextmanager
def serve(server: Server, timeout_s: float = 30) -> Iterator[Server]:
    """Start ``server``, yield it once it listens, stop it on exit (whatever happened)."""
    try:
        yield server.start(timeout_s)
    finally:
        server.stop()
