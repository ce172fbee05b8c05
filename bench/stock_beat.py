"""The peer of bench/scale.py's beat and dispatch figures: stock Celery (PersistentScheduler, the
default) with the same entries as maintd's schedule, each sent to the same queue with the same
expiry, and nothing of maintd (no router, no headers, no config).

    celery -A bench.stock_beat beat   # $STOCK_BROKER_URL, $STOCK_ENTRIES (a JSON file)
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery
from celery.schedules import crontab


def beat_schedule(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for e in entries:
        minute, hour, dom, month, dow = e["cron"].split()
        out[e["name"]] = {"task": e["task"], "args": tuple(e["args"]),
                          "schedule": crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month,
                                              day_of_week=dow),
                          "options": {"queue": e["queue"], "expires": e["expires_s"]}}
    return out


if not os.environ.get("STOCK_BROKER_URL"):
    raise SystemExit("bench.stock_beat: set $STOCK_BROKER_URL (a scratch Redis: beat sends every due entry there)")
app = Celery("stock", broker=os.environ["STOCK_BROKER_URL"], set_as_current=False)
app.conf.update(timezone="UTC", enable_utc=True, task_serializer="json", accept_content=["json"],
                beat_cron_starting_deadline=600)
if os.environ.get("STOCK_ENTRIES"):
    with open(os.environ["STOCK_ENTRIES"]) as fh:
        app.conf.beat_schedule = beat_schedule(json.load(fh))
