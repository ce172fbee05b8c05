"""``maintd alerts test``: send one test alert to every configured channel.

Needs only the config: no broker, no worker. Deliveries are recorded in
``maintd_alert_deliveries`` (task ``maintd.alerts.test``) when the results database
is configured and reachable; otherwise a note says they were not recorded. Exit 0
only if every channel delivered.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from workers.alerts.delivery import deliver, record
from workers.alerts.model import Alert
from workers.alerts.state import channels_for
from workers.config import this_host
from workers.errors import first_line
from workers.records import records

TEST_TASK = "maintd.alerts.test"


def test_main(args: argparse.Namespace) -> int:
    from workers.config import get_config

    config = get_config()
    if not config.alerts:
        print("no alert channels configured (add [[alerts]] to the config)", file=sys.stderr)
        return 1
    host = this_host(config)
    now = datetime.now(UTC)
    alert = Alert(task=TEST_TASK, target="", severity="ok", previous=None, kind="test", status="ok",
                  summary=f"test alert from maintd on {host}; if you can read this, the channel works",
                  host=host, at=now.isoformat(timespec="seconds"))
    deliveries = deliver(config, alert, channels_for(config, alert))
    width = max(len(d.channel) + len(d.kind) for d in deliveries) + 3
    for d in deliveries:
        label = f"{d.channel} ({d.kind})".ljust(width)
        if d.delivered:
            print(f"{label} delivered" + (f" after {d.attempts} attempts" if d.attempts > 1 else ""))
        else:
            print(f"{label} FAILED after {d.attempts} attempt(s): {d.error}")
    if config.results.url is None:
        print("note: no [results] database configured; deliveries not recorded", file=sys.stderr)
    else:
        try:
            recorded = record(records(config), alert, deliveries)
        except Exception as exc:  # noqa: BLE001 - recording is optional here
            print(f"note: deliveries not recorded: {first_line(exc)}", file=sys.stderr)
        else:
            if not recorded:
                print("note: results database unreachable; deliveries not recorded", file=sys.stderr)
    return 0 if all(d.delivered for d in deliveries) else 1
