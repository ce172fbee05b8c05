"""Deliver an alert to its channels, with retries and backoff; record every delivery.

Each channel kind is one small module with ``send(channel, alert, timeout_s)`` that
raises on failure. Channels are tried in parallel, each with its own retries and
exponential backoff, all bounded by ``[alerting] delivery_deadline_s`` so a dead
endpoint cannot push the maintenance task past its time limit. Every attempt's
error is scrubbed of the channel's secrets. Nothing here raises to the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from workers.alerts import email, log, slack, webhook
from workers.alerts.model import Alert
from workers.alerts.redact import secrets_of
from workers.config import AlertChannel, Config
from workers.config.secrets import mask_secrets
from workers.errors import first_line
from workers.records import Records
from workers.records.alerts import DeliveryRow

logger = logging.getLogger(__name__)

SENDERS: dict[str, Callable[[AlertChannel, Alert, float], None]] = {
    "slack": slack.send,
    "webhook": webhook.send,
    "email": email.send,
    "log": log.send,
}
_JOIN_GRACE_S = 2.0  # a sender's socket timeout is capped at the deadline; allow it to report



@dataclass(frozen=True)
class Delivery:
    channel: str
    kind: str
    delivered: bool
    attempts: int
    error: str | None


def channel_names(config: Config) -> list[str]:
    """Unique channel names in config order (a repeated name gets ``#2``, ``#3``...)."""
    seen: dict[str, int] = {}
    names = []
    for ch in config.alerts:
        seen[ch.name] = seen.get(ch.name, 0) + 1
        names.append(ch.name if seen[ch.name] == 1 else f"{ch.name}#{seen[ch.name]}")
    return names


def send_with_retries(channel: AlertChannel, name: str, alert: Alert, attempts: int, backoff_s: float,
                      deadline: float) -> Delivery:
    """Try up to ``attempts`` times, doubling the pause, never starting past ``deadline``."""
    error = "not attempted: delivery deadline already passed"
    tried = 0
    for attempt in range(1, attempts + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            error += " (gave up: delivery deadline)" if tried else ""
            break
        tried = attempt
        try:
            SENDERS[channel.kind](channel, alert, min(channel.timeout_s, remaining))
            return Delivery(name, channel.kind, True, attempt, None)
        except Exception as exc:  # noqa: BLE001 - any failure of a channel is recorded, then retried
            error = mask_secrets(first_line(exc), *secrets_of(channel))
            logger.warning("alert %s for %s to channel %s (%s) failed, attempt %d/%d: %s", alert.kind,
                           alert.subject, name, channel.kind, attempt, attempts, error)
        if attempt < attempts:
            pause = backoff_s * (2 ** (attempt - 1))
            if time.monotonic() + pause >= deadline:
                error += " (gave up: delivery deadline)"
                break
            time.sleep(pause)
    return Delivery(name, channel.kind, False, tried, error)


def deliver(config: Config, alert: Alert, indexes: list[int]) -> list[Delivery]:
    """Send ``alert`` to the channels at ``indexes`` of ``config.alerts``, in parallel."""
    if not indexes:
        return []
    names = channel_names(config)
    cfg = config.alerting
    deadline = time.monotonic() + cfg.delivery_deadline_s
    results: list[Delivery | None] = [None] * len(indexes)

    def run(slot: int, i: int) -> None:
        try:
            results[slot] = send_with_retries(config.alerts[i], names[i], alert, cfg.delivery_attempts,
                                              cfg.backoff_s, deadline)
        except BaseException as exc:  # noqa: BLE001 - a bug here must still leave a record
            results[slot] = Delivery(names[i], config.alerts[i].kind, False, 0,
                                     mask_secrets(f"{type(exc).__name__}: {first_line(exc)}",
                                                  *secrets_of(config.alerts[i])))

    threads = [threading.Thread(target=run, args=(slot, i), name=f"alert-{names[i]}", daemon=True)
               for slot, i in enumerate(indexes)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline + _JOIN_GRACE_S - time.monotonic()))
        reason = f"gave up: no answer within the delivery deadline of {cfg.delivery_deadline_s:g}s"
    except Exception:  # noqa: BLE001 - raised into this thread while it waits: Celery's soft time limit
        # The run is finished and recorded; stop waiting so the task can still return its Outcome.
        reason = "interrupted: the task reached its soft time limit"
    return [r if r is not None else Delivery(names[i], config.alerts[i].kind, False, 1, reason)
            for r, i in zip(results, indexes, strict=True)]


def record(book: Records, alert: Alert, deliveries: list[Delivery]) -> bool:
    """One ``maintd_alert_deliveries`` row per delivery. False (logged) if that fails."""
    try:
        book.alerts.record_deliveries(alert.task, alert.target, alert.severity, alert.kind,
                                      [DeliveryRow(d.channel, d.kind, d.delivered, d.attempts, d.error)
                                       for d in deliveries])
        return True
    except Exception as exc:  # noqa: BLE001 - recording is best effort; the log keeps the outcome
        logger.warning("could not record %d alert deliveries for %s: %s", len(deliveries), alert.subject,
                       first_line(exc))
        return False
