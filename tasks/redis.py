"""Redis upkeep: ``redis.stats``, a thin shell over ``tasks.core.redis`` (Celery-free).

From a Python shell::

    from tasks.redis import stats
    stats.delay("cache").get(timeout=60)
"""

from __future__ import annotations

from typing import Any

from tasks.core.redis import stats as redis_stats
from workers.config import RedisTarget
from workers.records import records
from workers.records.outcome import Result, RunContext
from workers.taskdef import maintenance_task


def previous_metrics(run: RunContext, target: RedisTarget) -> dict[str, Any] | None:
    """The metrics of the last finished redis.stats run on this target (the interval's start)."""
    for row in records(run.config).runs.find(task="redis.stats", target=target.name, limit=10):
        metrics = row.get("metrics")
        if isinstance(metrics, dict) and "run_id" in metrics:
            return metrics
    return None


@maintenance_task("redis.stats", impact="none", target="redis", soft_time_limit=120, time_limit=150, max_retries=0)
def stats(run: RunContext, target: RedisTarget) -> Result:
    """Memory, fragmentation, policy vs use, hit rate, evictions, slowlog, big keys, persistence."""
    return redis_stats.stats(target, run.config.thresholds, previous_metrics(run, target), dry_run=run.dry_run)
