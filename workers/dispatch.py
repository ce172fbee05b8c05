"""Dispatching tasks by name from the CLI (or any caller), waiting for an outcome, and the
health sweep ``maintd up`` sends at start."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult
from celery.states import READY_STATES

from workers.app import app
from workers.catalog import load_catalog, resolve_target
from workers.config import Config, get_config
from workers.errors import MaintdError
from workers.records.progress import STATE as PROGRESS_STATE
from workers.schedule import expand
from workers.taskdef import AD_HOC_EXPIRES_S


def dispatch(task_name: str, target: str | None, kwargs: dict[str, Any],
             expires_s: float = AD_HOC_EXPIRES_S) -> AsyncResult:
    """Send one ad hoc run; a worker that has not started it within ``expires_s`` drops it
    (recorded ``skipped``: expired)."""
    specs = load_catalog()
    spec = specs.get(task_name)
    if spec is None:
        raise MaintdError(f"unknown task {task_name!r} (see `maintd tasks`)")
    config = get_config()
    if spec.target_kind is None and target:
        raise MaintdError(f"{task_name} takes no target")
    resolve_target(spec, target, config)  # UnknownTargetError: one clear line before anything is sent

    task = app.tasks[task_name]
    args = (target,) if spec.target_kind else ()
    if expires_s <= 0:
        raise MaintdError(f"--expires must be positive (got {expires_s:g})")
    return task.apply_async(args, kwargs, expires=expires_s)


def exit_code_for(outcome: dict[str, Any]) -> int:
    return 2 if outcome.get("status") == "critical" else 0


def follow(result: AsyncResult, deadline: float, on_progress: Callable[[dict[str, Any]], None],
           poll_s: float = 0.5) -> None:
    """Until the run ends (or ``deadline``, monotonic): each ``PROGRESS`` meta it publishes."""
    while time.monotonic() < deadline:
        state = result.state
        if state in READY_STATES:
            return
        if state == PROGRESS_STATE and isinstance(result.info, dict):
            on_progress(result.info)
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def wait_outcome(result: AsyncResult, timeout_s: float,
                 on_progress: Callable[[dict[str, Any]], None] | None = None) -> tuple[int, dict[str, Any]]:
    """(exit code, document): the outcome, or what stands instead of it; 2 critical, 3 failed
    or not run, 4 no outcome within ``timeout_s``. ``on_progress`` is shown each progress
    report of the run while it runs."""
    deadline = time.monotonic() + timeout_s
    if on_progress is not None:
        follow(result, deadline, on_progress)
        close = getattr(on_progress, "close", None)
        if callable(close):
            close()  # end the bar before the outcome is printed
    try:
        outcome = result.get(timeout=max(0.1, deadline - time.monotonic()), propagate=False, disable_sync_subtasks=False)
    except CeleryTimeout:
        return 4, {"task_id": result.id, "state": result.state,
                   "error": f"no outcome for {result.id} within {timeout_s:.0f}s (still queued or running; "
                            f"see `maintd status`)"}
    if result.state == "REVOKED":
        return 3, {"task_id": result.id, "state": result.state,
                   "error": "not run: it expired before a worker started it (see --expires), or was revoked"}
    if result.failed():
        return 3, {"task_id": result.id, "state": result.state, "error": str(outcome)}
    return exit_code_for(outcome), outcome


def wait_for(result: AsyncResult, timeout_s: float,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Print the outcome as JSON; exit code by its status (2 critical, 3 failed, 4 timeout)."""
    code, doc = wait_outcome(result, timeout_s, on_progress)
    if code == 4:
        print(f"maintd: error: {doc['error']}", file=sys.stderr)
    else:
        print(json.dumps(doc, indent=2, default=str))
    return code


def print_run_document(result: AsyncResult, task: str, target: str | None, timeout_s: float | None) -> int:
    """``maintd run --json``: one document on stdout whatever happened after the send, and the
    exit code ``--wait`` would give (0 when only sent)."""
    doc: dict[str, Any] = {"task": task, "target": target, "task_id": result.id, "state": "SENT",
                           "status": None, "outcome": None, "error": None, "exit_code": 0}
    if timeout_s is not None:
        code, got = wait_outcome(result, timeout_s)
        doc["exit_code"] = code
        if "error" in got and "status" not in got:
            doc.update(state=got["state"], error=got["error"])
        else:
            doc.update(state=result.state, status=got.get("status"), outcome=got)
    print(json.dumps(doc, indent=2, default=str))
    return int(doc["exit_code"])


def sweep(config: Config, prefix: str = "health.") -> list[str]:
    """Dispatch every scheduled entry whose task starts with ``prefix`` once, now."""
    sent = []
    for e in expand(config):
        if e.task.startswith(prefix):
            # the overview folds the checks' outcomes: give them a head start
            delay = 15 if e.task == "health.overview" else 0
            app.tasks[e.task].apply_async((e.target,) if e.target else (), expires=e.expires_s + delay,
                                          countdown=delay or None)
            sent.append(e.name)
    return sent
