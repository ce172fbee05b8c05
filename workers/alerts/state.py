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
from datetime import UTC, datetime, timedelta

from workers.alerts.delivery import Delivery, channel_names, deliver, record
from workers.alerts.model import SEVERITY_RANK, Alert
from workers.config_model import Config
from workers.errors import ConfigError, first_line
from workers.history import HistoryStore, store_for

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


def results_store(config: Config) -> HistoryStore:
    if config.results.url is None:
        raise ConfigError("no [results] url configured: alert state lives in the results database")
    return store_for(config.results.url)


def observe(config: Config, task: str, target: str | None, status: str, summary: str, host: str,
            store: HistoryStore | None = None) -> Alert | None:
    """Record an outcome's status; send and return the alert it deserves, if any."""
    severity = severity_of(status)
    if severity is None or not config.alerts:
        return None  # skipped/deferred say nothing about health; no channels, nothing to track
    store = store or results_store(config)
    key = target or ""
    now = datetime.now(UTC)
    remind = timedelta(hours=config.alerting.remind_every_hours)
    names = channel_names(config)

    def transition(cur) -> tuple[Alert, list[int], Previous | None] | None:  # type: ignore[no-untyped-def]
        cur.execute(
            "SELECT status, notified_status, notified_at FROM maintd_alert_state"
            " WHERE task = %s AND target = %s FOR UPDATE", (task, key))
        row = cur.fetchone()
        previous: Previous | None = (row[0], row[1], row[2]) if row else None
        kind = decide(previous, severity, now, remind)
        if previous is None:
            cur.execute(
                "INSERT INTO maintd_alert_state (task, target, status, since) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (task, target) DO NOTHING RETURNING 1", (task, key, severity, now))
            if cur.fetchone() is None:  # another worker inserted first: it owns this change
                return None
        elif previous[0] != severity:
            cur.execute("UPDATE maintd_alert_state SET status = %s, since = %s WHERE task = %s AND target = %s",
                        (severity, now, task, key))
        if kind is None:
            return None
        cur.execute("UPDATE maintd_alert_state SET notified_status = %s, notified_at = %s"
                    " WHERE task = %s AND target = %s", (severity, now, task, key))
        alert = Alert(task=task, target=key, severity=severity, previous=previous[1] if previous else None,
                      kind=kind, status=status, summary=summary, host=host,
                      at=now.isoformat(timespec="seconds"))
        indexes = _recovery_channels(cur, config, names, alert) if kind == "recovery" else channels_for(config, alert)
        return alert, indexes, previous

    decided = store.execute(transition)
    if decided is None:
        return None
    alert, indexes, previous = decided
    logger.info("alert %s for %s[%s]: %s -> channels %s", alert.kind, task, key, severity,
                ", ".join(names[i] for i in indexes) or "none")
    deliveries = deliver(config, alert, indexes)
    record(store, alert, deliveries)
    _report_failures(alert, deliveries)
    if deliveries and not any(d.delivered for d in deliveries):
        _roll_back_notification(store, alert, now, previous)
    return alert


def channels_for(config: Config, alert: Alert) -> list[int]:
    """Indexes of channels a problem or reminder goes to (its severity reaches their minimum);
    a test goes to every channel."""
    if alert.kind == "test":
        return list(range(len(config.alerts)))
    rank = SEVERITY_RANK[alert.severity]
    return [i for i, ch in enumerate(config.alerts) if rank >= SEVERITY_RANK[ch.min_severity]]


def _recovery_channels(cur, config: Config, names: list[str], alert: Alert) -> list[int]:  # type: ignore[no-untyped-def]
    """A recovery goes to the channels that were sent a problem or reminder since the last
    recovery (so a critical-only channel hears the end of a critical that eased to warning
    first), and to those the last notified severity reaches (in case recording failed)."""
    cur.execute(
        "SELECT DISTINCT channel FROM maintd_alert_deliveries WHERE task = %s AND target = %s"
        " AND reason IN ('problem', 'reminder') AND id > COALESCE((SELECT max(id) FROM maintd_alert_deliveries"
        " WHERE task = %s AND target = %s AND reason = 'recovery'), 0)",
        (alert.task, alert.target, alert.task, alert.target))
    sent = {r[0] for r in cur.fetchall()}
    level = SEVERITY_RANK.get(alert.previous or "ok", 0)
    return [i for i, ch in enumerate(config.alerts)
            if names[i] in sent or (level > 0 and level >= SEVERITY_RANK[ch.min_severity])]


def _report_failures(alert: Alert, deliveries: list[Delivery]) -> None:
    for d in deliveries:
        if not d.delivered:
            logger.error("alert %s for %s NOT delivered to channel %s (%s) after %d attempt(s): %s",
                         alert.kind, alert.subject, d.channel, d.kind, d.attempts, d.error)


def _roll_back_notification(store: HistoryStore, alert: Alert, notified_at: datetime,
                            previous: Previous | None) -> None:
    """Nobody was told: restore the previous notification so the next observation retries.
    Compare-and-set on ``notified_at``: a newer notification by another worker is kept."""
    before_status, before_at = (previous[1], previous[2]) if previous else (None, None)
    try:
        store.execute(lambda cur: cur.execute(
            "UPDATE maintd_alert_state SET notified_status = %s, notified_at = %s"
            " WHERE task = %s AND target = %s AND notified_at = %s",
            (before_status, before_at, alert.task, alert.target, notified_at)))
    except Exception as exc:  # noqa: BLE001 - best effort; the next reminder still comes
        logger.warning("could not roll back the notification of %s[%s]: %s", alert.task, alert.target,
                       first_line(exc))
