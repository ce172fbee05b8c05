"""``maintenance_task``: the one decorator that declares a task's policy and runs its gates.

A run goes: run row ``running`` → the gates (``workers.gates.pipeline``: target, window,
lock, the Celery-free body, deferral) → run row finished → alert evaluation. Exceptions
are classified: transient ones are retried with backoff, permanent ones fail now,
skipped ones are an outcome. This module is the Celery side of a run; the policy
itself is a ``TaskSpec`` (``workers.catalog``).
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import task_failure, task_revoked, worker_init

from workers import alerts
from workers.alerts.runs import report_lost, watch_streak
from workers.app import ENTRY_HEADER, ORIGIN_HEADER, app
from workers.catalog import SPECS, TaskSpec, effective_impact, is_repeatable, register
from workers.config import get_config, this_host
from workers.config.secrets import mask_secrets
from workers.errors import MaintdError, PermanentError, TransientError, first_line
from workers.gates.pipeline import run_gated
from workers.records import Records, records
from workers.records.outcome import Outcome, Result, RunContext
from workers.records.progress import STATE as PROGRESS_STATE
from workers.records.progress import line as progress_line
from workers.verdict import VerdictRequest

logger = logging.getLogger(__name__)
CAPTURE_TASK = "incident.capture"


def dispatch_capture(incident_id: int) -> None:
    """An opted-in check turned critical and incident ``incident_id`` was opened: snapshot it
    in its own task (``incident.capture``), outside the check's time budget."""
    app.send_task(CAPTURE_TASK, kwargs={"incident": incident_id})

# An ad hoc dispatch (`maintd run`, dispatch(), `.delay()` in a shell) not started within this
# long is dropped by the worker (recorded `skipped`, "expired"): a command typed at 10:00 does
# not start at 16:30 after a backlog. `maintd run --expires` changes it; beat entries carry their own.
AD_HOC_EXPIRES_S = 3600


def _retry_countdown(retries: int) -> int:
    return min(600, 15 * (2 ** retries))


class MaintenanceTask(Task):
    """Base class: config overrides of limits at dispatch, argument checks, closing lost rows."""

    spec: TaskSpec
    body: Callable[..., Result]
    Request = VerdictRequest  # Flower sees the verdict (workers/verdict.py)

    def _get_exec_options(self) -> dict[str, Any]:
        """Celery's per-task message options, with ``[tasks."name"]`` limits applied: used by
        ``apply_async`` and by ``send_task`` in any process that imported the task (beat too)."""
        options = dict(super()._get_exec_options())
        override = get_config().tasks.get(self.name)
        if override is not None:
            for attr in ("soft_time_limit", "time_limit"):
                if getattr(override, attr):
                    options[attr] = getattr(override, attr)
        return options

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:  # type: ignore[override]
        if not options.get("retries"):
            _check_arguments(self, tuple(args or ()), dict(kwargs or {}))
            if options.get("expires") is None:  # ad hoc: beat entries and releases carry their own
                options["expires"] = AD_HOC_EXPIRES_S + float(options.get("countdown") or 0)
        return super().apply_async(args, kwargs, **options)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Close the history row of a run killed at its hard time limit.

        Celery calls this in the worker's *main* process when the hard time limit killed the
        pool process; the run's own code never got to write its end, so its row would stay
        ``running`` forever. (A lost pool process is handled by ``_lost_worker``.)
        """
        if not isinstance(exc, TimeLimitExceeded):
            return  # the run recorded its own failure
        config = get_config()
        message = f"hard time limit ({exc.args[0] if exc.args else '?'}s) exceeded: the process was killed"
        try:
            closed = records(config).runs.fail_running(task_id, message)
        except Exception:  # noqa: BLE001 - never let bookkeeping take the worker down
            logger.exception("could not record the end of %s[%s]", self.name, task_id)
            return
        for target in closed:
            alerts.observe_safely(config, self.name, target, "failed", message, this_host(config),
                                  on_incident=dispatch_capture)


@task_failure.connect
def _lost_worker(sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
                 **_: Any) -> None:
    """In the worker's main process: the pool process running ``task_id`` died (killed, OOM) and
    Celery does not run it again (a non-repeatable task, or retries spent). Its row is closed
    ``lost`` and an alert says nothing will run it again."""
    name = getattr(sender, "name", None)
    if not isinstance(exception, WorkerLostError) or task_id is None or name not in SPECS:
        return
    config = get_config()
    why = "worker process lost (killed or crashed) mid-run"
    try:
        targets = records(config).runs.fail_running(task_id, why, status="lost")
    except Exception:  # noqa: BLE001 - never let bookkeeping take the worker down
        logger.exception("could not record the loss of %s[%s]", name, task_id)
        return
    report_lost(config, [{"task": name, "target": t, "task_id": task_id} for t in targets], why,
                this_host(config), always=True)


@task_revoked.connect
def _expired(sender: Any = None, request: Any = None, expired: bool = False, **_: Any) -> None:
    """In the worker's main process: a message that expired before it started is dropped by
    Celery; record it (``skipped``) so history and the skip streak see the run that never was."""
    spec = SPECS.get(getattr(sender, "name", "") or "")
    if not expired or spec is None or request is None:
        return
    config = get_config()
    args = list(getattr(request, "args", None) or [])
    target = args[0] if spec.target_kind and args else None
    entry, origin = scheduling(request)
    now = datetime.now(timezone.utc)
    summary = (f"expired before it started (not run): {'scheduled by ' + entry if entry else 'ad hoc'},"
               f" expiry {getattr(request, 'expires', None) or '?'}")
    try:
        book = records(config)
        book.runs.record(task_id=request.id or "?", task=spec.name, target=target, status="skipped", summary=summary,
                         impact=effective_impact(spec, config), host=this_host(config),
                         worker=f"{getattr(request, 'hostname', None) or socket.gethostname()}/{os.getpid()}",
                         attempt=(getattr(request, "retries", 0) or 0) + 1, dry_run=False, started_at=now,
                         finished_at=now, entry=entry, origin=origin)
        if entry:
            watch_streak(config, book, spec.name, target, "skipped", this_host(config))
    except Exception:  # noqa: BLE001 - never let bookkeeping take the worker down
        logger.exception("could not record the expiry of %s[%s]", spec.name, getattr(request, "id", "?"))


def scheduling(request: Any) -> tuple[str | None, str | None]:
    """(beat entry, origin) from a message's maintd headers; (None, None) for an ad hoc dispatch."""
    headers = getattr(request, "headers", None) or {}
    entry = headers.get(ENTRY_HEADER) or getattr(request, ENTRY_HEADER, None)
    origin = headers.get(ORIGIN_HEADER) or getattr(request, ORIGIN_HEADER, None)
    return (str(entry) if entry else None), (str(origin) if origin else None)


def expires_at(request: Any) -> datetime | None:
    """When a message expires (Celery carries it as an ISO timestamp), or None."""
    value = getattr(request, "expires", None)
    if not value:
        return None
    try:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@worker_init.connect
def _apply_overrides(**_: Any) -> None:
    """``[tasks."name"]`` limits and retries in the worker: for messages that carry no limits
    (sent by code that does not import maintd's tasks, e.g. another app's ``send_task``)."""
    config = get_config()
    for name, override in config.tasks.items():
        task = app.tasks.get(name)
        if task is None:
            continue
        for attr in ("soft_time_limit", "time_limit", "max_retries"):
            value = getattr(override, attr)
            if value is not None:
                setattr(type(task), attr, value)
        if override.repeatable is False:
            _not_repeatable(type(task))


def _not_repeatable(cls: type) -> None:
    """Acknowledge the message when the run starts; never requeue or retry a lost run."""
    cls.acks_late = False  # type: ignore[attr-defined]
    cls.reject_on_worker_lost = False  # type: ignore[attr-defined]
    cls.retry_on_worker_lost = False  # type: ignore[attr-defined]


def _check_arguments(task: MaintenanceTask, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Reject unknown or secret-looking arguments before anything is sent."""
    sig = inspect.signature(task.body)
    params = list(sig.parameters.values())[2 if task.spec.target_kind else 1:]
    fake = inspect.Signature([inspect.Parameter("target", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
                              inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, default=False),
                              *[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]])
    try:
        fake.bind(*args, **kwargs)
    except TypeError as exc:
        raise PermanentError(f"{task.name}: bad arguments: {exc}") from None
    for key, value in kwargs.items():
        if isinstance(value, str) and ("://" in value and "@" in value):
            raise PermanentError(f"{task.name}: argument {key!r} looks like a URL with credentials; pass names only")


def maintenance_task(name: str, **options: Any) -> Callable[[Callable[..., Result]], MaintenanceTask]:
    """Declare a task: its policy (``TaskSpec.declare`` rejects unknown options) and its
    Celery registration on the project app."""
    spec = TaskSpec.declare(name, **options)

    def wrap(body: Callable[..., Result]) -> MaintenanceTask:
        doc = (inspect.getdoc(body) or "").split("\n")[0]
        final = TaskSpec(**{**spec.__dict__, "summary": doc})
        register(final)

        def run(self: MaintenanceTask, target: str | None = None, *, dry_run: bool = False,
                **kwargs: Any) -> dict[str, Any]:
            return execute(self, final, body, target, dry_run, kwargs)

        run.__name__ = body.__name__
        run.__doc__ = body.__doc__
        # spec/body become class attributes: setting them on the proxy would evaluate it
        # (and load the config) at import time.
        # A repeatable task's message is acknowledged when the run ends (lost with its worker, it
        # runs again); a non-repeatable one's when the run starts (lost, it is recorded and alerted).
        repeatable = final.repeatable
        task: MaintenanceTask = app.task(name=name, bind=True, base=MaintenanceTask, shared=False,
                                         soft_time_limit=final.soft_time_limit, time_limit=final.time_limit,
                                         max_retries=final.max_retries, acks_late=repeatable,
                                         reject_on_worker_lost=repeatable, retry_on_worker_lost=repeatable,
                                         # a run lost with its worker is retried this soon
                                         default_retry_delay=5,
                                         spec=final, body=staticmethod(body))(run)
        return task

    return wrap


def progress_publisher(task: MaintenanceTask, task_id: str) -> Callable[[dict[str, Any]], None]:
    """``RunContext.progress`` in a worker: the task state ``PROGRESS`` with the meta in the
    result backend (``AsyncResult(id).state/.info``, ``maintd run --wait``), and a
    ``task-progress`` event for Flower (its state PROGRESS; a line of text as its result)."""
    events = bool(task.app.conf.worker_send_task_events)

    def publish(meta: dict[str, Any]) -> None:
        task.update_state(task_id=task_id, state=PROGRESS_STATE, meta=meta)
        if events:
            task.send_event("task-progress", result=progress_line(meta), progress=meta)

    return publish


def execute(task: MaintenanceTask, spec: TaskSpec, body: Callable[..., Result], target_name: str | None,
            dry_run: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
    config = get_config()
    started = datetime.now(timezone.utc)
    request = task.request
    entry, origin = scheduling(request)
    run = RunContext(
        task=spec.name, task_id=request.id or "local", target=target_name,
        impact=effective_impact(spec, config), host=this_host(config),
        worker=f"{request.hostname or socket.gethostname()}/{os.getpid()}",
        attempt=(request.retries or 0) + 1, dry_run=bool(dry_run), config=config,
        started_at=started, soft_deadline_s=float(request.timelimit[1] if request.timelimit and request.timelimit[1]
                                                  else spec.soft_time_limit),
        entry=entry, origin=origin, expires_at=expires_at(request),
    )
    if request.id and not request.is_eager:
        run.meter.publish = progress_publisher(task, request.id)
    book = records(config)
    if not is_repeatable(spec, config) and request.id:
        refused = _refusal(run, book)
        if refused is not None:
            return refused
    run_id = None if spec.quiet else book.runs.start(
        task_id=run.task_id, task=run.task, target=target_name, impact=run.impact, host=run.host, worker=run.worker,
        attempt=run.attempt, dry_run=run.dry_run, started_at=started, entry=entry, origin=origin)
    try:
        result = run_gated(run, spec, body, kwargs, book)
    except Retry:
        raise
    except (TransientError, SoftTimeLimitExceeded, PermanentError, Exception) as exc:
        _fail(task, spec, run, run_id, exc, book)
        raise AssertionError("unreachable") from exc  # _fail always raises
    finished = datetime.now(timezone.utc)
    outcome = Outcome.of(run, result, finished)
    if run_id is not None:
        book.runs.finish(run_id, status=outcome.status, summary=outcome.summary, metrics=outcome.metrics,
                         actions=outcome.actions, error=None, finished_at=finished, duration_s=outcome.duration_s)
    elif outcome.actions or outcome.status != "ok":
        _record_whole(book, run, outcome.status, outcome.summary, finished, metrics=outcome.metrics,
                      actions=outcome.actions)
    else:
        return outcome.as_dict()  # a quiet task's idle run: no row, no alert
    if spec.alert_outcome:
        alerts.observe_safely(config, outcome.task, outcome.target, outcome.status, outcome.summary, outcome.host,
                              on_incident=dispatch_capture)
    if run.scheduled:
        watch_streak(config, book, run.task, run.target, outcome.status, run.host)
    logger.info("%s[%s] %s: %s", spec.name, target_name, outcome.status, outcome.summary)
    return outcome.as_dict()


def _record_whole(book: Records, run: RunContext, status: str, summary: str, finished: datetime,
                  **extra: Any) -> None:
    book.runs.record(task_id=run.task_id, task=run.task, target=run.target, status=status, summary=summary,
                     impact=run.impact, host=run.host, worker=run.worker, attempt=run.attempt, dry_run=run.dry_run,
                     started_at=run.started_at, finished_at=finished, entry=run.entry, origin=run.origin, **extra)


def _refusal(run: RunContext, book: Records) -> dict[str, Any] | None:
    """A non-repeatable task delivered again under a task id that already ran (a redelivery of a
    message whose run was lost, a duplicate publish): refused, recorded ``skipped``, the earlier
    run closed ``lost`` and alerted. A retry of a transient failure (earlier rows ``retrying``)
    goes ahead."""
    earlier = book.runs.find(task_id=run.task_id, limit=20)
    if not earlier or (all(r["status"] == "retrying" for r in earlier) and len(earlier) < run.attempt):
        return None
    last = earlier[0]
    summary = (f"refused: {run.task} run {run.task_id[:8]} was delivered before (attempt {last['attempt']}"
               f" {last['status']}, started {last['started_at']:%Y-%m-%d %H:%M}Z on {last['worker']}); {run.task}"
               " is not repeatable: it runs again only when a person dispatches it anew")
    why = "delivered again after its run was lost"
    lost = book.runs.fail_running(run.task_id, f"worker lost before the run finished; {why}", status="lost")
    report_lost(run.config, [{"task": run.task, "target": t, "task_id": run.task_id} for t in lost], why, run.host)
    finished = datetime.now(timezone.utc)
    _record_whole(book, run, "skipped", summary, finished)
    logger.warning("%s[%s] %s", run.task, run.target, summary)
    return Outcome.of(run, Result("skipped", summary, {"refused": True}), finished).as_dict()


def _fail(task: MaintenanceTask, spec: TaskSpec, run: RunContext, run_id: int | None, exc: BaseException,
          book: Records) -> None:
    config = run.config
    finished = datetime.now(timezone.utc)
    duration = round((finished - run.started_at).total_seconds(), 3)
    if isinstance(exc, SoftTimeLimitExceeded):
        message = f"soft time limit exceeded after {duration:.0f}s"
    elif isinstance(exc, MaintdError):
        message = mask_secrets(first_line(exc), config)
    else:
        logger.exception("%s[%s] crashed", spec.name, run.target)
        message = mask_secrets(f"{type(exc).__name__}: {first_line(exc)}", config)
    max_retries = task.max_retries if task.max_retries is not None else spec.max_retries
    retrying = isinstance(exc, TransientError) and task.request.retries < max_retries
    status = "retrying" if retrying else "failed"
    if run_id is None:
        _record_whole(book, run, status, message, finished, error=message)
    else:
        book.runs.finish(run_id, status=status, summary=message, metrics={}, actions=[], error=message,
                         finished_at=finished, duration_s=duration)
    if retrying:
        logger.warning("%s[%s] transient failure, retrying: %s", spec.name, run.target, message)
        raise task.retry(exc=TransientError(message), countdown=_retry_countdown(task.request.retries))
    alerts.observe_safely(config, spec.name, run.target, "failed", message, run.host, on_incident=dispatch_capture)
    if isinstance(exc, MaintdError) and not isinstance(exc, TransientError | PermanentError):
        raise PermanentError(message) from None
    if isinstance(exc, TransientError):
        raise TransientError(message) from None
    raise PermanentError(message) from None
