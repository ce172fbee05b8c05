"""Channel ``slack``: an incoming webhook (JSON ``{"text", "blocks"}``).

The webhook URL is the credential: it is shown as ``https://hooks.slack.com/…``.
"""

from __future__ import annotations

import json

from workers.alerts.model import Alert
from workers.alerts.post import post
from workers.config import AlertChannel

EMOJI = {"ok": ":white_check_mark:", "warning": ":warning:", "critical": ":rotating_light:"}


def payload(alert: Alert) -> dict[str, object]:
    emoji = EMOJI["ok"] if alert.kind == "recovery" else EMOJI.get(alert.severity, "")
    text = f"{emoji} {alert.text}".strip()
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def send(channel: AlertChannel, alert: Alert, timeout_s: float) -> None:
    assert channel.url is not None  # validated by AlertChannel
    body = json.dumps(payload(alert)).encode()
    post("slack webhook", channel.url, body, {"Content-Type": "application/json", "User-Agent": "maintd-alerts"},
         timeout_s, channel.ca)
