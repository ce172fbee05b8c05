"""Incident capture (impact none: read-only probes). Dispatched by the alert state machine
when an opted-in check turns critical (``incident`` = the id it opened, so the alert
carries it), or ad hoc (``maintd run incident.capture --arg reason=...``), which opens a
new incident. ``--dry-run`` lists the probes without running them.
"""

from __future__ import annotations

from tasks.core.incident import capture as core
from workers.records import records
from workers.records.outcome import Result, RunContext
from workers.taskdef import maintenance_task


@maintenance_task("incident.capture", impact="none", soft_time_limit=90, time_limit=120, max_retries=0,
                  alert_outcome=False)
def capture(run: RunContext, incident: int | None = None, reason: str = "") -> Result:
    """Snapshot sessions, locks, replication, Redis, top processes, disks and logs into an incident record."""
    deadline = min(run.config.incidents.probe_deadline.total_seconds(), run.budget().remaining(floor_s=5.0))
    return core.capture(run.config, records(run.config), int(incident) if incident is not None else None,
                        str(reason)[:500], deadline, run.host, dry_run=run.dry_run)
