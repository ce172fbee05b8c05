"""Admission: live-load signals checked before each table or batch of heavy work.

Active sessions, lock waits and the oldest open transaction are counted in the target
database, leaving out maintd's own sessions (``application_name`` ``maintd:%``);
replication lag is the worst replica's replay lag on a primary, the replay delay on a
standby. Over any limit the work backs off: the run ends ``deferred`` with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg2.extensions

from workers.config import AdmissionLimits
from workers.doors import postgres as db
from workers.doors.pg_activity import SIGNALS_SQL

logger = logging.getLogger(__name__)

LAG_SQL = """
SELECT CASE WHEN pg_is_in_recovery()
            THEN EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
            ELSE (SELECT EXTRACT(epoch FROM max(replay_lag))::float8 FROM pg_stat_replication) END AS lag_s
"""


@dataclass(frozen=True)
class LoadSignals:
    active_sessions: int
    lock_waits: int
    oldest_transaction_s: float | None
    replication_lag_s: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"active_sessions": self.active_sessions, "lock_waits": self.lock_waits,
                "oldest_transaction_s": self.oldest_transaction_s, "replication_lag_s": self.replication_lag_s}


def verdict(signals: LoadSignals, limits: AdmissionLimits) -> str | None:
    """Why the work must back off now (every limit passed), or None to go ahead."""
    reasons = []
    if signals.active_sessions > limits.max_active_sessions:
        reasons.append(f"{signals.active_sessions} active sessions > limit {limits.max_active_sessions}")
    if signals.lock_waits > limits.max_lock_waits:
        reasons.append(f"{signals.lock_waits} sessions waiting on locks > limit {limits.max_lock_waits}")
    if signals.oldest_transaction_s is not None and signals.oldest_transaction_s > limits.max_transaction_age_s:
        reasons.append(f"a transaction open {signals.oldest_transaction_s:.0f}s"
                       f" > limit {limits.max_transaction_age_s:.0f}s")
    if signals.replication_lag_s is not None and signals.replication_lag_s > limits.max_replication_lag_s:
        reasons.append(f"replication lag {signals.replication_lag_s:.0f}s"
                       f" > limit {limits.max_replication_lag_s:.0f}s")
    return "; ".join(reasons) or None


def read_signals(conn: psycopg2.extensions.connection) -> LoadSignals:
    row = db.query(conn, SIGNALS_SQL)[0]
    lag = db.query(conn, LAG_SQL)[0]["lag_s"]
    return LoadSignals(int(row["active_sessions"]), int(row["lock_waits"]), row["oldest_transaction_s"], lag)


def refusal(conn: psycopg2.extensions.connection, limits: AdmissionLimits) -> str | None:
    """Check the live load now: the back-off reason, or None."""
    signals = read_signals(conn)
    reason = verdict(signals, limits)
    if reason:
        logger.info("admission refused: %s", reason)
    return f"backing off: {reason}" if reason else None
