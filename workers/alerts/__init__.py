"""Alerts: notify on status change, on recovery, and remind while not ok.

``observe`` decides (atomically, in the results database) whether an outcome
deserves an alert; ``deliver`` sends it to every channel whose minimum severity it
reaches, with retries. Nothing here ever fails the maintenance task that observed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from workers.alerts.model import Alert
from workers.alerts.state import observe
from workers.config import Config
from workers.errors import first_line

logger = logging.getLogger(__name__)

__all__ = ["Alert", "observe", "observe_safely"]


def observe_safely(config: Config, task: str, target: str | None, status: str, summary: str, host: str,
                   on_incident: Callable[[int], None] | None = None) -> None:
    """``observe`` that logs instead of raising: alerting never fails maintenance."""
    try:
        observe(config, task, target, status, summary, host, on_incident=on_incident)
    except Exception as exc:  # noqa: BLE001 - see docstring (also the soft time limit: the run is recorded)
        logger.error("alert evaluation for %s[%s] (%s) failed: %s: %s", task, target, status,
                     type(exc).__name__, first_line(exc))
        logger.debug("alert evaluation traceback", exc_info=True)
