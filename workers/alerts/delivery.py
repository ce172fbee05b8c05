"""Deliver an alert to its channels, with retries and backoff; record every delivery.

Each channel kind is one small module with ``send(channel, alert)`` that raises on
failure. A failed delivery is recorded in ``maintd_alert_deliveries`` and logged;
it never propagates to the maintenance task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from workers.alerts import email, log, slack, webhook
from workers.alerts.model import Alert
from workers.config_model import AlertChannel, Config
from workers.errors import first_line

logger = logging.getLogger(__name__)

SENDERS: dict[str, Callable[[AlertChannel, Alert], None]] = {
    "slack": slack.send,
    "webhook": webhook.send,
    "email": email.send,
    "log": log.send,
}


@dataclass(frozen=True)
class Delivery:
    channel: str
    kind: str
    delivered: bool
    attempts: int
    error: str | None


def send_with_retries(channel: AlertChannel, alert: Alert, attempts: int, backoff_s: float) -> Delivery:
    error: str | None = None
    for attempt in range(1, attempts + 1):
        try:
            SENDERS[channel.kind](channel, alert)
            return Delivery(channel.name, channel.kind, True, attempt, None)
        except Exception as exc:  # noqa: BLE001 - any failure of a channel is recorded, then retried
            error = first_line(exc)
            logger.warning("alert to %s (%s) failed, attempt %d/%d: %s", channel.name, channel.kind,
                           attempt, attempts, error)
            if attempt < attempts:
                time.sleep(backoff_s * (2 ** (attempt - 1)))
    return Delivery(channel.name, channel.kind, False, attempts, error)


def deliver(config: Config, alert: Alert, record: bool = True) -> list[Delivery]:
    from workers.alerts.state import channels_for

    results = [send_with_retries(config.alerts[i], alert, config.alerting.delivery_attempts,
                                 config.alerting.backoff_s) for i in channels_for(config, alert)]
    if record and results:
        _record(alert, results)
    return results


def _record(alert: Alert, results: list[Delivery]) -> None:
    from workers.history import history

    def insert(cur) -> None:  # type: ignore[no-untyped-def]
        for d in results:
            cur.execute(
                "INSERT INTO maintd_alert_deliveries (task, target, channel, kind, severity, reason, delivered,"
                " attempts, error) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                (alert.task, alert.target, d.channel, d.kind, alert.severity, alert.kind, d.delivered,
                 d.attempts, d.error))

    try:
        history().execute(insert)
    except Exception:  # noqa: BLE001 - recording is best effort; the log has the outcome
        logger.exception("could not record alert deliveries for %s[%s]", alert.task, alert.target)
