"""Alert state (``maintd_alert_state``, one row per task and target) and alert deliveries
(``maintd_alert_deliveries``, one row per channel per alert). The statements here run
inside the transaction of ``workers.alerts.state.observe`` (given its cursor) or alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import psycopg2.extensions

from workers.records.connection import ResultsDatabase


class StateRow(NamedTuple):
    status: str
    notified_status: str | None
    notified_at: datetime | None


class DeliveryRow(NamedTuple):
    channel: str
    kind: str
    delivered: bool
    attempts: int
    error: str | None


def lock_state(cur: psycopg2.extensions.cursor, task: str, target: str) -> StateRow | None:
    """The state row, locked until the transaction ends (None on first sight)."""
    cur.execute("SELECT status, notified_status, notified_at FROM maintd_alert_state"
                " WHERE task = %s AND target = %s FOR UPDATE", (task, target))
    row = cur.fetchone()
    return StateRow(*row) if row else None


def insert_state(cur: psycopg2.extensions.cursor, task: str, target: str, status: str, since: datetime) -> bool:
    """Create the row; False when another worker inserted it first (it owns this change)."""
    cur.execute("INSERT INTO maintd_alert_state (task, target, status, since) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (task, target) DO NOTHING RETURNING 1", (task, target, status, since))
    return cur.fetchone() is not None


def set_status(cur: psycopg2.extensions.cursor, task: str, target: str, status: str, since: datetime) -> None:
    cur.execute("UPDATE maintd_alert_state SET status = %s, since = %s WHERE task = %s AND target = %s",
                (status, since, task, target))


def set_notified(cur: psycopg2.extensions.cursor, task: str, target: str, severity: str | None,
                 at: datetime | None, *, only_if_at: datetime | None = None) -> None:
    """Record what was last notified; with ``only_if_at`` a compare-and-set on ``notified_at``."""
    sql = "UPDATE maintd_alert_state SET notified_status = %s, notified_at = %s WHERE task = %s AND target = %s"
    params: tuple[Any, ...] = (severity, at, task, target)
    if only_if_at is not None:
        sql += " AND notified_at = %s"
        params += (only_if_at,)
    cur.execute(sql, params)


def channels_alerted_since_recovery(cur: psycopg2.extensions.cursor, task: str, target: str) -> set[str]:
    """Channels sent a problem or reminder about (task, target) since its last recovery."""
    cur.execute(
        "SELECT DISTINCT channel FROM maintd_alert_deliveries WHERE task = %s AND target = %s"
        " AND reason IN ('problem', 'reminder') AND id > COALESCE((SELECT max(id) FROM maintd_alert_deliveries"
        " WHERE task = %s AND target = %s AND reason = 'recovery'), 0)", (task, target, task, target))
    return {r[0] for r in cur.fetchall()}


class AlertLog:
    def __init__(self, db: ResultsDatabase) -> None:
        self.db = db

    def record_deliveries(self, task: str, target: str, severity: str, reason: str,
                          deliveries: Sequence[DeliveryRow]) -> None:
        def insert(cur: psycopg2.extensions.cursor) -> None:
            for d in deliveries:
                cur.execute(
                    "INSERT INTO maintd_alert_deliveries (task, target, channel, kind, severity, reason, delivered,"
                    " attempts, error) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    (task, target, d.channel, d.kind, severity, reason, d.delivered, d.attempts, d.error))

        if deliveries:
            self.db.execute(insert)

    def keep_delivery_ids(self) -> list[int]:
        """Deliveries pruning never deletes: the newest per (task, target, channel, reason), so
        "which channels heard of this problem since its last recovery" survives any pruning."""
        def do(cur: psycopg2.extensions.cursor) -> list[int]:
            cur.execute("SELECT DISTINCT ON (task, target, channel, reason) id FROM maintd_alert_deliveries"
                        " ORDER BY task, target, channel, reason, id DESC")
            return [int(r[0]) for r in cur.fetchall()]

        return self.db.execute(do, transaction=False)

    def prune_deliveries(self, cutoff: datetime, keep: list[int], batch: int) -> int:
        def do(cur: psycopg2.extensions.cursor) -> int:
            cur.execute("DELETE FROM maintd_alert_deliveries WHERE id IN (SELECT id FROM maintd_alert_deliveries"
                        " WHERE at < %s AND id <> ALL(%s::bigint[]) ORDER BY at LIMIT %s)", (cutoff, keep, batch))
            return int(cur.rowcount)

        return self.db.execute(do)

    def prunable_deliveries(self, cutoff: datetime, keep: list[int]) -> int:
        def do(cur: psycopg2.extensions.cursor) -> int:
            cur.execute("SELECT count(*) FROM maintd_alert_deliveries WHERE at < %s AND id <> ALL(%s::bigint[])",
                        (cutoff, keep))
            row = cur.fetchone()
            return int(row[0]) if row else 0

        return self.db.execute(do, transaction=False)
