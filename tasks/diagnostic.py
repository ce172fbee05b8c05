"""Diagnostic tasks: prove the pipeline (gates, lanes, history) without touching data.

``maintd.noop`` (low) takes the target's lock and returns at once: the benchmark's
gated task. ``maintd.hold`` (high) takes the lock and holds the slow lane for
``seconds``: what the lane and lock tests use, and a way for an operator to check
that a host's slow lane and locks work before trusting it with VACUUM FULL.
"""

from __future__ import annotations

import time

from workers.config_model import Target
from workers.outcome import Result, RunContext
from workers.taskdef import maintenance_task


@maintenance_task("maintd.noop", impact="low", target="postgres", soft_time_limit=30, time_limit=40, max_retries=0)
def noop(run: RunContext, target: Target) -> Result:
    """Pass every gate for a PostgreSQL target, change nothing."""
    return Result("ok", f"gates passed for {target.name}", actions=[] if run.dry_run else ["nothing"])


@maintenance_task("maintd.hold", impact="high", target="postgres",
                  soft_time_limit=3600, time_limit=3660, max_retries=1)
def hold(run: RunContext, target: Target, seconds: float = 30.0) -> Result:
    """Hold the target's lock and the slow lane for ``seconds`` (max one hour)."""
    seconds = max(0.0, min(float(seconds), 3590.0))
    if not run.dry_run:
        time.sleep(seconds)
    return Result("ok", f"held {target.name} for {seconds:.1f}s", {"seconds": seconds})
