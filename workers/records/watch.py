"""What the watchdog reads and keeps: the newest runs of each scheduled entry, runs that
ran into their hard time limit or are still ``running``, the entries it watches (with
when it first saw each, so an entry added today is not "missed" for yesterday), the open
findings in the alert state, and the newest run of a task (``maintd status --check``).

Every query takes ``now``: the watchdog's clock is an argument, so tests move it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg2.extensions

from workers.records.connection import ResultsDatabase, rows

RunKey = tuple[str, str | None]
_COLUMNS = "r.id, r.task_id, r.task, r.target, r.status, r.summary, r.error, r.attempt, r.worker," \
           " r.started_at, r.finished_at, r.duration_s"
# The messages ``workers.taskdef`` records when Celery killed a run at its hard time limit,
# and when a run stopped at its soft limit. The second can also be the last word of a run
# killed at its hard limit: the dying process may still record its soft-limit failure after
# the worker closed the row (then its duration is at least the hard limit).
HARD_LIMIT_PREFIX = "hard time limit"
SOFT_LIMIT_PREFIX = "soft time limit"


class WatchLog:
    def __init__(self, db: ResultsDatabase) -> None:
        self.db = db

    def touch_entries(self, entries: Sequence[tuple[str, str]], now: datetime) -> dict[str, datetime]:
        """Record the watched entries (name, cron); returns when each was first seen with its
        current cron. Entries no longer scheduled are forgotten (they start afresh if they return)."""
        names = [name for name, _ in entries]

        def do(cur: psycopg2.extensions.cursor) -> dict[str, datetime]:
            cur.execute("DELETE FROM maintd_watch_entries WHERE NOT (entry = ANY(%s))", (names,))
            if not entries:
                return {}
            cur.execute(
                "INSERT INTO maintd_watch_entries (entry, cron, first_seen)"
                " SELECT * FROM unnest(%s::text[], %s::text[], array_fill(%s::timestamptz, ARRAY[%s]))"
                " ON CONFLICT (entry) DO UPDATE SET cron = EXCLUDED.cron, first_seen = CASE"
                " WHEN maintd_watch_entries.cron = EXCLUDED.cron"
                " THEN least(maintd_watch_entries.first_seen, EXCLUDED.first_seen) ELSE EXCLUDED.first_seen END"
                " RETURNING entry, first_seen",
                (names, [cron for _, cron in entries], now, len(entries)))
            return {entry: first for entry, first in cur.fetchall()}

        return self.db.execute(do)

    def recent_runs(self, keys: Sequence[RunKey], now: datetime, per_entry: int = 30) -> dict[RunKey, list[dict[str, Any]]]:
        """The newest ``per_entry`` runs (dry runs left out) of each (task, target) started at or
        before ``now``, newest first. One index scan per key (``maintd_runs_task_target``)."""
        targeted = [(t, g) for t, g in keys if g is not None]
        bare = sorted({t for t, g in keys if g is None})
        sql = (f"SELECT {_COLUMNS} FROM unnest(%(tasks)s::text[], %(targets)s::text[]) AS e(task, target)"
               f" CROSS JOIN LATERAL (SELECT * FROM maintd_runs r WHERE r.task = e.task AND r.target = e.target"
               f" AND NOT r.dry_run AND r.started_at <= %(now)s ORDER BY r.started_at DESC LIMIT %(n)s) r"
               f" UNION ALL"
               f" SELECT {_COLUMNS} FROM unnest(%(bare)s::text[]) AS e(task)"
               f" CROSS JOIN LATERAL (SELECT * FROM maintd_runs r WHERE r.task = e.task AND r.target IS NULL"
               f" AND NOT r.dry_run AND r.started_at <= %(now)s ORDER BY r.started_at DESC LIMIT %(n)s) r")
        params = {"tasks": [t for t, _ in targeted], "targets": [g for _, g in targeted], "bare": bare,
                  "now": now, "n": per_entry}
        out: dict[RunKey, list[dict[str, Any]]] = {k: [] for k in keys}
        found: list[dict[str, Any]] = self.db.execute(lambda cur: rows(cur, sql, params), transaction=False)
        for row in found:
            out.setdefault((row["task"], row["target"]), []).append(row)
        for runs in out.values():
            runs.sort(key=lambda r: (r["started_at"], r["id"]), reverse=True)
        return out

    def stuck_candidates(self, now: datetime, since: datetime) -> list[dict[str, Any]]:
        """Runs of any task that are the newest of their (task, target) and either still
        ``running`` or ended by the hard time limit (since ``since``): the caller compares
        each with its task's limit. Partial indexes keep this cheap at millions of rows."""
        sql = (f"SELECT {_COLUMNS} FROM maintd_runs r"
               f" WHERE ((r.status = 'running' AND r.started_at <= %(now)s)"
               f"     OR (r.status = 'failed' AND r.started_at >= %(since)s AND r.started_at <= %(now)s"
               f"         AND (r.error LIKE %(prefix)s OR r.error LIKE %(soft)s)))"
               f" AND NOT r.dry_run AND NOT EXISTS (SELECT 1 FROM maintd_runs n WHERE n.task = r.task"
               f"   AND n.target IS NOT DISTINCT FROM r.target AND NOT n.dry_run"
               f"   AND n.started_at > r.started_at AND n.started_at <= %(now)s)"
               f" ORDER BY r.started_at")
        return self.db.execute(lambda cur: rows(cur, sql, {"now": now, "since": since,
                                                             "prefix": HARD_LIMIT_PREFIX + "%",
                                                             "soft": SOFT_LIMIT_PREFIX + "%"}),
                               transaction=False)

    def open_findings(self, task: str) -> dict[str, str]:
        """Alert-state keys (targets) of ``task`` whose last observed status is not ok."""
        found: list[dict[str, Any]] = self.db.execute(lambda cur: rows(
            cur, "SELECT target, status FROM maintd_alert_state WHERE task = %s AND status <> 'ok'", (task,)),
            transaction=False)
        return {r["target"]: r["status"] for r in found}

    def last_run(self, task: str) -> dict[str, Any] | None:
        """The newest finished (not ``running``), non-dry run of ``task``."""
        found = self.db.execute(lambda cur: rows(
            cur, f"SELECT {_COLUMNS} FROM maintd_runs r WHERE r.task = %s AND r.status <> 'running'"
                 " AND NOT r.dry_run ORDER BY r.started_at DESC, r.id DESC LIMIT 1", (task,)),
            transaction=False)
        return found[0] if found else None
