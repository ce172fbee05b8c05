"""Flower shows maintd's verdict: the Celery-event side of a run's outcome.

Celery's result backend keeps ``SUCCESS`` for every run that produced an Outcome (so
``AsyncResult.get()`` returns the Outcome dict and ``maintd run --wait`` exits by its
status); Flower, which builds its task list from *events*, is told the verdict:

* **The run** (pool process), once its Outcome is stored, publishes ``task-<status>``
  (``task-ok``, ``task-warning``, ``task-critical``, ``task-skipped``, ``task-deferred``)
  with ``result`` = a readable text: the summary's first line, then the Outcome
  pretty-printed, secrets masked. Celery's event state turns an unknown ``task-x`` event
  into the custom state ``X``.
* **The worker** (main process) then sends the run's terminal event. ``VerdictRequest``
  renames Celery's ``task-succeeded`` to ``task-<status>`` for warning, critical, skipped
  and deferred (a later ``SUCCESS`` would override the custom state: Celery ranks it
  above every custom one), keeps ``task-succeeded`` for ok, and leaves out the repr of the
  Outcome dict so the readable ``result`` stays. Failures, retries and revocations are
  Celery's own events, untouched.
* **Every message** of a maintd task carries ``argsrepr`` = the target's name (``main``,
  not ``('main',)``): ``MaintdAMQP`` sets it where Celery builds the message, so the
  ``task-sent`` and ``task-received`` events, Flower and the worker's log show the name.

Flower then tells ok (SUCCESS, green), warning, critical, skipped, deferred (their own
states) and failed (FAILURE, red) apart, and its state filter (``state:CRITICAL``, the
Failed button) finds them. Why this and not the alternatives: docs/flower-verdict.md.
A later ``task-progress`` event (state PROGRESS) composes: it is sent by the run before
its Outcome, and a custom state replaces another custom state.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from celery.app.amqp import AMQP
from celery.signals import task_success
from celery.worker.request import Request

from workers.catalog import SPECS
from workers.config.secrets import mask_secrets
from workers.records.outcome import STATUSES

logger = logging.getLogger(__name__)

# Flower state of each Outcome status (Celery upper-cases the event type's suffix).
FLOWER_STATE = {"ok": "SUCCESS", "warning": "WARNING", "critical": "CRITICAL", "skipped": "SKIPPED",
                "deferred": "DEFERRED"}
FAILED_STATE = "FAILURE"
# The readable text an event carries is bounded: Flower keeps up to --max_tasks of them.
MAX_TEXT = 16_000
# One quick retry: the Outcome is already stored, a lost event must not delay the worker.
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}

# The start of Celery's saferepr of an Outcome dict (its first keys are task, target,
# status; names match the config's NAME_PATTERN, so they hold no quote).
_OUTCOME_REPR = re.compile(r"^\{'task': '(?P<task>[A-Za-z0-9_.]+)', 'target': (?:'[A-Za-z0-9_.-]*'|None), "
                           r"'status': '(?P<status>[a-z]+)'")


def event_type(status: str) -> str:
    """The event a run of this status publishes (``task-critical``, ...)."""
    return f"task-{status}"


def status_of_repr(result_repr: Any) -> str | None:
    """The Outcome status in Celery's repr of a maintd task's return value, or None when
    the repr is not one (another task's result, or a shape this module does not know)."""
    if not isinstance(result_repr, str):
        return None
    m = _OUTCOME_REPR.match(result_repr)
    if m is None or m.group("task") not in SPECS or m.group("status") not in STATUSES:
        return None
    return m.group("status")


def headline(outcome: dict[str, Any]) -> str:
    """The summary's first line, marked when the run was a dry run."""
    lines = str(outcome.get("summary") or "").strip().splitlines()
    first = lines[0] if lines else f"({outcome.get('status', '?')}, no summary)"
    return f"[dry run] {first}" if outcome.get("dry_run") else first


def readable(outcome: dict[str, Any], *owners: Any) -> str:
    """What Flower shows as the run's result: the headline, then the Outcome
    pretty-printed; every secret the ``owners`` (the config) know is masked again."""
    body = json.dumps(outcome, indent=2, default=str, ensure_ascii=False)
    text = mask_secrets(f"{headline(outcome)}\n\n{body}", *owners)
    if len(text) > MAX_TEXT:
        cut = len(text) - MAX_TEXT
        text = (text[:MAX_TEXT] + f"\n… ({cut} more characters: the whole Outcome is in the result backend, "
                f"AsyncResult('{outcome.get('task_id', '')}').get())")
    return text


def is_outcome(value: Any) -> bool:
    return (isinstance(value, dict) and value.get("task") in SPECS and value.get("status") in STATUSES
            and "summary" in value)


@task_success.connect
def publish(sender: Any = None, result: Any = None, **_: Any) -> None:
    """In the run's process, after Celery stored the Outcome: tell Flower the verdict."""
    if sender is None or not is_outcome(result) or not getattr(sender.app.conf, "worker_send_task_events", False):
        return
    if getattr(sender.request, "is_eager", False) or not sender.request.id:
        return
    try:
        from workers.config import get_config

        text = readable(result, get_config())
        sender.send_event(event_type(result["status"]), result=text, retry=True, retry_policy=_RETRY_POLICY)
    except Exception:  # noqa: BLE001 - the run is done and stored; Flower only misses the readable form
        logger.warning("%s[%s]: could not publish the verdict event", sender.name, sender.request.id,
                       exc_info=True)


class VerdictRequest(Request):
    """The worker-side request of maintd tasks: the terminal event carries the verdict."""

    def send_event(self, type_: str, **fields: Any) -> None:
        if type_ == "task-succeeded":
            status = status_of_repr(fields.get("result"))
            if status is not None:
                # The run already published the readable result; the repr would replace it.
                fields.pop("result", None)
                if status != "ok":
                    type_ = event_type(status)
        super().send_event(type_, **fields)


def target_repr(name: str, args: Any) -> str | None:
    """``argsrepr`` of a maintd task's message: its target's name ("" when it has none)."""
    spec = SPECS.get(name)
    if spec is None or not isinstance(args, list | tuple):
        return None
    if spec.target_kind is None:
        return "" if not args else None
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return None


class MaintdAMQP(AMQP):
    """Celery's message builder with the target's name as ``argsrepr`` of maintd tasks."""

    def as_task_v2(self, task_id: str, name: str, args: Any = None, kwargs: Any = None,
                   *rest: Any, **options: Any) -> Any:
        if options.get("argsrepr") is None:
            shown = target_repr(name, args if args is not None else ())
            if shown is not None:
                options["argsrepr"] = shown
        return super().as_task_v2(task_id, name, args, kwargs, *rest, **options)
