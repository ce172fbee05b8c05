"""The beat process: one per deployment; its schedule file lives in the data dir."""

from __future__ import annotations

from workers.config import Config
from workers.processes.profiles import celery_argv
from workers.processes.supervisor import Child


def beat_child(config: Config, loglevel: str = "INFO") -> Child:
    data_dir = config.maintd.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    schedule_file = data_dir / "celerybeat-schedule"
    return Child("beat", celery_argv("beat", "--schedule", str(schedule_file), "--loglevel", loglevel), grace_s=15)
