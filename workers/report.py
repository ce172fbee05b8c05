"""Human-readable views for the CLI: config summary, schedule, status."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from workers.config_model import Config


def print_config_summary(config: Config) -> None:
    print(f"config ok: host {config.maintd.host}, broker {config.broker.url.masked if config.broker.url else '(embedded)'}"
          f", results {config.results.url.masked if config.results.url else '(embedded)'}")
    targets = config.all_targets()
    print(f"\n{len(targets)} target(s):")
    print(f"  {'KIND':13} {'NAME':20} {'ROLE':4} {'HOST':12} {'WINDOW':24} WHERE")
    for t in targets:
        where = next((str(getattr(t, f)) for f in ("dsn", "url", "path", "address") if getattr(t, f, None)), "")
        print(f"  {t.kind:13} {t.name:20} {t.role:4} {t.pinned_host or '-':12} {'; '.join(t.window) or '-':24} {where}")
    print(f"\n{len(config.alerts)} alert channel(s): "
          + (", ".join(f"{a.name} ({a.kind}, >= {a.min_severity})" for a in config.alerts) or "none"))
    print()
    print_schedule(config)


def print_schedule(config: Config) -> None:
    from workers.schedule import expand

    entries = expand(config)
    now = datetime.now(timezone.utc)
    print(f"{len(entries)} schedule entr{'y' if len(entries) == 1 else 'ies'} (UTC):")
    print(f"  {'ENTRY':40} {'CRON':16} {'QUEUE':22} {'IMPACT':7} {'EXPIRES':>8}  NEXT RUN")
    for e in entries:
        print(f"  {e.name:40} {e.cron:16} {e.queue:22} {e.impact:7} {e.expires_s:>7}s  {e.next_run(now):%Y-%m-%d %H:%M}")


def _age(ts: datetime | None) -> str:
    if ts is None:
        return "-"
    secs = (datetime.now(timezone.utc) - ts).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.0f}{unit} ago"
    return f"{secs:.0f}s ago"


def status_document() -> dict[str, Any]:
    from workers.app import app
    from workers.deferral import pending
    from workers.history import history

    latest = history().latest_per_target()
    replies = app.control.ping(timeout=1.5) or []
    workers = sorted(name for reply in replies for name in reply)
    return {"workers": workers, "latest": latest, "deferred": pending()}


def print_status(as_json: bool = False) -> int:
    doc = status_document()
    worst = 0
    for run in doc["latest"]:
        if run["status"] == "critical":
            worst = max(worst, 2)
        elif run["status"] == "failed":
            worst = max(worst, 3)
    if as_json:
        print(json.dumps(doc, indent=2, default=str))
        return worst
    print(f"workers: {', '.join(doc['workers']) or 'none answering'}")
    print(f"\n{'TASK':26} {'TARGET':18} {'STATUS':9} {'WHEN':10} SUMMARY")
    for run in sorted(doc["latest"], key=lambda r: (r["task"], r["target"] or "")):
        print(f"{run['task']:26} {run['target'] or '-':18} {run['status']:9} {_age(run['finished_at']):10}"
              f" {run['summary'][:100]}")
    if not doc["latest"]:
        print("(no runs recorded yet)")
    if doc["deferred"]:
        print("\ndeferred:")
        for d in doc["deferred"]:
            print(f"  {d['task']}[{d['target']}] until {d['not_before']:%Y-%m-%d %H:%M}Z: {d['reason']}")
    return worst
