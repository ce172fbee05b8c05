"""Incidents (``maintd_incidents``): one row per incident, opened when an opted-in check
turns critical (inside the alert decision's transaction, so the alert can carry its id)
or ad hoc, then filled by ``incident.capture`` with its snapshot.

States: ``pending`` (opened, capture not started), ``capturing``, ``captured`` (every
probe answered), ``partial`` (some probes failed or timed out: the snapshot says which),
``failed`` (no snapshot: the capture could not be dispatched or crashed; ``error`` says why).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg2.extensions

from workers.records.connection import ResultsDatabase, rows

LIST_COLUMNS = ("id, opened_at, trigger_task, trigger_target, trigger_status, trigger_summary, trigger_host,"
                " state, captured_at, captured_on, summary, error")
DONE = ("captured", "partial")


def open_incident(cur: psycopg2.extensions.cursor, *, task: str | None, target: str | None, status: str | None,
                  summary: str, host: str | None, at: datetime, state: str = "pending") -> int:
    """Insert an incident row; its id. Runs in the caller's transaction."""
    cur.execute("INSERT INTO maintd_incidents (opened_at, trigger_task, trigger_target, trigger_status,"
                " trigger_summary, trigger_host, state) VALUES (%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                (at, task, target, status, summary[:2000], host, state))
    row = cur.fetchone()
    assert row is not None
    return int(row[0])


class IncidentLog:
    def __init__(self, db: ResultsDatabase) -> None:
        self.db = db

    def open(self, *, task: str | None, target: str | None, status: str | None, summary: str,
             host: str | None, at: datetime, state: str = "pending") -> int:
        return self.db.execute(lambda cur: open_incident(cur, task=task, target=target, status=status,
                                                         summary=summary, host=host, at=at, state=state))

    def get(self, incident_id: int) -> dict[str, Any] | None:
        found = self.db.execute(lambda cur: rows(
            cur, f"SELECT {LIST_COLUMNS}, snapshot FROM maintd_incidents WHERE id = %s", (incident_id,)),
            transaction=False)
        return found[0] if found else None

    def newest(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest incidents, without their snapshots."""
        return self.db.execute(lambda cur: rows(
            cur, f"SELECT {LIST_COLUMNS} FROM maintd_incidents ORDER BY opened_at DESC, id DESC LIMIT %s",
            (limit,)), transaction=False)

    def claim(self, incident_id: int, host: str) -> dict[str, Any] | None:
        """Mark the incident ``capturing`` on ``host``; None if it does not exist. An incident
        already captured is returned unchanged (a redelivered capture does not redo it)."""
        def do(cur: psycopg2.extensions.cursor) -> dict[str, Any] | None:
            found = rows(cur, f"SELECT {LIST_COLUMNS} FROM maintd_incidents WHERE id = %s FOR UPDATE",
                         (incident_id,))
            if not found or found[0]["state"] in DONE:
                return found[0] if found else None
            cur.execute("UPDATE maintd_incidents SET state = 'capturing', captured_on = %s, error = NULL"
                        " WHERE id = %s", (host, incident_id))
            return {**found[0], "state": "capturing", "captured_on": host}

        return self.db.execute(do)

    def finish(self, incident_id: int, *, state: str, summary: str, snapshot: dict[str, Any],
               captured_at: datetime) -> None:
        self.db.execute(lambda cur: cur.execute(
            "UPDATE maintd_incidents SET state = %s, summary = %s, snapshot = %s, captured_at = %s WHERE id = %s",
            (state, summary[:2000], json.dumps(snapshot, default=str), captured_at, incident_id)))

    def fail(self, incident_id: int, error: str) -> None:
        """No snapshot will come (dispatch failed, the capture crashed): say why."""
        self.db.execute(lambda cur: cur.execute(
            "UPDATE maintd_incidents SET state = 'failed', error = %s WHERE id = %s AND state NOT IN %s",
            (error[:2000], incident_id, DONE)))
