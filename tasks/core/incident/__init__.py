"""Celery-free core of ``incident.capture``: probes of PostgreSQL (``pg``), Redis
(``redis_state``), the host (``host``) and log files (``logs``), run in parallel within one
deadline (``probes``), masked (``mask``), stored by ``capture``; ``render`` prints one."""

from __future__ import annotations

from tasks.core.incident import capture, render

__all__ = ["capture", "render"]
