"""Channel ``log``: write the alert to maintd's log (logger ``maintd.alerts``)."""

from __future__ import annotations

import logging

from workers.alerts.model import Alert
from workers.config import AlertChannel

logger = logging.getLogger("maintd.alerts")


def send(channel: AlertChannel, alert: Alert, timeout_s: float) -> None:
    if alert.kind == "test":
        level = logging.WARNING  # visible at the CLI's default level: that is the point of a test
    elif alert.kind == "recovery" or alert.severity == "ok":
        level = logging.INFO
    else:
        level = logging.WARNING if alert.severity == "warning" else logging.ERROR
    logger.log(level, "%s", alert.text)
