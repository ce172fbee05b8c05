"""Results of maintenance: ``Result`` (what Celery-free code returns), ``RunContext``
(what a task body may know about its run, its time ``Budget`` included) and ``Outcome``
(the self-describing dict every task returns, per DESIGN.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from workers.config import Config
from workers.records.progress import ProgressMeter

STATUSES = ("ok", "warning", "critical", "skipped", "deferred")
SEVERITY_RANK = {"ok": 0, "warning": 1, "critical": 2}


def worst(statuses: Iterable[str]) -> str:
    """The most severe of ok/warning/critical (ok when empty)."""
    return max(statuses, key=lambda s: SEVERITY_RANK.get(s, 0), default="ok")


def grade(value: float | None, pair: tuple[float, float], lower_is_worse: bool = False) -> str:
    """Status of ``value`` against a (warning, critical) pair."""
    if value is None:
        return "ok"
    warn, crit = pair
    if lower_is_worse:
        return "critical" if value < crit else "warning" if value < warn else "ok"
    return "critical" if value >= crit else "warning" if value >= warn else "ok"


@dataclass(frozen=True)
class Result:
    """What the Celery-free code of a task returns."""

    status: str
    summary: str
    metrics: dict[str, Any] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    # A ``deferred`` result that must come back: the gate records it in the deferred runs
    # and releases it at this time (a task never records its own deferral).
    not_before: datetime | None = None
    # What it waits for: "time" (a window, a back-off) or "lock" (a scheduled run meeting a held
    # target lock: released as soon as the holder lets go, dropped when its message expires).
    waiting_for: str = "time"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.not_before is not None and self.status != "deferred":
            raise ValueError("only a deferred result carries not_before")


@dataclass
class RunContext:
    """Everything a task body may know about its run, without Celery."""

    task: str
    task_id: str
    target: str | None
    impact: str
    host: str
    worker: str
    attempt: int
    dry_run: bool
    config: Config
    started_at: datetime
    soft_deadline_s: float
    # How the run was dispatched: the beat entry that fired it (None: ad hoc), the task id
    # of the first dispatch of a chain of deferrals (None: this one), and when the message
    # expires (a scheduled run waiting for a lock gives up then).
    entry: str | None = None
    origin: str | None = None
    expires_at: datetime | None = None
    # Checks that must hold between steps (the per-target lock is still ours): each raises
    # (LockLostError) when not. The lock gate registers them; ``checkpoint`` runs them.
    guards: list[Callable[[], None]] = field(default_factory=list)
    # Where ``progress()`` goes: the wiring sets a publisher (Celery state PROGRESS); none outside a worker.
    meter: ProgressMeter = field(default_factory=ProgressMeter)

    @property
    def scheduled(self) -> bool:
        return self.entry is not None

    def budget(self, budget_s: float | None = None) -> Budget:
        """Time left for this run: its own budget (if any), always ahead of the soft time limit."""
        return Budget(self, budget_s)

    def checkpoint(self) -> None:
        """Between two steps of work: raises when the run may not go on (its lock was lost).
        Domain code calls it before each object, batch or chunk; it costs a flag check, or a
        round trip to the lock's session at most once a second."""
        for guard in self.guards:
            guard()

    def progress(self, step: str, done: float | None = None, total: float | None = None,
                 unit: str = "rows") -> None:
        """How far the run is: ``step`` (what it does now), ``done`` of ``total`` in ``unit``
        (rows, bytes, tables, indexes, ...); ETA and percentage are computed. Call it as often
        as convenient: it is published at most once a second (``workers.records.progress``)."""
        self.meter.report(step, done, total, unit)


_ACTIVE: ContextVar[RunContext | None] = ContextVar("maintd_active_run", default=None)


@contextmanager
def active(run: RunContext) -> Iterator[RunContext]:
    """Make ``run`` the one ``checkpoint()`` checks, for code that is not handed the run
    (byte streams of backups and restores)."""
    token = _ACTIVE.set(run)
    try:
        yield run
    finally:
        _ACTIVE.reset(token)


def checkpoint() -> None:
    """``RunContext.checkpoint`` of the run in progress in this context (nothing outside a run)."""
    run = _ACTIVE.get()
    if run is not None:
        run.checkpoint()


def progress(step: str, done: float | None = None, total: float | None = None, unit: str = "rows") -> None:
    """``RunContext.progress`` of the run in progress in this context (nothing outside a run)."""
    run = _ACTIVE.get()
    if run is not None:
        run.progress(step, done, total, unit)


class Budget:
    """Time left for a run, ending a margin before the task's soft time limit."""

    MARGIN_S = 15.0

    def __init__(self, run: RunContext, budget_s: float | None = None) -> None:
        self._run = run
        elapsed = (datetime.now(timezone.utc) - run.started_at).total_seconds()
        left = run.soft_deadline_s - elapsed - min(self.MARGIN_S, run.soft_deadline_s * 0.1)
        if budget_s is not None:
            left = min(left, budget_s)
        self._deadline = time.monotonic() + max(0.0, left)

    def remaining(self, floor_s: float = 0.0) -> float:
        """Seconds left (at least ``floor_s``: a timeout for a tool must not be zero)."""
        return max(floor_s, self._deadline - time.monotonic())

    def exhausted(self) -> bool:
        return self.remaining() <= 0.0

    def checkpoint(self) -> None:
        """The run's ``checkpoint`` (for code handed only the budget)."""
        self._run.checkpoint()


@dataclass(frozen=True)
class Outcome:
    task: str
    target: str | None
    status: str
    summary: str
    metrics: dict[str, Any]
    actions: list[str]
    dry_run: bool
    impact: str
    host: str
    started_at: str
    finished_at: str
    duration_s: float
    task_id: str
    attempt: int

    @classmethod
    def of(cls, run: RunContext, result: Result, finished_at: datetime) -> Outcome:
        return cls(
            task=run.task, target=run.target, status=result.status, summary=result.summary,
            metrics=result.metrics, actions=list(result.actions), dry_run=run.dry_run,
            impact=run.impact, host=run.host, started_at=run.started_at.isoformat(),
            finished_at=finished_at.isoformat(),
            duration_s=round((finished_at - run.started_at).total_seconds(), 3),
            task_id=run.task_id, attempt=run.attempt,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
