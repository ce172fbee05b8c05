"""The task catalog: one ``TaskSpec`` per maintenance task, declared by ``maintenance_task``.

Routing, schedule expansion, ``maintd tasks`` and config validation all read these
specs; nothing else repeats a task's impact, target kind or limits. This module imports
no Celery: the specs are plain data, registered when a task module is imported.
``load_catalog`` imports the task modules by name (as Celery's ``include`` does).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

from workers.config import IMPACTS, Config, Target, check_task_names, located_error, parse_age
from workers.errors import UnknownTargetError

# Modules that declare tasks: ``tasks/<area>.py``, one per area. The worker imports these
# (``include``); so does any code that needs the whole catalog (check-config, schedule, tasks).
TASK_MODULES: tuple[str, ...] = (
    "tasks.health",
    "tasks.maintd",
    "tasks.postgres",
    "tasks.backup",
    "tasks.watchdog",
    "tasks.incident",
    "tasks.files",
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
    # The outcome's status goes to the alert state machine (a failed run always does). False
    # for tasks that alert their findings themselves (watchdog) or only inform (incident capture).
    alert_outcome: bool = True
    # Safe to run again on its own after its worker was lost mid-run (the message is then
    # acknowledged late and redelivered). False: acknowledged when the run starts; a lost run
    # is recorded ``lost`` and alerted, and runs again only when a person dispatches it.
    repeatable: bool = True
    # A run that did nothing (no actions) leaves no history row and raises no alert
    # (``maintd.release_deferred``: every minute, almost always idle).
    quiet: bool = False

    OPTIONS: ClassVar[frozenset[str]] = frozenset({"impact", "target", "locks", "windowed", "soft_time_limit", "time_limit", "max_retries",
                         "ad_hoc_only", "internal", "alert_outcome", "repeatable", "quiet"})

    @classmethod
    def declare(cls, name: str, **options: Any) -> TaskSpec:
        """A spec from ``maintenance_task``'s options, with the defaults; unknown options fail
        at import: impact none/low take no window, high runs only inside one; every impact
        but none takes the target's lock."""
        unknown = set(options) - cls.OPTIONS
        if unknown:
            raise TypeError(f"maintenance_task({name!r}): unknown options {sorted(unknown)}")
        impact = options["impact"]
        return cls(
            name=name, impact=impact, target_kind=options.get("target"), summary="",
            locks=options.get("locks", impact != "none"),
            windowed=options.get("windowed", impact == "high"),
            soft_time_limit=options.get("soft_time_limit", 300),
            time_limit=options.get("time_limit", 360),
            max_retries=options.get("max_retries", 3),
            ad_hoc_only=options.get("ad_hoc_only", False),
            internal=options.get("internal", False),
            alert_outcome=options.get("alert_outcome", True),
            repeatable=options.get("repeatable", True),
            quiet=options.get("quiet", False),
        )

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


# Tasks that write a backup (a directory with no manifest until they end).
BACKUP_WRITERS = ("backup.postgres", "backup.sqlite", "backup.redis", "backup.files")


def validate(config: Config) -> Config:
    """``config`` after the checks that need the catalog (task names in ``[schedule]`` and
    ``[tasks]``, limits against the tasks' own): every entry point (CLI, Celery app) calls this once."""
    specs = load_catalog()
    check_task_names(config, set(specs))
    errors = _limit_errors(config, specs)
    if errors:
        raise located_error(config, errors)
    return config


def _limit_errors(config: Config, specs: dict[str, TaskSpec]) -> list[tuple[tuple[Any, ...], str]]:
    errors: list[tuple[tuple[Any, ...], str]] = []
    for name, override in config.tasks.items():
        spec = specs[name]
        soft, hard = effective_limits(spec, config)
        if soft >= hard:
            field = "soft_time_limit" if override.soft_time_limit else "time_limit"
            errors.append((("tasks", name, field), f"soft_time_limit ({soft}s) must be below time_limit ({hard}s)"
                                                   " (a value not given is the task's own)"))
        if override.repeatable and not spec.repeatable:
            errors.append((("tasks", name, "repeatable"), f"{name} is never repeatable: a run lost with its"
                                                          " worker must not run again without a person"))
    incomplete = parse_age(config.retention.incomplete_after).total_seconds()
    for name in BACKUP_WRITERS:
        writer = specs.get(name)
        if writer is None or not getattr(config, writer.target_kind or "", None):
            continue
        hard = effective_limits(writer, config)[1]
        if incomplete <= hard:
            errors.append((("retention", "incomplete_after"),
                           f"{config.retention.incomplete_after} is not longer than {name}'s hard time limit"
                           f" ({hard}s): prune could delete a backup still being written"))
            break
    return errors


def effective_limits(spec: TaskSpec, config: Config) -> tuple[int, int]:
    """(soft, hard) time limits: the task's, or the ``[tasks."name"]`` overrides."""
    override = config.tasks.get(spec.name)
    soft = override.soft_time_limit if override and override.soft_time_limit else spec.soft_time_limit
    hard = override.time_limit if override and override.time_limit else spec.time_limit
    return soft, hard


def is_repeatable(spec: TaskSpec, config: Config) -> bool:
    """Whether a run lost with its worker may run again on its own (``[tasks."name"]
    repeatable = false`` makes a task non-repeatable at a site; never the other way)."""
    override = config.tasks.get(spec.name)
    return spec.repeatable and not (override is not None and override.repeatable is False)


def effective_impact(spec: TaskSpec, config: Config) -> str:
    """The task's impact, or the ``[tasks."name"] impact`` override."""
    override = config.tasks.get(spec.name)
    return override.impact if override and override.impact else spec.impact


def resolve_target(spec: TaskSpec, name: str | None, config: Config) -> Target | None:
    """The configured target ``name`` of the kind ``spec`` takes (None for target-less tasks)."""
    if spec.target_kind is None:
        return None
    if not name:
        raise UnknownTargetError(f"{spec.name} needs a {spec.target_kind} target name")
    target = config.target(spec.target_kind, name)
    if target is None:
        known = ", ".join(t.name for t in getattr(config, spec.target_kind)) or "none configured"
        raise UnknownTargetError(f"unknown {spec.target_kind} target {name!r} for {spec.name} (known: {known})")
    return target
