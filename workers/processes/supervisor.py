"""A small process supervisor for ``maintd up`` and ``maintd worker``.

Children run in their own process groups (a terminal's Ctrl-C reaches only the supervisor).
SIGTERM/SIGINT/SIGHUP to the supervisor stops every child in parallel: SIGTERM to each
child's *main process only* — for a Celery worker that is a warm shutdown: it stops taking
messages and its pool finishes the tasks it is running (SIGTERM to the whole group would
kill the pool processes mid-task) — then, once a child's grace has passed, SIGKILL to its
whole group. A second signal while stopping means "now": the grace ends at once.

A child that exits on its own is restarted with backoff, at most ``max_restarts`` times a
minute; past that the supervisor stops everything and exits non-zero. Whenever a child is
gone without having stopped cleanly (killed after its grace, or exited on its own),
``on_gone`` is called, so the runs it left ``running`` are closed ``lost``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    grace_s: float = 30
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    # Called with (child, why) when the child is gone without a clean stop.
    on_gone: Callable[[Child, str], None] | None = None

    def start(self) -> None:
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(list(self.argv), env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        logger.info("started %s (pid %d)", self.name, self.proc.pid)

    def signal_stop(self) -> None:
        """SIGTERM to the child's main process only (warm shutdown: running tasks finish)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def finish_stop(self, deadline: float, now_event: threading.Event | None = None) -> bool:
        """Wait until ``deadline`` (monotonic) or ``now_event``, then SIGKILL whatever is left
        in the group. True when something had to be killed."""
        proc = self.proc
        if proc is None:
            return False
        killed, why = False, ""
        while proc.poll() is None and time.monotonic() < deadline and not (now_event and now_event.is_set()):
            try:
                proc.wait(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                continue
        if proc.poll() is None:
            why = "stopped by a second signal" if now_event and now_event.is_set() else \
                f"did not stop within its grace of {self.grace_s:.0f}s"
            logger.warning("%s %s; killing", self.name, why)
            killed = True
        try:  # anything left in the group (pool children) goes too
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(timeout=10)
        if killed:
            self.gone(f"killed at stop: the worker {why}")
        return killed

    def gone(self, why: str) -> None:
        if self.on_gone is None:
            return
        try:
            self.on_gone(self, why)
        except Exception:  # noqa: BLE001 - bookkeeping must not stop the stopping
            logger.exception("recording what %s left behind failed", self.name)

    def stop(self) -> None:
        self.signal_stop()
        self.finish_stop(time.monotonic() + self.grace_s)


def stop_all(children: list[Child], now_event: threading.Event | None = None) -> bool:
    """Stop children in parallel: all are signalled at once, each gets its own grace (ended
    early by ``now_event``). True when any child had to be killed."""
    start = time.monotonic()
    for child in reversed(children):
        child.signal_stop()
    killed = False
    for child in reversed(children):
        killed = child.finish_stop(start + child.grace_s, now_event) or killed
    return killed


class Supervisor:
    def __init__(self, children: list[Child], max_restarts: int = 5,
                 on_stop: Callable[[], None] | None = None) -> None:
        self.children = children
        self.max_restarts = max_restarts
        self.on_stop = on_stop
        self._stopping = False
        self._now = threading.Event()

    def _signal(self, signum: int, _frame: object) -> None:
        if self._stopping:
            if not self._now.is_set():
                logger.warning("received %s again: stopping now", signal.Signals(signum).name)
                print("maintd: stopping now: running tasks are killed and recorded lost", file=sys.stderr, flush=True)
            self._now.set()
            return
        logger.info("received %s: stopping", signal.Signals(signum).name)
        longest = max((c.grace_s for c in self.children), default=0)
        if longest > 60:
            print(f"maintd: stopping: running tasks may take up to {longest:.0f}s to finish"
                  " (send the signal again, e.g. Ctrl-C, to stop now)", file=sys.stderr, flush=True)
        self._stopping = True

    def run(self) -> int:
        previous = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        code = 0
        try:
            for child in self.children:
                child.start()
            while not self._stopping:
                time.sleep(0.5)
                for child in self.children:
                    if self._stopping or child.proc is None or child.proc.poll() is None:
                        continue
                    child.gone(f"the worker exited on its own (code {child.proc.returncode})")
                    now = time.monotonic()
                    child.restarts = [t for t in child.restarts if now - t < 60] + [now]
                    if len(child.restarts) > self.max_restarts:
                        logger.error("%s keeps exiting (code %s); giving up", child.name, child.proc.returncode)
                        print(f"maintd: {child.name} keeps exiting (last code {child.proc.returncode}); stopping",
                              file=sys.stderr)
                        self._stopping, code = True, 1
                        break
                    logger.warning("%s exited with code %s; restarting", child.name, child.proc.returncode)
                    time.sleep(min(5, len(child.restarts)))
                    child.start()
        finally:
            self._stopping = True
            if stop_all(self.children, self._now):
                print("maintd: some processes had to be killed; their running tasks are recorded lost",
                      file=sys.stderr, flush=True)
                code = code or 1
            if self.on_stop:
                self.on_stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return code
