"""``maintenance_task``: the one decorator that declares a task's policy and runs its gates.

A run goes: history row ``running`` → resolve the target (name → typed config) →
window gate (``deferred``) → lock gate (``skipped``) → the Celery-free body →
history row finished → alert evaluation. Exceptions are classified: transient ones
are retried with backoff, permanent ones fail now, skipped ones are an outcome.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import worker_init

from workers import alerts
from workers.app import app
from workers.catalog import TaskSpec, register
from workers.config_model import Config
from workers.errors import MaintdError, PermanentError, SkippedError, TransientError, first_line
from workers.history import history
from workers.locks import holder_label, target_lock
from workers.outcome import Outcome, Result, RunContext
from workers.routing import effective_impact, resolve_target
from workers.secrets import mask_secrets
from workers.settings import get_config
from workers.windows import inside_any, next_opening

logger = logging.getLogger(__name__)
_OPTIONS = {"impact", "target", "locks", "windowed", "soft_time_limit", "time_limit", "max_retries",
            "ad_hoc_only", "internal"}


def this_host(config: Config) -> str:
    return os.environ.get("MAINTD_HOST") or config.maintd.host


def scrub(text: str, config: Config) -> str:
    """Remove every configured secret from ``text`` (see ``workers.secrets.mask_secrets``)."""
    return mask_secrets(text, config)


def _retry_countdown(retries: int) -> int:
    return min(600, 15 * (2 ** retries))


class MaintenanceTask(Task):
    """Base class: config overrides of limits at dispatch, argument checks, closing lost rows."""

    spec: TaskSpec
    body: Callable[..., Result]

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
        return super().apply_async(args, kwargs, **options)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Close the history row of a run that could not close it itself.

        Celery calls this in the worker's *main* process when the hard time limit killed
        the pool process (and when a lost run is not retried); the run's own code never
        got to write its end, so its row would stay ``running`` forever.
        """
        if not isinstance(exc, TimeLimitExceeded | WorkerLostError):
            return  # the run recorded its own failure
        config = get_config()
        if isinstance(exc, TimeLimitExceeded):
            message = f"hard time limit ({exc.args[0] if exc.args else '?'}s) exceeded: the process was killed"
        else:
            message = "worker process lost (killed or crashed) and the run was not retried"
        try:
            closed = history().fail_running(task_id, message)
        except Exception:  # noqa: BLE001 - never let bookkeeping take the worker down
            logger.exception("could not record the end of %s[%s]", self.name, task_id)
            return
        for target in closed:
            alerts.observe_safely(config, self.name, target, "failed", message, this_host(config))


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
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"maintenance_task({name!r}): unknown options {sorted(unknown)}")
    impact = options["impact"]
    spec = TaskSpec(
        name=name, impact=impact, target_kind=options.get("target"),
        summary="",
        locks=options.get("locks", impact != "none"),
        windowed=options.get("windowed", impact == "high"),
        soft_time_limit=options.get("soft_time_limit", 300),
        time_limit=options.get("time_limit", 360),
        max_retries=options.get("max_retries", 3),
        ad_hoc_only=options.get("ad_hoc_only", False),
        internal=options.get("internal", False),
    )

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
        task: MaintenanceTask = app.task(name=name, bind=True, base=MaintenanceTask, shared=False,
                                         soft_time_limit=final.soft_time_limit, time_limit=final.time_limit,
                                         max_retries=final.max_retries, acks_late=True,
                                         # a run lost with its worker is retried this soon
                                         default_retry_delay=5,
                                         spec=final, body=staticmethod(body))(run)
        return task

    return wrap


def execute(task: MaintenanceTask, spec: TaskSpec, body: Callable[..., Result], target_name: str | None,
            dry_run: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
    config = get_config()
    started = datetime.now(timezone.utc)
    request = task.request
    run = RunContext(
        task=spec.name, task_id=request.id or "local", target=target_name,
        impact=effective_impact(spec, config), host=this_host(config),
        worker=f"{request.hostname or socket.gethostname()}/{os.getpid()}",
        attempt=(request.retries or 0) + 1, dry_run=bool(dry_run), config=config,
        started_at=started, soft_deadline_s=float(request.timelimit[1] if request.timelimit and request.timelimit[1]
                                                  else spec.soft_time_limit),
    )
    store = history()
    run_id = store.start_run(task_id=run.task_id, task=run.task, target=target_name, impact=run.impact,
                             host=run.host, worker=run.worker, attempt=run.attempt, dry_run=run.dry_run,
                             started_at=started)
    try:
        result = _gated(run, spec, body, kwargs, config)
    except Retry:
        raise
    except (TransientError, SoftTimeLimitExceeded, PermanentError, Exception) as exc:
        _fail(task, spec, run, run_id, exc, config)
        raise AssertionError("unreachable") from exc  # _fail always raises
    finished = datetime.now(timezone.utc)
    outcome = Outcome.of(run, result, finished)
    store.finish_run(run_id, status=outcome.status, summary=outcome.summary, metrics=outcome.metrics,
                     actions=outcome.actions, error=None, finished_at=finished,
                     duration_s=outcome.duration_s)
    alerts.observe_safely(config, outcome.task, outcome.target, outcome.status, outcome.summary, outcome.host)
    logger.info("%s[%s] %s: %s", spec.name, target_name, outcome.status, outcome.summary)
    return outcome.as_dict()


def _gated(run: RunContext, spec: TaskSpec, body: Callable[..., Result], kwargs: dict[str, Any],
           config: Config) -> Result:
    try:
        target = resolve_target(spec, run.target, config)
        if target is None:
            return body(run, **kwargs)
        closed = spec.windowed and not inside_any(target.windows, run.started_at)
        opens = next_opening(target.windows, run.started_at) if closed else None
        if closed and not run.dry_run:
            from workers.deferral import defer

            assert opens is not None
            reason = f"outside maintenance window ({'; '.join(target.window)}); released at {opens:%Y-%m-%d %H:%M}Z"
            defer(spec.name, target.name, {"dry_run": run.dry_run, **kwargs}, opens, reason)
            return Result("deferred", reason, {"not_before": opens.isoformat()})
        with ExitStack() as stack:
            if spec.locks and not run.dry_run:
                stack.enter_context(target_lock(config, target, holder_label(spec.name, run.host, run.task_id)))
            result = body(run, target, **kwargs)
        if opens is not None:  # a plan is useful at any time; say when it could really run
            note = f" (window closed: a real run would be deferred to {opens:%Y-%m-%d %H:%M}Z)"
            result = replace(result, summary=result.summary + note,
                             metrics={**result.metrics, "window_open": False, "window_opens": opens.isoformat()})
        return result
    except SkippedError as exc:
        return Result("skipped", str(exc))


def _fail(task: MaintenanceTask, spec: TaskSpec, run: RunContext, run_id: int, exc: BaseException,
          config: Config) -> None:
    finished = datetime.now(timezone.utc)
    duration = round((finished - run.started_at).total_seconds(), 3)
    if isinstance(exc, SoftTimeLimitExceeded):
        message = f"soft time limit exceeded after {duration:.0f}s"
    elif isinstance(exc, MaintdError):
        message = scrub(first_line(exc), config)
    else:
        logger.exception("%s[%s] crashed", spec.name, run.target)
        message = scrub(f"{type(exc).__name__}: {first_line(exc)}", config)
    max_retries = task.max_retries if task.max_retries is not None else spec.max_retries
    retrying = isinstance(exc, TransientError) and task.request.retries < max_retries
    store = history()
    store.finish_run(run_id, status="retrying" if retrying else "failed", summary=message, metrics={},
                     actions=[], error=message, finished_at=finished, duration_s=duration)
    if retrying:
        logger.warning("%s[%s] transient failure, retrying: %s", spec.name, run.target, message)
        raise task.retry(exc=TransientError(message), countdown=_retry_countdown(task.request.retries))
    alerts.observe_safely(config, spec.name, run.target, "failed", message, run.host)
    if isinstance(exc, MaintdError) and not isinstance(exc, TransientError | PermanentError):
        raise PermanentError(message) from None
    if isinstance(exc, TransientError):
        raise TransientError(message) from None
    raise PermanentError(message) from None
