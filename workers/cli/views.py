"""Human-readable views for the CLI: config summary, schedule, status."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from workers.config import Config


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
    print_stop_grace(config)
    print()
    print_schedule(config)


def _hms(seconds: float) -> str:
    h, rest = divmod(int(seconds), 3600)
    return f"{h}h{rest // 60:02d}m{rest % 60:02d}s" if h else f"{rest // 60}m{rest % 60:02d}s"


def print_stop_grace(config: Config) -> None:
    """How long stopping a worker may wait for its running tasks (each lane's longest hard limit)."""
    from workers.processes.profiles import lane_grace_s, stop_grace_s

    fast, slow = lane_grace_s(config, "fast"), lane_grace_s(config, "slow")
    longest = stop_grace_s(config)
    print(f"\nstop grace (a stop lets running tasks finish): fast lane {_hms(fast)}, slow lane {_hms(slow)};"
          f" systemd TimeoutStopSec and compose stop_grace_period must be at least {longest}s ({_hms(longest)})")


def print_schedule(config: Config, seen: dict[tuple[str, str | None], float] | None = None) -> None:
    """The beat entries, then the entries that overlap on one target (at the durations ``seen`` in
    history, typical ones otherwise): the later one waits for the lock."""
    from workers.schedule import expand, missing_tasks, overlaps

    entries = expand(config)
    missing = missing_tasks()
    found = overlaps(config, entries, seen)
    flagged = {o.first for o in found} | {o.second for o in found}
    now = datetime.now(timezone.utc)
    print(f"{len(entries)} schedule entr{'y' if len(entries) == 1 else 'ies'} (UTC):")
    print(f"  {'ENTRY':40} {'CRON':16} {'QUEUE':22} {'IMPACT':7} {'EXPIRES':>8}  NEXT RUN")
    for e in entries:
        mark = " *overlap" if e.name in flagged else ""
        print(f"  {e.name:40} {e.cron:16} {e.queue:22} {e.impact:7} {e.expires_s:>7}s  {e.next_run(now):%Y-%m-%d %H:%M}"
              f"{mark}")
    if found:
        print(f"\n{len(found)} overlap(s) on one target (at {'recent' if seen else 'typical'} durations; the later run"
              " waits for the lock until its expiry — stagger them in [schedule]):")
        for o in found:
            same = " (runs longer than its interval)" if o.first == o.second else ""
            print(f"  {o.second} at {o.second_at:%a %H:%M} overlaps {o.first} ({o.first_at:%a %H:%M}-"
                  f"{o.first_until:%H:%M}) on {o.scope}{same}")
    if missing:
        print(f"\n{len(missing)} default cron(s) in beat_schedule.py name a task that does not exist (not scheduled):")
        for task, cron in missing.items():
            print(f"  {task:40} {cron}")


def _age(ts: datetime | None) -> str:
    if ts is None:
        return "-"
    secs = (datetime.now(timezone.utc) - ts).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.0f}{unit} ago"
    return f"{secs:.0f}s ago"


def status_document() -> dict[str, Any]:
    """Workers (from their liveness marks: no broadcast, no reply keys left in the broker), the
    latest outcome of each task and target, and the deferred runs."""
    from workers.cli.queues import queue_states, unconsumed
    from workers.config import get_config
    from workers.doors.redis import alive_client, alive_nodes
    from workers.records import records

    config = get_config()
    book = records(config)
    latest = book.runs.latest()
    nodes = alive_nodes(alive_client(config))
    queues = queue_states(config, nodes)
    return {"workers": sorted(nodes), "latest": latest, "deferred": book.deferred.pending(),
            "queues": [q.as_dict() for q in queues if q.messages or q.consumers],
            "unconsumed": [q.as_dict() for q in unconsumed(queues)]}


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
    if doc["unconsumed"]:
        print("\nqueues with messages and no consumer (no live worker serves them: start one for that role/host):")
        for q in doc["unconsumed"]:
            print(f"  {q['queue']}: {q['messages']} message(s)")
    if doc["deferred"]:
        print("\ndeferred:")
        for d in doc["deferred"]:
            if d.get("waiting_for") == "lock":  # the reason names the holder and when the wait ends
                print(f"  {d['task']}[{d['target']}] {d['reason']}")
            else:
                print(f"  {d['task']}[{d['target']}] until {d['not_before']:%Y-%m-%d %H:%M}Z: {d['reason']}")
    return worst
