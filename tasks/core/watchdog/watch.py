"""One watchdog run: the expanded schedule and the records in, findings out; each finding
goes through the alert state machine under its own key (``<kind>:<entry>``), so it alerts
once when it appears (then the usual reminders) and once when it clears — not on every
watchdog run; then the dead-man ping.

``watch`` takes ``now``: the tests move the clock; the task passes the real one.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from tasks.core.watchdog import detect
from tasks.core.watchdog.ping import ping
from workers.alerts import observe
from workers.catalog import load_catalog
from workers.config import Config
from workers.errors import first_line
from workers.records import Records
from workers.records.outcome import SEVERITY_RANK, Result, worst
from workers.schedule import expand

logger = logging.getLogger(__name__)

TASK = "watchdog.schedule"
STUCK_LOOKBACK = timedelta(days=8)  # a run killed at its hard limit stays a finding until a newer run (or 8 days)
RUNS_PER_ENTRY = 30


def hard_limit_s(config: Config, task: str) -> float | None:
    spec = load_catalog().get(task)
    if spec is None:
        return None
    override = config.tasks.get(task)
    return float(override.time_limit if override and override.time_limit else spec.time_limit)


def _configured(config: Config, task: str, target: str | None) -> bool:
    spec = load_catalog().get(task)
    if spec is None or spec.target_kind is None or target is None:
        return spec is not None
    return any(t.name == target for t in getattr(config, spec.target_kind))


def watched(config: Config, book: Records, now: datetime) -> list[detect.Watched]:
    """The scheduled entries the watchdog watches (itself and ``ignore`` left out)."""
    policy = config.watchdog
    entries = [e for e in expand(config) if e.task != TASK and not policy.ignored(e.task, e.name)]
    first_seen = book.watch.touch_entries([(e.name, e.cron) for e in entries], now)
    return [detect.Watched(e.name, e.task, e.target, e.cron, e.expires_s, first_seen.get(e.name, now))
            for e in entries]


def watch(config: Config, book: Records, now: datetime) -> tuple[list[detect.Finding], int]:
    """Every finding at ``now``, and how many entries were watched."""
    policy = config.watchdog
    entries = watched(config, book, now)
    runs = book.watch.recent_runs([(w.task, w.target) for w in entries], now, RUNS_PER_ENTRY)
    findings: list[detect.Finding] = []
    for w in entries:
        history = runs.get((w.task, w.target), [])
        for found in (detect.missed(w, history, now, policy), detect.late(w, history, policy),
                      detect.failing(w, history, policy), detect.too_short(w, history, policy)):
            if found is not None:
                findings.append(found)
    candidates = book.watch.stuck_candidates(now, now - STUCK_LOOKBACK)
    histories = book.watch.recent_runs([(r["task"], r["target"]) for r in candidates], now, RUNS_PER_ENTRY)
    for row in candidates:
        limit = hard_limit_s(config, row["task"])
        if limit is None or policy.ignored(row["task"], detect.entry_name(row["task"], row["target"])):
            continue
        if not _configured(config, row["task"], row["target"]):
            continue  # a target since removed from the config: its old runs are not watched
        found = detect.stuck(row, limit, now, policy, histories.get((row["task"], row["target"]), []))
        if found is not None:
            findings.append(found)
    findings.sort(key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), f.kind, f.entry))
    return findings, len(entries)


def notify(config: Config, book: Records, findings: list[detect.Finding], host: str) -> list[str]:
    """Observe each finding under its own key, and ``ok`` for every open key not found now
    (its recovery). Returns the alerts sent, as ``kind key``."""
    sent: list[str] = []

    def observe_one(key: str, status: str, summary: str) -> None:
        try:
            alert = observe(config, TASK, key, status, summary, host, book=book)
        except Exception as exc:  # noqa: BLE001 - alerting never fails the watchdog; the next run retries
            logger.error("watchdog alert for %s failed: %s", key, first_line(exc))
            return
        if alert is not None:
            sent.append(f"{alert.kind} {key}")

    current = {f.key for f in findings}
    for f in findings:
        observe_one(f.key, f.severity, f.summary)
    for key in sorted(book.watch.open_findings(TASK)):
        if key and key not in current:  # "" is the watchdog's own run, not a finding
            observe_one(key, "ok", f"{key.partition(':')[2]}: no longer {key.partition(':')[0].replace('_', ' ')}")
    return sent


def summarize(findings: list[detect.Finding], entries: int) -> str:
    if not findings:
        return f"{entries} scheduled entries watched: no missed, late, stuck, repeatedly failing or too-short runs"
    counts = Counter(f.kind for f in findings)
    head = ", ".join(f"{n} {kind.replace('_', '-')}" for kind, n in sorted(counts.items()))
    return f"{head} of {entries} entries: " + "; ".join(f"{f.kind} {f.entry}" for f in findings[:10]) + (
        f"; and {len(findings) - 10} more" if len(findings) > 10 else "")


def run(config: Config, book: Records, now: datetime, host: str) -> Result:
    """The whole watchdog run: findings, their alerts, the dead-man ping."""
    fail_rank = SEVERITY_RANK[config.watchdog.ping_fail_on]
    try:
        findings, entries = watch(config, book, now)
    except Exception as exc:
        ping(config, True, f"maintd watchdog could not read its records: {first_line(exc)}")
        raise
    sent = notify(config, book, findings, host)
    summary = summarize(findings, entries)
    pinged = ping(config, any(SEVERITY_RANK[f.severity] >= fail_rank for f in findings),
                  summary + "\n\n" + "\n".join(f.summary for f in findings))
    metrics: dict[str, Any] = {
        "entries": entries, "findings": [f.as_dict() for f in findings],
        "counts": dict(Counter(f.kind for f in findings)), "alerts": sent, "ping": pinged, "now": now.isoformat(),
    }
    status = worst(f.severity for f in findings)
    return Result(status, summary + ("" if pinged == "not configured" else f" ({pinged})"), metrics)
