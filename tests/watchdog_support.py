"""Helpers for the watchdog tests: history rows written straight into the real results
database (weeks of runs, generated), a schedule reduced to the entries under test, and
the watchdog core run at a time the test chooses. Holds no tests itself."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.extras

import beat_schedule
from workers.catalog import known_task_names

T0 = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)  # a Monday in the past: generated rows never look newer than real ones


def unique(prefix: str = "wd") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# The crons these tests' generated histories assume, pinned so that re-staggering the
# defaults in beat_schedule.py does not move the slots under the tests.
PINNED = {"backup.postgres": "0 1 * * *", "health.postgres": "*/5 * * * *"}


def only(*keep: str, crons: dict[str, str] | None = None) -> str:
    """A ``[schedule]`` table turning every default entry off except ``keep`` (task names),
    the kept ones at the crons in ``crons``, else in ``PINNED``."""
    pinned = {**PINNED, **(crons or {})}
    known = known_task_names()
    lines = [f'"{t}" = "off"' for t in sorted(beat_schedule.DEFAULT_CRON) if t in known and t not in keep]
    lines += [f'"{t}" = "{pinned[t]}"' for t in keep if t in pinned]
    return "[schedule]\n" + "\n".join(lines) + "\n"


@dataclass
class Run:
    task: str
    target: str | None
    status: str
    started_at: datetime
    duration_s: float | None = 1.0
    error: str | None = None
    worker: str = "db-fast@testhost/4242"

    def row(self) -> tuple[Any, ...]:
        finished = None if self.status == "running" or self.duration_s is None else \
            self.started_at + timedelta(seconds=self.duration_s)
        return (f"t-{uuid.uuid4().hex}", self.task, self.target, self.status, self.error or "", self.error, "none",
                "testhost", self.worker, self.started_at, finished,
                None if self.status == "running" else self.duration_s)


def insert(results_db: str, runs: list[Run]) -> None:
    with psycopg2.connect(results_db, connect_timeout=5) as conn, conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur, "INSERT INTO maintd_runs (task_id, task, target, status, summary, error, impact, host, worker,"
                 " started_at, finished_at, duration_s) VALUES %s", [r.row() for r in runs], page_size=1000)
    conn.close()


def every(task: str, target: str | None, start: datetime, end: datetime, step: timedelta, *,
          status: str = "ok", duration_s: float = 0.2, delay_s: float = 2.0) -> list[Run]:
    """One run per ``step`` from ``start`` to ``end`` (inclusive), each ``delay_s`` after its slot."""
    out, t = [], start
    while t <= end:
        out.append(Run(task, target, status, t + timedelta(seconds=delay_s), duration_s))
        t += step
    return out


def scalar(results_db: str, sql: str, params: Any = None) -> Any:
    with psycopg2.connect(results_db, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    conn.close()
    return row[0] if row else None
