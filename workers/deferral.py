"""Deferred runs: high-impact work dispatched outside its target's window is recorded
in ``maintd_deferred`` (one row per task and target) and released when the window
opens by ``maintd.release_deferred``, which beat runs every minute. Nothing waits in
the broker with a long ETA (Redis would redeliver it after the visibility timeout).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from workers.history import history
from workers.outcome import Result, RunContext

logger = logging.getLogger(__name__)


def defer(task: str, target: str, kwargs: dict[str, Any], not_before: datetime, reason: str) -> None:
    history().execute(lambda cur: cur.execute(
        "INSERT INTO maintd_deferred (task, target, kwargs, not_before, reason) VALUES (%s,%s,%s,%s,%s)"
        " ON CONFLICT (task, target) DO UPDATE SET kwargs = EXCLUDED.kwargs,"
        " not_before = EXCLUDED.not_before, reason = EXCLUDED.reason, deferred_at = now()",
        (task, target, json.dumps(kwargs), not_before, reason)))


def pending() -> list[dict[str, Any]]:
    def rows(cur) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
        cur.execute("SELECT task, target, kwargs, not_before, reason, deferred_at FROM maintd_deferred"
                    " ORDER BY not_before")
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    return history().execute(rows)


def release_due(send: Any) -> list[str]:
    """Dispatch every due deferred run with ``send(task, target, kwargs)``; a row is
    deleted in the same transaction as its send, so a crash re-releases, never loses."""

    def release(cur) -> list[str]:  # type: ignore[no-untyped-def]
        cur.execute("SELECT task, target, kwargs FROM maintd_deferred WHERE not_before <= now()"
                    " ORDER BY not_before FOR UPDATE SKIP LOCKED")
        sent = []
        for task, target, kwargs in cur.fetchall():
            send(task, target, kwargs)
            cur.execute("DELETE FROM maintd_deferred WHERE task = %s AND target = %s", (task, target))
            sent.append(f"{task}[{target}]")
        return sent

    return history().execute(release)


def _register() -> None:
    from workers.app import app
    from workers.taskdef import maintenance_task

    @maintenance_task("maintd.release_deferred", impact="none", internal=True, soft_time_limit=50, time_limit=60)
    def release_deferred(run: RunContext) -> Result:
        """Release deferred high-impact runs whose window has opened."""
        def send(task: str, target: str, kwargs: dict[str, Any]) -> None:
            app.send_task(task, args=(target,), kwargs=kwargs)

        released = release_due(send)
        return Result("ok", f"released {len(released)} deferred run(s)", {"released": len(released)}, released)


_register()
