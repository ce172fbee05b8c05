"""Channel ``webhook``: JSON POST of the alert; with ``secret``, an HMAC-SHA256 of the
exact body in ``X-Maintd-Signature: sha256=<hex>`` (GitHub's scheme)."""

from __future__ import annotations

import hashlib
import hmac
import json

import requests

from workers.alerts.model import Alert
from workers.config_model import AlertChannel

SIGNATURE_HEADER = "X-Maintd-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(channel: AlertChannel, alert: Alert) -> None:
    assert channel.url is not None
    body = json.dumps(alert.as_dict(), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "maintd-alerts"}
    if channel.secret:
        headers[SIGNATURE_HEADER] = sign(channel.secret.reveal(), body)
    resp = requests.post(channel.url.reveal(), data=body, headers=headers, timeout=channel.timeout_s)
    if resp.status_code >= 300:
        raise RuntimeError(f"webhook {channel.url.masked} answered HTTP {resp.status_code}")
