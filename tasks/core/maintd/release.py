"""``maintd.release_deferred``: every minute, in this order —

1. runs still ``running`` past their task's hard limit (plus a margin) are closed ``lost``: a
   living worker kills a run at that limit, so the process, or its host, is gone; a lost run
   of a non-repeatable task is alerted (nothing will run it again);
2. scheduled runs waiting for a lock whose message expired are dropped and recorded
   ``skipped`` (the skip streak counts them);
3. deferred runs that are due are sent again (a window opened, a back-off ended, a lock
   was let go), with their schedule headers and expiry.

A run that did none of these leaves no history row (the task is ``quiet``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from workers.alerts.runs import report_lost, watch_streak
from workers.catalog import SPECS, effective_impact
from workers.records import records
from workers.records.outcome import Result, RunContext

STALE = "no end recorded within its hard time limit: the worker running it, or its host, is gone"


def release(run: RunContext, send: Callable[[str, str, dict[str, Any], dict[str, Any]], Any],
            limits_s: Mapping[str, float], default_limit_s: float) -> Result:
    book = records(run.config)
    actions: list[str] = []
    lost = book.runs.close_stale(limits_s, default_limit_s, STALE)
    actions += [f"closed {r['task']}[{r['target'] or ''}] run {r['task_id'][:8]} on {r['worker']} as lost" for r in lost]
    report_lost(run.config, lost, STALE, run.host)
    now = datetime.now(UTC)

    def skip(d: dict[str, Any], summary: str, action: str) -> None:
        spec = SPECS.get(d["task"])
        book.runs.record(task_id=d["origin"] or f"deferred:{d['task']}[{d['target']}]", task=d["task"],
                         target=d["target"], status="skipped", summary=summary[:500], host=run.host,
                         impact=effective_impact(spec, run.config) if spec else "unknown",
                         worker=run.worker, attempt=1, dry_run=False, started_at=now, finished_at=now,
                         entry=d["entry"], origin=d["origin"])
        if d["entry"]:
            watch_streak(run.config, book, d["task"], d["target"], "skipped", run.host)
        actions.append(action)

    expired = book.deferred.drop_expired()
    for d in expired:
        skip(d, f"gave up waiting for the lock: the scheduled run expired at {d['expires_at']:%Y-%m-%d %H:%M}Z"
                f" (waiting since {d['deferred_at']:%H:%M}Z: {d['reason']})",
             f"dropped {d['task']}[{d['target']}]: expired waiting for the lock")
    gone: list[tuple[dict[str, Any], str]] = []  # its target or task left the config
    released = book.deferred.release_due(send, on_drop=lambda d, why: gone.append((d, why)))
    for d, why in gone:  # recorded after the release's transaction
        skip(d, f"not released: {why}", f"dropped {d['task']}[{d['target']}]: {why}")
    actions += released
    parts = [f"released {len(released)} deferred run(s)"]
    if lost:
        parts.append(f"closed {len(lost)} lost run(s)")
    if expired:
        parts.append(f"dropped {len(expired)} expired lock wait(s)")
    if gone:
        parts.append(f"dropped {len(gone)} no longer in the config")
    return Result("ok", "; ".join(parts), {"released": len(released), "lost": len(lost)}, actions)
