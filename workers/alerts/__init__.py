"""Alerts: notify on status change, on recovery, and remind while not ok.

``observe`` decides (atomically, in the results database) whether an outcome
deserves an alert; ``deliver`` sends it to every channel whose minimum severity it
reaches, with retries. Nothing here ever fails the maintenance task that observed.
"""

from __future__ import annotations

import logging

from workers.alerts.model import Alert
from workers.alerts.state import observe
from workers.config_model import Config

logger = logging.getLogger(__name__)

__all__ = ["Alert", "observe", "observe_safely"]


def observe_safely(config: Config, task: str, target: str | None, status: str, summary: str, host: str) -> None:
    """``observe`` that logs instead of raising: alerting never fails maintenance."""
    try:
        observe(config, task, target, status, summary, host)
    except Exception:  # noqa: BLE001 - see docstring
        logger.exception("alert evaluation for %s[%s] failed", task, target)
