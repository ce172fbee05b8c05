"""The beat process: run as many as you like (workers/beat_scheduler.py: one dispatches, the
others stand by); the schedule and the leader lock live in the broker's Redis."""

from __future__ import annotations

from workers.config import Config
from workers.processes.profiles import celery_argv
from workers.processes.supervisor import Child


def beat_child(config: Config, loglevel: str = "INFO") -> Child:
    config.maintd.data_dir.mkdir(parents=True, exist_ok=True)
    return Child("beat", celery_argv("beat", "--loglevel", loglevel), grace_s=15)
