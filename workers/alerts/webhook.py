"""Channel ``webhook``: JSON POST of the alert.

With ``secret``, the exact body is signed with HMAC-SHA256 and sent as
``X-Maintd-Signature: sha256=<hex>`` (GitHub's scheme); receivers recompute it over
the raw body and compare in constant time. ``X-Maintd-Event`` carries the alert kind.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from workers.alerts.model import Alert
from workers.alerts.post import post
from workers.config import AlertChannel

SIGNATURE_HEADER = "X-Maintd-Signature"
EVENT_HEADER = "X-Maintd-Event"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(alert: Alert) -> bytes:
    return json.dumps(alert.as_dict(), sort_keys=True).encode()


def send(channel: AlertChannel, alert: Alert, timeout_s: float) -> None:
    assert channel.url is not None  # validated by AlertChannel
    body = body_of(alert)
    headers = {"Content-Type": "application/json", "User-Agent": "maintd-alerts", EVENT_HEADER: alert.kind}
    if channel.secret:
        headers[SIGNATURE_HEADER] = sign(channel.secret.reveal(), body)
    post("webhook", channel.url, body, headers, timeout_s, channel.ca)
