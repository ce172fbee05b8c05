"""Celery-free core of ``watchdog.schedule``: ``detect`` (pure findings), ``watch`` (one
run over the records), ``ping`` (the external dead-man switch)."""

from __future__ import annotations

from tasks.core.watchdog import detect, ping, watch

__all__ = ["detect", "ping", "watch"]
