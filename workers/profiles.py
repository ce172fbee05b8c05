"""Worker profiles: the celery processes that serve one role on one host.

Each role is served by two lanes, separate processes so that a long high-impact
task can never delay a health check: the fast lane (impact none+low, prefork with
several children) and the slow lane (medium+high, one child, one task at a time).
"""

from __future__ import annotations

import os
import sys

from workers.routing import lane_queues
from workers.supervisor import Child


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", *args]


def worker_children(role: str, host: str, env: dict[str, str] | None = None, fast_concurrency: int | None = None,
                    loglevel: str = "INFO") -> list[Child]:
    env = {**(env or {}), "MAINTD_HOST": host}
    # The fast lane's tasks wait on I/O (queries, uploads); several slots keep a long
    # low-impact backup from taking the last slot a health check needs.
    fast = fast_concurrency or max(4, min(8, 2 * (os.cpu_count() or 2)))
    children = []
    for lane, concurrency in (("fast", fast), ("slow", 1)):
        queues = ",".join(lane_queues(role, lane, host))
        argv = celery_argv("worker", "-Q", queues, "-n", f"{role}-{lane}@{host}", "-c", str(concurrency),
                           "-O", "fair", "--loglevel", loglevel, "-E", "--without-mingle")
        # A slow-lane child runs for its task's whole hard limit; give it time to finish on SIGTERM.
        children.append(Child(f"worker {role}/{lane}", argv, env, grace_s=60 if lane == "fast" else 120))
    return children
