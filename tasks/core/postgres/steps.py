"""One maintenance statement per object, the same way for every task that changes things.

Before each object: the time budget, then admission (live load). Each statement runs
alone (autocommit); a lock or statement timeout, or an object dropped meanwhile, is
recorded for that object and the run moves on; a lost connection ends the run as a
transient failure (retried). ``Tally`` turns what happened into one ``Result``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from tasks.core.postgres import admission
from tasks.core.postgres.session import failure, per_object, render
from workers.config import PostgresTarget
from workers.errors import first_line
from workers.records.outcome import Budget, Result

logger = logging.getLogger(__name__)


def execute(conn: psycopg2.extensions.connection, target: PostgresTarget, stmt: sql.Composable,
            what: str, survivable: dict[str, str] | None = None) -> tuple[str | None, float]:
    """Run ``stmt``: (None, seconds) when done, (reason, seconds) when this object failed in a way
    the run survives (``per_object``, or a SQLSTATE prefix in ``survivable``); raises a classified
    error otherwise."""
    started = time.monotonic()
    try:
        with conn.cursor() as cur:
            cur.execute(stmt)
    except psycopg2.Error as exc:
        code = getattr(exc, "pgcode", None) or ""
        extra = next((f"{why}: {first_line(exc)}" for prefix, why in (survivable or {}).items()
                      if code.startswith(prefix)), None)
        reason = per_object(exc) or extra
        if reason is None or conn.closed:
            raise failure(exc, target, what) from None
        if not conn.autocommit:
            conn.rollback()
        logger.warning("%s on %s: %s", what, target.name, reason)
        return reason, time.monotonic() - started
    return None, time.monotonic() - started


@dataclass
class Tally:
    """What a run did, object by object."""

    verb: str  # "vacuumed", "reindexed", ...
    planned: int = 0
    actions: list[str] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    deferred: str | None = None
    retry_after_s: float = 0.0
    out_of_time: int = 0

    def gate(self, conn: psycopg2.extensions.connection, target: PostgresTarget, budget: Budget,
             remaining: int, check_load: bool = True) -> bool:
        """True to go on with the next object; False once the budget is spent or the load is too high.
        Raises ``LockLostError`` when the run's target lock was lost (the run stops here)."""
        budget.checkpoint()
        if budget.exhausted():
            self.out_of_time = remaining
            return False
        if check_load:
            try:
                self.deferred = admission.refusal(conn, target.admission)
                self.retry_after_s = target.admission.backoff_s
            except psycopg2.Error as exc:
                raise failure(exc, target, "admission check") from None
        return self.deferred is None

    def did(self, conn: psycopg2.extensions.connection, stmt: sql.Composable) -> None:
        self.actions.append(render(conn, stmt))

    def failed(self, obj: str, reason: str) -> None:
        self.problems.append(f"{obj}: {reason}")

    def result(self, nothing: str, extra_metrics: dict[str, Any] | None = None,
               status: str | None = None) -> Result:
        done = sum(1 for o in self.objects if o.get("status") == "done")
        metrics: dict[str, Any] = {"planned": self.planned, "done": done, "failed": len(self.problems),
                                   "not_reached": self.out_of_time, "objects": self.objects,
                                   **(extra_metrics or {})}
        if self.deferred:
            return Result("deferred", f"{self.verb} {done} of {self.planned}, then {self.deferred}",
                          {**metrics, "reason": self.deferred}, self.actions,
                          not_before=datetime.now(UTC) + timedelta(seconds=self.retry_after_s))
        if not self.planned:
            return Result(status or "ok", nothing, metrics, self.actions)
        parts = [f"{self.verb} {done} of {self.planned}"]
        if self.problems:
            parts.append("failed: " + "; ".join(self.problems[:5]) + (" ..." if len(self.problems) > 5 else ""))
        if self.out_of_time:
            parts.append(f"{self.out_of_time} not reached (time budget spent; next run continues)")
        worst = "warning" if self.problems or self.out_of_time else "ok"
        return Result(status or worst, "; ".join(parts), metrics, self.actions)
