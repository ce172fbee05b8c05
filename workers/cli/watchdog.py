"""``maintd status --check``: is maintd itself alive? For a system cron, a systemd timer or a
monitoring probe (``ops/systemd/maintd-watchdog-check.*``): it needs only the config and the
results database, answers in one line and exits

- 0 when the newest ``watchdog.schedule`` run is younger than ``stale_after_intervals``
  (default 3) of its intervals and did not fail;
- 2 when it is older, or never ran (beat or the db workers are down, or the queue is stuck);
- 3 when the newest run failed (the watchdog cannot read its records);
- 1 on an error (bad config, results database unreachable, the watchdog turned off).
"""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.core.units import human_seconds
from workers.config import get_config
from workers.errors import MaintdError
from workers.records import records
from workers.schedule import expand, interval_s

TASK = "watchdog.schedule"
EXIT_OK, EXIT_STALE, EXIT_FAILED = 0, 2, 3


def check_main(now: datetime | None = None) -> int:
    config = get_config()
    entry = next((e for e in expand(config) if e.task == TASK), None)
    if entry is None:
        raise MaintdError(f"{TASK} is off in [schedule]: nothing watches the schedule, so there is nothing to check")
    now = now or datetime.now(UTC)
    every = interval_s(entry.cron, now)
    stale_after = every * config.watchdog.stale_after_intervals
    last = records(config).watch.last_run(TASK)
    rule = f"every {human_seconds(every)} ('{entry.cron}'), stale after {human_seconds(stale_after)}"
    if last is None:
        print(f"STALE: {TASK} has never run ({rule}): is beat running, and a db worker?")
        return EXIT_STALE
    age = (now - last["started_at"]).total_seconds()
    if age > stale_after:
        print(f"STALE: {TASK} last ran {human_seconds(age)} ago at {last['started_at']:%Y-%m-%d %H:%M:%S}Z ({rule}):"
              f" beat, the db workers or the broker may be down")
        return EXIT_STALE
    if last["status"] == "failed":
        print(f"FAILED: {TASK} ran {human_seconds(age)} ago and failed: {last['error'] or last['summary']}")
        return EXIT_FAILED
    print(f"ok: {TASK} ran {human_seconds(age)} ago ({last['status']}: {last['summary'][:160]}); {rule}")
    return EXIT_OK
