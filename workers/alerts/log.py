"""Channel ``log``: write the alert to maintd's log (always available, never fails)."""

from __future__ import annotations

import logging

from workers.alerts.model import Alert
from workers.config_model import AlertChannel

logger = logging.getLogger("maintd.alerts")


def send(channel: AlertChannel, alert: Alert) -> None:
    level = logging.INFO if alert.severity == "ok" else logging.WARNING if alert.severity == "warning" else logging.ERROR
    logger.log(level, "%s", alert.text)
