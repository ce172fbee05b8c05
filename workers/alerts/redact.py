"""Keep channel secrets out of logs, delivery records and error messages.

A Slack incoming-webhook URL *is* its token (the path), a generic webhook often
carries one in its path or query, an SMTP password and an HMAC key are secrets:
messages name an endpoint as ``scheme://host:port/…`` and every message a channel
produces passes through ``mask_secrets(text, *secrets_of(channel))``.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from workers.config import AlertChannel, WebhookUrl
from workers.config.secrets import SecretUrl

_MIN_SECRET = 4  # shorter fragments would mangle messages without protecting anything


def endpoint(url: SecretUrl | None) -> str:
    """``scheme://host[:port]/…``: no userinfo, path, query or fragment."""
    if url is None:
        return "(no url)"
    return WebhookUrl(url.reveal()).masked


def secrets_of(channel: AlertChannel) -> list[str]:
    """Every string of this channel that must never be shown, longest first."""
    found: list[str] = []
    if channel.url is not None and channel.url.reveal():
        raw = channel.url.reveal()
        found.append(raw)
        try:
            parts = urlsplit(raw)
        except ValueError:
            parts = None
        if parts is not None:
            for piece in (parts.path, parts.query, parts.fragment, parts.password or "", parts.username or ""):
                found.extend((piece, unquote(piece)))
            found.extend(seg for seg in parts.path.split("/") if len(seg) >= 8)
    for secret in (channel.secret, channel.password):
        if secret is not None and secret.reveal():
            found.append(secret.reveal())
    unique = {s for s in found if len(s) >= _MIN_SECRET and s.strip("/")}
    return sorted(unique, key=len, reverse=True)
