"""A small process supervisor for ``maintd up`` and ``maintd worker``.

Children run in their own process groups; SIGTERM/SIGINT to the supervisor stops
every child (SIGTERM, then SIGKILL after a grace period) in reverse start order. A
child that exits on its own is restarted with backoff, at most ``max_restarts`` times
a minute; past that the supervisor stops everything and exits non-zero.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
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

    def start(self) -> None:
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(list(self.argv), env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        logger.info("started %s (pid %d)", self.name, self.proc.pid)

    def signal_stop(self) -> None:
        """SIGTERM to the child's process group (warm shutdown: running tasks finish)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def finish_stop(self, deadline: float) -> None:
        """Wait until ``deadline`` (monotonic), then SIGKILL whatever is left in the group."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0fs; killing", self.name, self.grace_s)
        try:  # anything left in the group (pool children) goes too
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def stop(self) -> None:
        self.signal_stop()
        self.finish_stop(time.monotonic() + self.grace_s)


def stop_all(children: list[Child]) -> None:
    """Stop children in parallel: all are signalled at once, each gets its own grace."""
    start = time.monotonic()
    for child in reversed(children):
        child.signal_stop()
    for child in reversed(children):
        child.finish_stop(start + child.grace_s)


class Supervisor:
    def __init__(self, children: list[Child], max_restarts: int = 5,
                 on_stop: Callable[[], None] | None = None) -> None:
        self.children = children
        self.max_restarts = max_restarts
        self.on_stop = on_stop
        self._stopping = False

    def _signal(self, signum: int, _frame: object) -> None:
        logger.info("received %s: stopping", signal.Signals(signum).name)
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
            stop_all(self.children)
            if self.on_stop:
                self.on_stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return code
