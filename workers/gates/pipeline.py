"""A run through its gates: resolve the target → window (``deferred`` outside it) → lock
(held: an ad hoc run is ``skipped`` naming the holder; a *scheduled* run waits, ``deferred``
until the holder lets go) → the Celery-free body → deferral.

Deferral is decided here and only here: any ``Result`` that is ``deferred`` with a
``not_before`` — the window gate's own, the lock gate's wait, or a body backing off under
live load — is recorded in the deferred runs and released at that time by
``maintd.release_deferred``. A task body never records its own deferral.

While the body runs, the lock's lease is registered on the run: ``run.checkpoint()`` (called
by domain code between steps) raises ``LockLostError`` once the lock may no longer be ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.catalog import TaskSpec, resolve_target
from workers.config.windows import inside_any, next_opening
from workers.errors import LockLostError, SkippedError, first_line
from workers.gates.locks import Lease, LockHeld, holder_label, target_lock
from workers.records import Records
from workers.records.outcome import Result, RunContext, active

logger = logging.getLogger(__name__)

# A scheduled run waiting for a held lock is offered again as soon as the holder lets go
# (its gate wakes the waiters; the every-minute release sends them), and at the latest after
# this long (a holder that died frees the lock without waking anyone).
LOCK_RECHECK_S = 300
# A scheduled run whose message carries no expiry (a deferral released again) waits this long at most.
MAX_LOCK_WAIT_S = 4 * 3600


def run_gated(run: RunContext, spec: TaskSpec, body: Callable[..., Result], kwargs: dict[str, Any],
              records: Records) -> Result:
    """The run's Result after every gate (exceptions of the body propagate, classified by the caller)."""
    try:
        with active(run):
            result = _through_gates(run, spec, body, kwargs, records)
    except LockHeld as exc:
        result = _lock_held(run, exc)
    except SkippedError as exc:
        return Result("skipped", str(exc))
    return _defer(run, result, kwargs, records)


def _lock_held(run: RunContext, exc: LockHeld) -> Result:
    """Ad hoc: ``skipped`` naming the holder (the operator decides). Scheduled: wait for it,
    within the scheduled message's expiry."""
    if not run.scheduled or run.dry_run:
        return Result("skipped", str(exc))
    now = datetime.now(UTC)
    if run.expires_at is not None and now >= run.expires_at:
        return Result("skipped", f"{exc}; gave up waiting: this scheduled run expired at"
                                 f" {run.expires_at:%Y-%m-%d %H:%M}Z", {"lock_holder": exc.holder})
    if run.expires_at is None:  # a released deferral carries no expiry: bound its wait all the same
        run.expires_at = now + timedelta(seconds=MAX_LOCK_WAIT_S)
    when = min(now + timedelta(seconds=LOCK_RECHECK_S), run.expires_at)
    until = f", until {run.expires_at:%Y-%m-%d %H:%M}Z"
    return Result("deferred", f"waiting for the lock: {exc}; offered again when it is released{until}",
                  {"lock_holder": exc.holder}, not_before=when, waiting_for="lock")


def _through_gates(run: RunContext, spec: TaskSpec, body: Callable[..., Result], kwargs: dict[str, Any],
                   records: Records) -> Result:
    config = run.config
    target = resolve_target(spec, run.target, config)
    if target is None:
        return body(run, **kwargs)
    closed = spec.windowed and not inside_any(target.windows, run.started_at)
    opens = next_opening(target.windows, run.started_at) if closed else None
    if opens is not None and not run.dry_run and run.origin and run.expires_at and opens > run.expires_at:
        # a scheduled run that waited for a lock until its window closed: the next firing does the work
        return Result("skipped", f"the window ({'; '.join(target.window)}) closed while this scheduled run waited"
                                 f" for the lock; it expires at {run.expires_at:%Y-%m-%d %H:%M}Z, before the window"
                                 " opens again: the next scheduled run will do it")
    if opens is not None and not run.dry_run:
        return Result("deferred", f"outside maintenance window ({'; '.join(target.window)})",
                      {"window_open": False}, not_before=opens)
    lease: Lease | None = None
    with ExitStack() as stack:
        if spec.locks and not run.dry_run:
            lease = stack.enter_context(target_lock(config, target, holder_label(spec.name, run.host, run.task_id)))
            run.guards.append(lease.check)
        try:
            result = body(run, target, **kwargs)
        finally:
            if lease is not None:
                run.guards.remove(lease.check)
        if lease is not None:
            result = _after_body(lease, result)
    if lease is not None:
        _wake_waiters(records, target.name)
    if opens is not None:  # a plan is useful at any time; say when it could really run
        note = f" (window closed: a real run would be deferred to {opens:%Y-%m-%d %H:%M}Z)"
        result = replace(result, summary=result.summary + note,
                         metrics={**result.metrics, "window_open": False, "window_opens": opens.isoformat()})
    return result


def _after_body(lease: Lease, result: Result) -> Result:
    """The body finished; if the lock was lost after its last checkpoint, the work is done but
    may have overlapped another run: say so (a warning at least)."""
    try:
        lease.check()
    except LockLostError as exc:
        status = result.status if result.status in ("warning", "critical") else "warning"
        if result.status in ("skipped", "deferred"):
            status = result.status
        return replace(result, status=status, summary=f"{result.summary}; {exc} before the run ended"
                                                      " (its last step may have overlapped another run)",
                       not_before=result.not_before if status == "deferred" else None)
    return result


def _wake_waiters(records: Records, target: str) -> None:
    """The lock was just let go: scheduled runs waiting for it are due now."""
    try:
        records.deferred.wake(target)
    except Exception as exc:  # noqa: BLE001 - they are offered again at their re-check time anyway
        logger.warning("could not wake runs waiting for %s's lock: %s", target, first_line(exc))


def _defer(run: RunContext, result: Result, kwargs: dict[str, Any], records: Records) -> Result:
    """Record a deferred result that names when it may run again; say so in its summary."""
    when = result.not_before
    if result.status != "deferred" or when is None or run.dry_run or run.target is None:
        return result
    summary = result.summary if result.waiting_for == "lock" else f"{result.summary}; released at {when:%Y-%m-%d %H:%M}Z"
    expires = run.expires_at if result.waiting_for == "lock" else None
    records.deferred.defer(run.task, run.target, {"dry_run": False, **kwargs}, when, summary[:500],
                           waiting_for=result.waiting_for, entry=run.entry, origin=run.origin or run.task_id,
                           expires_at=expires)
    return replace(result, summary=summary, metrics={**result.metrics, "not_before": when.isoformat()})
