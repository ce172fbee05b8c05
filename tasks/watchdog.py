"""The watchdog (impact none): a dead-man switch over the schedule, inside the scheduler
(this task, every 10 minutes) and outside it (the dead-man ping it sends, and
``maintd status --check`` for a system cron or monitoring probe).

It alerts its findings itself, one alert-state key per finding (``alert_outcome=False``:
its own outcome is not alerted a second time; a failed run still is).
"""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.core.watchdog import watch
from workers.records import records
from workers.records.outcome import Result, RunContext
from workers.taskdef import maintenance_task


@maintenance_task("watchdog.schedule", impact="none", soft_time_limit=120, time_limit=150, max_retries=0,
                  alert_outcome=False)
def schedule(run: RunContext) -> Result:
    """Missed, late, stuck, repeatedly failing and too-short runs of the schedule; pings the dead-man URL."""
    return watch.run(run.config, records(run.config), datetime.now(UTC), run.host)
