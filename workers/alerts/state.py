"""The alert state machine, one row per (task, target) in ``maintd_alert_state``.

The decision is made under a row lock (``SELECT ... FOR UPDATE``, or the primary
key on first sight), so when several workers observe the same change at once exactly
one of them sends the alert. Delivery happens after the commit (no lock is held
over the network). When every channel of an alert failed, the notification is
rolled back (compare-and-set), so the next observation tries again instead of
waiting for a reminder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg2.extensions

from workers.alerts import incidents
from workers.alerts.delivery import Delivery, channel_names, deliver, record
from workers.alerts.model import SEVERITY_RANK, Alert
from workers.config import Config
from workers.errors import first_line
from workers.records import Records, records
from workers.records import alerts as state
from workers.records.incidents import open_incident

logger = logging.getLogger(__name__)

Previous = tuple[str, str | None, datetime | None]  # (status, notified_status, notified_at)


def decide(previous: Previous | None, severity: str, now: datetime, remind_every: timedelta) -> str | None:
    """Pure decision: which alert kind (or None) an observation of ``severity`` deserves.

    Compared with what was last *notified*, not merely observed: a change the operator
    has not been told about is a problem; ok after a notified problem is a recovery;
    the same problem is a reminder once ``remind_every`` has passed since the last alert.
    """
    if previous is None:
        return "problem" if severity != "ok" else None
    _status, notified, notified_at = previous
    if severity == "ok":
        return "recovery" if notified not in (None, "ok") else None
    if notified != severity:
        return "problem"
    if notified_at is None or now - notified_at >= remind_every:
        return "reminder"
    return None


def severity_of(status: str) -> str | None:
    """ok/warning/critical for a run status (failed counts as critical); None: not alertable."""
    if status == "failed":
        return "critical"
    return status if status in SEVERITY_RANK else None


def observe(config: Config, task: str, target: str | None, status: str, summary: str, host: str,
            book: Records | None = None, on_incident: Callable[[int], None] | None = None) -> Alert | None:
    """Record an outcome's status; send and return the alert it deserves, if any.

    When an opted-in check changes to critical (``workers.alerts.incidents``), an incident is
    opened in the same transaction, ``on_incident(id)`` is called (it dispatches the capture)
    and then the alert, carrying the id, is delivered: the page is never delayed by the
    snapshot, and never sent without the id it points to."""
    severity = severity_of(status)
    wants_incident = severity == "critical" and incidents.wanted(config, task, target)
    if severity is None or not (config.alerts or wants_incident):
        return None  # skipped/deferred say nothing about health; no channels, nothing to track
    book = book or records(config)
    key = target or ""
    now = datetime.now(UTC)
    remind = timedelta(hours=config.alerting.remind_every_hours)
    names = channel_names(config)

    def transition(cur: psycopg2.extensions.cursor) -> tuple[Alert, list[int], Previous | None] | None:
        row = state.lock_state(cur, task, key)
        previous: Previous | None = tuple(row) if row else None  # type: ignore[assignment]
        kind = decide(previous, severity, now, remind)
        if previous is None:
            if not state.insert_state(cur, task, key, severity, now):
                return None  # another worker inserted first: it owns this change
        elif previous[0] != severity:
            state.set_status(cur, task, key, severity, now)
        if kind is None:
            return None
        state.set_notified(cur, task, key, severity, now)
        incident = (open_incident(cur, task=task, target=target, status=status, summary=summary, host=host, at=now)
                    if wants_incident and kind == "problem" else None)
        alert = Alert(task=task, target=key, severity=severity, previous=previous[1] if previous else None,
                      kind=kind, status=status, summary=summary, host=host,
                      at=now.isoformat(timespec="seconds"), incident=incident)
        indexes = _recovery_channels(cur, config, names, alert) if kind == "recovery" else channels_for(config, alert)
        return alert, indexes, previous

    decided = book.execute(transition)
    if decided is None:
        return None
    alert, indexes, previous = decided
    if alert.incident is not None:
        _start_capture(book, alert, on_incident)
    logger.info("alert %s for %s[%s]: %s -> channels %s", alert.kind, task, key, severity,
                ", ".join(names[i] for i in indexes) or "none")
    deliveries = deliver(config, alert, indexes)
    record(book, alert, deliveries)
    _report_failures(alert, deliveries)
    if deliveries and not any(d.delivered for d in deliveries):
        _roll_back_notification(book, alert, now, previous)
    return alert


def _start_capture(book: Records, alert: Alert, on_incident: Callable[[int], None] | None) -> None:
    """Dispatch the snapshot of the incident just opened; if that cannot happen, the incident
    says so (state ``failed``) and the alert still goes out with its id."""
    assert alert.incident is not None
    logger.warning("incident %d opened: %s turned critical", alert.incident, alert.subject)
    error = "no capture dispatcher in this process (observed outside a worker)" if on_incident is None else None
    if on_incident is not None:
        try:
            on_incident(alert.incident)
        except Exception as exc:  # noqa: BLE001 - the alert must still go out
            error = f"could not dispatch incident.capture: {type(exc).__name__}: {first_line(exc)}"
    if error is not None:
        logger.error("incident %d: %s", alert.incident, error)
        try:
            book.incidents.fail(alert.incident, error)
        except Exception as exc:  # noqa: BLE001 - best effort; the row stays 'pending'
            logger.warning("could not record the failure of incident %d: %s", alert.incident, first_line(exc))


def channels_for(config: Config, alert: Alert) -> list[int]:
    """Indexes of channels a problem or reminder goes to (its severity reaches their minimum);
    a test goes to every channel."""
    if alert.kind == "test":
        return list(range(len(config.alerts)))
    rank = SEVERITY_RANK[alert.severity]
    return [i for i, ch in enumerate(config.alerts) if rank >= SEVERITY_RANK[ch.min_severity]]


def _recovery_channels(cur: psycopg2.extensions.cursor, config: Config, names: list[str], alert: Alert) -> list[int]:
    """A recovery goes to the channels that were sent a problem or reminder since the last
    recovery (so a critical-only channel hears the end of a critical that eased to warning
    first), and to those the last notified severity reaches (in case recording failed)."""
    sent = state.channels_alerted_since_recovery(cur, alert.task, alert.target)
    level = SEVERITY_RANK.get(alert.previous or "ok", 0)
    return [i for i, ch in enumerate(config.alerts)
            if names[i] in sent or (level > 0 and level >= SEVERITY_RANK[ch.min_severity])]


def _report_failures(alert: Alert, deliveries: list[Delivery]) -> None:
    for d in deliveries:
        if not d.delivered:
            logger.error("alert %s for %s NOT delivered to channel %s (%s) after %d attempt(s): %s",
                         alert.kind, alert.subject, d.channel, d.kind, d.attempts, d.error)


def _roll_back_notification(book: Records, alert: Alert, notified_at: datetime,
                            previous: Previous | None) -> None:
    """Nobody was told: restore the previous notification so the next observation retries.
    Compare-and-set on ``notified_at``: a newer notification by another worker is kept."""
    before_status, before_at = (previous[1], previous[2]) if previous else (None, None)
    try:
        book.execute(lambda cur: state.set_notified(cur, alert.task, alert.target, before_status, before_at,
                                                    only_if_at=notified_at))
    except Exception as exc:  # noqa: BLE001 - best effort; the next reminder still comes
        logger.warning("could not roll back the notification of %s[%s]: %s", alert.task, alert.target,
                       first_line(exc))
