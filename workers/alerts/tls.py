"""TLS for alert channels: verification always on; a private CA may replace the system store."""

from __future__ import annotations

import ssl


def context(ca: str | None) -> ssl.SSLContext:
    """Hostname-verifying client context; with ``ca`` (PEM), trust exactly that CA."""
    if ca:
        return ssl.create_default_context(cadata=ca)
    return ssl.create_default_context()
