"""Results of maintenance: ``Result`` (what Celery-free code returns) and ``Outcome``
(the self-describing dict every task returns, per DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from workers.config_model import Config

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

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")


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
