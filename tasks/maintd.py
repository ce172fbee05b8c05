"""maintd's own tasks: diagnostics, internal plumbing and its own upkeep.

``maintd.noop`` (low) takes the target's lock and returns at once: the benchmark's
gated task. ``maintd.hold`` (high) takes the lock and holds the slow lane for
``seconds``, checking its lock every second: what the lane, lock and shutdown tests use,
and a way for an operator to check that a host's slow lane and locks work before trusting
it with VACUUM FULL. ``maintd.release_deferred`` (none, internal, quiet) releases deferred
runs that are due and closes runs whose host is gone. ``maintd.prune_history`` (low) keeps
maintd's own records bounded.
"""

from __future__ import annotations

import time
from typing import Any

from tasks.core.maintd import history, release
from workers.app import ENTRY_HEADER, ORIGIN_HEADER, app
from workers.catalog import effective_limits, load_catalog
from workers.config import Target
from workers.records.outcome import Result, RunContext
from workers.taskdef import maintenance_task

# A run still 'running' this long after its task's hard limit is lost (a living worker would
# have killed it at the limit and recorded that).
STALE_MARGIN_S = 120


@maintenance_task("maintd.noop", impact="low", target="postgres", soft_time_limit=30, time_limit=40, max_retries=0)
def noop(run: RunContext, target: Target) -> Result:
    """Pass every gate for a PostgreSQL target, change nothing."""
    return Result("ok", f"gates passed for {target.name}", actions=[] if run.dry_run else ["nothing"])


@maintenance_task("maintd.hold", impact="high", target="postgres",
                  soft_time_limit=3600, time_limit=3660, max_retries=1)
def hold(run: RunContext, target: Target, seconds: float = 30.0) -> Result:
    """Hold the target's lock and the slow lane for ``seconds`` (max one hour), checking the lock every second."""
    seconds = max(0.0, min(float(seconds), 3590.0))
    if not run.dry_run:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            run.checkpoint()
            run.progress(f"hold {target.name}", done=round(seconds - left, 1), total=seconds, unit="seconds")
            time.sleep(min(1.0, left))
    return Result("ok", f"held {target.name} for {seconds:.1f}s", {"seconds": seconds})


@maintenance_task("maintd.release_deferred", impact="none", internal=True, quiet=True,
                  soft_time_limit=50, time_limit=60)
def release_deferred(run: RunContext) -> Result:
    """Release deferred runs whose time has come; close runs whose worker or host is gone."""
    def send(task: str, target: str, kwargs: dict[str, Any], meta: dict[str, Any]) -> None:
        options: dict[str, Any] = {}
        if meta.get("entry"):
            options["headers"] = {ENTRY_HEADER: meta["entry"], ORIGIN_HEADER: meta.get("origin") or ""}
        if meta.get("expires_at") is not None:
            options["expires"] = meta["expires_at"]
        app.send_task(task, args=(target,), kwargs=kwargs, **options)

    limits = {s.name: effective_limits(s, run.config)[1] + STALE_MARGIN_S for s in load_catalog().values()}
    return release.release(run, send, limits, max(limits.values(), default=86400))


@maintenance_task("maintd.prune_history", impact="low", soft_time_limit=1800, time_limit=1920, max_retries=1)
def prune_history(run: RunContext) -> Result:
    """Delete maintd's own history and Celery's results past their keep time (the newest per task and target stay)."""
    return history.prune(run)
