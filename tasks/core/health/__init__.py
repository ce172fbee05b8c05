"""Celery-free health checks. Each module has ``check(target, thresholds) -> Result``.

A check never raises for what it finds about its target: an unreachable, locked or
corrupt target is a ``critical`` (or ``warning``) Result with the reason. Every wait
is bounded by the target's timeout, itself capped at ``MAX_WAIT_S`` so a check ends
inside its task's soft time limit.
"""

from __future__ import annotations

from tasks.core.health import certificates, host, http, metric, overview, postgres, redis, sqlite

__all__ = ["certificates", "host", "http", "metric", "overview", "postgres", "redis", "sqlite"]
