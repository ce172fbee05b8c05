"""Reports (impact none): the weekly report and the capacity forecast, read from the records.

Both only read maintd's own records (run history and metric series) and write files under
``[reports] dir``; the weekly report also goes to the alert channels.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.core.reports import publish
from workers.records import records
from workers.records.outcome import Result, RunContext
from workers.taskdef import maintenance_task


@maintenance_task("reports.weekly", impact="none", soft_time_limit=300, time_limit=360, max_retries=1,
                  alert_outcome=False)
def weekly(run: RunContext) -> Result:
    """The week's availability, score, failures, maintenance, slow queries, growth, warnings and capacity."""
    return publish.weekly_run(run.config, records(run.config), datetime.now(UTC), run.host)


@maintenance_task("reports.capacity", impact="none", soft_time_limit=300, time_limit=360, max_retries=1)
def capacity(run: RunContext) -> Result:
    """Trend and projection per size series; warning when a limit is 30 days away, critical at 7."""
    return publish.capacity_run(run.config, records(run.config), datetime.now(UTC), run.host)
