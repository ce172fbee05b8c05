"""The external dead-man switch: after every watchdog run, a Healthchecks-style ping.

``POST <ping_url>`` when the run found nothing worth a failure, ``POST <ping_url>/fail``
when it did (or when the watchdog itself failed); the body is the run's summary, which
Healthchecks shows in the check's log. If beat or the workers die, the pings stop and the
external service alerts: that is the part of the watchdog that does not depend on maintd.
A ping that cannot be delivered is logged and reported in the run's metrics, never raised.
"""

from __future__ import annotations

import logging

from workers.alerts.model import DeliveryError
from workers.alerts.post import post
from workers.config import Config
from workers.config.secrets import mask_secrets

logger = logging.getLogger(__name__)

ATTEMPTS = 2
BODY_LIMIT = 10_000  # Healthchecks keeps the first 10 kB of a ping body by default


def ping(config: Config, failed: bool, body: str) -> str:
    """Ping the configured URL; a one-line result for the run's metrics."""
    url = config.watchdog.ping_url
    if url is None:
        return "not configured"
    target = url.with_suffix("fail") if failed else url
    signal = "fail" if failed else "success"
    error = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            post("dead-man ping", target, body.encode()[:BODY_LIMIT],
                 {"Content-Type": "text/plain; charset=utf-8", "User-Agent": "maintd-watchdog"},
                 config.watchdog.ping_timeout_s, None)
            return f"{signal} ping sent to {url.masked}"
        except DeliveryError as exc:
            error = mask_secrets(str(exc), url)
            logger.warning("watchdog %s ping attempt %d/%d failed: %s", signal, attempt, ATTEMPTS, error)
    return f"{signal} ping FAILED: {error}"
