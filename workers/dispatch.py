"""Dispatching a task by name from the CLI (or any caller), and waiting for its outcome."""

from __future__ import annotations

import json
import sys
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from workers.catalog import load_catalog
from workers.errors import MaintdError, UnknownTargetError
from workers.routing import resolve_target
from workers.settings import get_config


def dispatch(task_name: str, target: str | None, kwargs: dict[str, Any]) -> AsyncResult:
    specs = load_catalog()
    spec = specs.get(task_name)
    if spec is None:
        raise MaintdError(f"unknown task {task_name!r} (see `maintd tasks`)")
    config = get_config()
    if spec.target_kind is None and target:
        raise MaintdError(f"{task_name} takes no target")
    resolve_target(spec, target, config)  # UnknownTargetError: one clear line before anything is sent
    from workers.app import app

    task = app.tasks[task_name]
    args = (target,) if spec.target_kind else ()
    return task.apply_async(args, kwargs)


def exit_code_for(outcome: dict[str, Any]) -> int:
    return 2 if outcome.get("status") == "critical" else 0


def wait_for(result: AsyncResult, timeout_s: float) -> int:
    """Print the outcome as JSON; exit code by its status (2 critical, 3 failed, 4 timeout)."""
    try:
        outcome = result.get(timeout=timeout_s, propagate=False, disable_sync_subtasks=False)
    except CeleryTimeout:
        print(f"maintd: error: no outcome for {result.id} within {timeout_s:.0f}s (still queued or running; "
              f"see `maintd status`)", file=sys.stderr)
        return 4
    if result.failed():
        print(json.dumps({"task_id": result.id, "state": result.state, "error": str(outcome)}, indent=2))
        return 3
    print(json.dumps(outcome, indent=2, default=str))
    return exit_code_for(outcome)


__all__ = ["dispatch", "wait_for", "UnknownTargetError"]
