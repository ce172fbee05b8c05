"""Which changes to critical open an incident (``incident.capture``).

Opt-in, per check or per target: a task named in ``[incidents] checks`` (every target),
or a health check of a target with ``incident = true``. The decision is made by the
alert state machine, on the change to critical only (not on reminders), inside the
transaction that decides the alert: the incident row is opened there, so the alert
carries its id; the snapshot is taken by its own task, dispatched before the alert is
delivered (``workers.alerts.state.observe``).
"""

from __future__ import annotations

from workers.catalog import load_catalog
from workers.config import Config


def wanted(config: Config, task: str, target: str | None) -> bool:
    if task in config.incidents.checks:
        return True
    if not task.startswith("health.") or not target:
        return False
    spec = load_catalog().get(task)
    found = config.target(spec.target_kind, target) if spec and spec.target_kind else None
    return bool(found is not None and found.incident)
