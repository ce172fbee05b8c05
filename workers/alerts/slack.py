"""Channel ``slack``: an incoming webhook (JSON ``{"text", "blocks"}``)."""

from __future__ import annotations

import requests

from workers.alerts.model import Alert
from workers.config_model import AlertChannel

EMOJI = {"ok": ":white_check_mark:", "warning": ":warning:", "critical": ":rotating_light:"}


def payload(alert: Alert) -> dict[str, object]:
    text = f"{EMOJI.get(alert.severity, '')} {alert.text}".strip()
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def send(channel: AlertChannel, alert: Alert) -> None:
    assert channel.url is not None
    resp = requests.post(channel.url.reveal(), json=payload(alert), timeout=channel.timeout_s)
    if resp.status_code >= 300:
        raise RuntimeError(f"slack webhook {channel.url.masked} answered HTTP {resp.status_code}")
