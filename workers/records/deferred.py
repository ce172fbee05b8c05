"""Deferred runs (``maintd_deferred``): work that must not run now — outside its target's
window, backing off under live load, or (a scheduled run) waiting for the target's lock —
is recorded here, one row per task and target, and released when due by
``maintd.release_deferred`` (beat runs it every minute). Nothing waits in the broker with a
long ETA (Redis would redeliver it after the visibility timeout).

A run waiting for a lock (``waiting_for = 'lock'``) is due again at once when the lock's
holder lets go (``wake``), else at its re-check time; it is dropped at ``expires_at`` (the
expiry of the beat message that fired it), so a wait never outlives its schedule.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg2.extensions

from workers.errors import PermanentError
from workers.records.connection import ResultsDatabase, rows


class DeferredRuns:
    def __init__(self, db: ResultsDatabase) -> None:
        self.db = db

    def defer(self, task: str, target: str, kwargs: dict[str, Any], not_before: datetime, reason: str, *,
              waiting_for: str = "time", entry: str | None = None, origin: str | None = None,
              expires_at: datetime | None = None) -> None:
        self.db.execute(lambda cur: cur.execute(
            "INSERT INTO maintd_deferred (task, target, kwargs, not_before, reason, waiting_for, entry, origin,"
            " expires_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " ON CONFLICT (task, target) DO UPDATE SET kwargs = EXCLUDED.kwargs,"
            " not_before = EXCLUDED.not_before, reason = EXCLUDED.reason, deferred_at = now(),"
            " waiting_for = EXCLUDED.waiting_for, entry = EXCLUDED.entry, origin = EXCLUDED.origin,"
            " expires_at = EXCLUDED.expires_at",
            (task, target, json.dumps(kwargs), not_before, reason, waiting_for, entry, origin, expires_at)))

    def pending(self) -> list[dict[str, Any]]:
        return self.db.execute(lambda cur: rows(
            cur, "SELECT task, target, kwargs, not_before, reason, deferred_at, waiting_for, entry, origin,"
                 " expires_at FROM maintd_deferred ORDER BY not_before"))

    def wake(self, target: str) -> int:
        """The runs waiting for ``target``'s lock are due now (its holder just let go)."""
        def do(cur: psycopg2.extensions.cursor) -> int:
            cur.execute("UPDATE maintd_deferred SET not_before = now() WHERE waiting_for = 'lock'"
                        " AND target = %s AND not_before > now()", (target,))
            return int(cur.rowcount)

        return self.db.execute(do, transaction=False)

    def drop_expired(self) -> list[dict[str, Any]]:
        """Remove the lock waits whose message expired; returns them (each becomes a ``skipped`` run)."""
        return self.db.execute(lambda cur: rows(
            cur, "DELETE FROM maintd_deferred WHERE expires_at IS NOT NULL AND expires_at <= now()"
                 " RETURNING task, target, reason, entry, origin, expires_at, deferred_at"))

    def release_due(self, send: Callable[..., Any],
                    on_drop: Callable[[dict[str, Any], str], None] | None = None) -> list[str]:
        """Dispatch every due deferred run with ``send(task, target, kwargs, meta)`` (``meta``:
        entry, origin, expires_at); a row is deleted in the same transaction as its send, so a
        crash re-releases, never loses. A run that can no longer be sent (its target or task
        left the config: ``PermanentError``) is deleted and handed to ``on_drop(row, why)``
        instead of stopping the others."""

        def release(cur: psycopg2.extensions.cursor) -> list[str]:
            cur.execute("SELECT task, target, kwargs, entry, origin, expires_at FROM maintd_deferred"
                        " WHERE not_before <= now() AND (expires_at IS NULL OR expires_at > now())"
                        " ORDER BY not_before FOR UPDATE SKIP LOCKED")
            sent = []
            for task, target, kwargs, entry, origin, expires_at in cur.fetchall():
                meta = {"entry": entry, "origin": origin, "expires_at": expires_at}
                try:
                    send(task, target, kwargs, meta)
                except PermanentError as exc:
                    if on_drop is not None:
                        on_drop({"task": task, "target": target, **meta}, str(exc))
                else:
                    sent.append(f"{task}[{target}]")
                cur.execute("DELETE FROM maintd_deferred WHERE task = %s AND target = %s", (task, target))
            return sent

        return self.db.execute(release)
