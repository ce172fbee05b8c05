"""Health checks (impact none). Each task is a thin shell over ``tasks.checks``."""

from __future__ import annotations

from workers.outcome import Result, RunContext
from workers.taskdef import maintenance_task
