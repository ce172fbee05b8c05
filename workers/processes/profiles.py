"""Worker profiles: the celery processes that serve one role on one host.

Each role is served by two lanes, separate processes so that a long high-impact
task can never delay a health check: the fast lane (impact none+low, prefork with
several children) and the slow lane (medium+high, one child, one task at a time).

Stopping a lane is a warm shutdown: its running tasks finish. Each lane's grace is the
longest hard time limit of the tasks it serves (with ``[tasks]`` overrides) plus a margin,
so a task is only ever killed by its own time limit, never by a stop; systemd's
``TimeoutStopSec`` and compose's ``stop_grace_period`` must be at least the longest lane's
(`maintd check-config` prints it). A lane killed anyway (a second signal, or a cap given with
``--stop-grace``) has the runs it left closed ``lost``.
"""

from __future__ import annotations

import os
import sys

from workers.alerts.runs import report_lost
from workers.catalog import effective_impact, effective_limits, load_catalog
from workers.config import Config, get_config
from workers.processes.supervisor import Child
from workers.records import records
from workers.routing import LANES, lane_queues

STOP_MARGIN_S = 30  # after the longest hard limit: time for Celery to record the timeout and exit


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", *args]


def lane_grace_s(config: Config, lane: str) -> int:
    """How long a stop waits for the lane's running task: its tasks' longest hard limit + margin."""
    limits = [effective_limits(s, config)[1] for s in load_catalog().values()
              if effective_impact(s, config) in LANES[lane]]
    return max(limits, default=0) + STOP_MARGIN_S


def stop_grace_s(config: Config) -> int:
    """The longest lane grace: what systemd TimeoutStopSec / compose stop_grace_period must allow."""
    return max(lane_grace_s(config, lane) for lane in LANES)


def close_runs_of(child: Child, why: str) -> None:
    """``on_gone`` of a lane: the runs its node left ``running`` are lost; alert where nothing
    will run them again."""
    node = (child.env or {}).get("MAINTD_NODE")
    if not node:
        return
    config = get_config()
    rows = records(config).runs.close_node(node, why)
    if rows:
        report_lost(config, rows, why, config.maintd.host)


def worker_children(role: str, host: str, env: dict[str, str] | None = None, fast_concurrency: int | None = None,
                    loglevel: str = "INFO", config: Config | None = None,
                    max_grace_s: float | None = None) -> list[Child]:
    config = config or get_config()
    env = {**(env or {}), "MAINTD_HOST": host}
    # The fast lane's tasks wait on I/O (queries, uploads); several slots keep a long
    # low-impact backup from taking the last slot a health check needs.
    fast = fast_concurrency or max(4, min(8, 2 * (os.cpu_count() or 2)))
    children = []
    for lane, concurrency in (("fast", fast), ("slow", 1)):
        queues = ",".join(lane_queues(role, lane, host))
        node = f"{role}-{lane}@{host}"
        argv = celery_argv("worker", "-Q", queues, "-n", node, "-c", str(concurrency),
                           "-O", "fair", "--loglevel", loglevel, "-E", "--without-mingle")
        grace = float(lane_grace_s(config, lane))
        if max_grace_s is not None:
            grace = min(grace, max_grace_s)
        children.append(Child(f"worker {role}/{lane}", argv, {**env, "MAINTD_NODE": node}, grace_s=grace,
                              on_gone=close_runs_of))
    return children
