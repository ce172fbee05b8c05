"""Alerts about runs themselves rather than about their targets: a lost run that will not run
again on its own, and a scheduled entry that keeps not running (skipped or deferred N times
in a row). Both go through the one state machine (``observe``), so a later good run sends the
recovery and reminders follow the usual cadence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from workers.alerts import observe_safely
from workers.catalog import SPECS, is_repeatable
from workers.config import Config
from workers.errors import first_line
from workers.records import Records
from workers.records.runs import NOT_RUN

logger = logging.getLogger(__name__)


def report_lost(config: Config, rows: Iterable[dict[str, Any]], why: str, host: str, *,
                always: bool = False) -> list[str]:
    """Alert (critical) for each lost run that nothing will run again on its own: its task is
    not repeatable (or ``always``: it was not retried). Returns the runs alerted on."""
    alerted = []
    for row in rows:
        spec = SPECS.get(row["task"])
        repeatable = spec is not None and is_repeatable(spec, config)
        if repeatable and not always:
            continue
        tail = (f"; {row['task']} is not repeatable: it is not run again until a person dispatches it"
                if not repeatable else "; it was not retried")
        observe_safely(config, row["task"], row.get("target"), "failed",
                       f"run {str(row['task_id'])[:8]} lost: {why}{tail}", host)
        alerted.append(f"{row['task']}[{row.get('target') or ''}]")
    return alerted


def watch_streak(config: Config, book: Records, task: str, target: str | None, status: str, host: str) -> None:
    """After a scheduled run ended ``skipped`` or ``deferred``: a warning once ``[alerting]
    skip_streak`` firings of the entry in a row did not do their work."""
    if status not in NOT_RUN:
        return
    try:
        count, last = book.runs.not_run_streak(task, target)
    except Exception as exc:  # noqa: BLE001 - alerting never fails the run
        logger.warning("could not count %s[%s]'s skipped runs: %s", task, target, first_line(exc))
        return
    if count >= config.alerting.skip_streak:
        observe_safely(config, task, target, "warning",
                       f"{count} scheduled runs in a row did not run (skipped or deferred); last: {last}"[:500], host)
