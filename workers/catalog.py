"""The task catalog: one ``TaskSpec`` per maintenance task, declared by ``maintenance_task``.

Routing, schedule expansion, ``maintd tasks`` and config validation all read these
specs; nothing else repeats a task's impact, target kind or limits.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from workers.config_model import IMPACTS

# Modules that declare tasks. The worker imports these (``include``); so does any
# code that needs the whole catalog (check-config, schedule, tasks).
TASK_MODULES: tuple[str, ...] = (
    "tasks.health",
    "tasks.diagnostic",
    "tasks.postgres",
    "tasks.backup",
    "workers.deferral",
)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    impact: str
    target_kind: str | None  # "postgres", "redis", ... or None for target-less tasks
    summary: str
    locks: bool  # takes the per-target maintenance lock
    windowed: bool  # runs only inside the target's maintenance window
    soft_time_limit: int
    time_limit: int
    max_retries: int
    ad_hoc_only: bool = False
    internal: bool = False  # runtime plumbing, not maintenance (hidden from `maintd tasks`)

    def __post_init__(self) -> None:
        if self.impact not in IMPACTS:
            raise ValueError(f"task {self.name}: unknown impact {self.impact!r}")
        if self.soft_time_limit >= self.time_limit:
            raise ValueError(f"task {self.name}: soft_time_limit must be below time_limit")


SPECS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> None:
    if spec.name in SPECS and SPECS[spec.name] != spec:
        raise ValueError(f"task {spec.name} declared twice")
    SPECS[spec.name] = spec


def load_catalog() -> dict[str, TaskSpec]:
    for module in TASK_MODULES:
        importlib.import_module(module)
    return SPECS


def known_task_names() -> set[str]:
    return set(load_catalog())
