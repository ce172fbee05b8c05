"""The alert state machine, one row per (task, target) in ``maintd_alert_state``.

The decision is made under a row lock (``SELECT ... FOR UPDATE``), so when several
workers observe the same change at once exactly one of them sends the alert.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from workers.alerts.delivery import deliver
from workers.alerts.model import SEVERITY_RANK, Alert
from workers.config_model import Config
from workers.history import history

logger = logging.getLogger(__name__)


def decide(previous: tuple[str, str | None, datetime | None] | None, severity: str, now: datetime,
           remind_every: timedelta) -> str | None:
    """Pure decision: which alert kind (or None) an observation deserves.

    ``previous`` is (status, notified_status, notified_at) or None for a first sight.
    """
    if previous is None:
        return "problem" if severity != "ok" else None
    status, notified, notified_at = previous
    if severity != status:
        if severity != "ok":
            return "problem"
        return "recovery" if notified not in (None, "ok") else None
    if severity != "ok" and (notified_at is None or now - notified_at >= remind_every):
        return "reminder" if notified == severity else "problem"
    return None


def observe(config: Config, task: str, target: str | None, status: str, summary: str, host: str) -> Alert | None:
    if status not in ("ok", "warning", "critical", "failed"):
        return None
    severity = "critical" if status == "failed" else status
    key = target or ""
    now = datetime.now(timezone.utc)
    remind = timedelta(hours=config.alerting.remind_every_hours)

    def transition(cur) -> Alert | None:  # type: ignore[no-untyped-def]
        cur.execute(
            "SELECT status, notified_status, notified_at FROM maintd_alert_state"
            " WHERE task = %s AND target = %s FOR UPDATE", (task, key))
        row = cur.fetchone()
        kind = decide(tuple(row) if row else None, severity, now, remind)  # type: ignore[arg-type]
        previous = row[1] if row else None
        if row is None:
            cur.execute(
                "INSERT INTO maintd_alert_state (task, target, status, since) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (task, target) DO NOTHING RETURNING 1", (task, key, severity, now))
            if cur.fetchone() is None:  # another worker inserted first: it owns this change
                return None
        elif row[0] != severity:
            cur.execute("UPDATE maintd_alert_state SET status = %s, since = %s WHERE task = %s AND target = %s",
                        (severity, now, task, key))
        if kind is None:
            return None
        cur.execute("UPDATE maintd_alert_state SET notified_status = %s, notified_at = %s"
                    " WHERE task = %s AND target = %s", (severity, now, task, key))
        return Alert(task=task, target=key, severity=severity, previous=previous, kind=kind, status=status,
                     summary=summary, host=host, at=now.isoformat(timespec="seconds"))

    alert = history().execute(transition)
    if alert is not None:
        logger.info("alert %s for %s[%s]: %s", alert.kind, task, key, severity)
        deliver(config, alert)
    return alert


def channels_for(config: Config, alert: Alert) -> list[int]:
    """Indexes of channels an alert goes to: its severity (or, for a recovery, the
    severity being recovered from) must reach the channel's minimum."""
    level = alert.severity if alert.kind != "recovery" else (alert.previous or "ok")
    if alert.kind == "test":
        return list(range(len(config.alerts)))
    return [i for i, ch in enumerate(config.alerts) if SEVERITY_RANK[level] >= SEVERITY_RANK[ch.min_severity]]
