"""``health.postgres``: connect latency, version, connections, long transactions, cache
hit ratio and, on a replica, replication lag — graded against ``Thresholds``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg2
import psycopg2.extensions

from tasks.core.findings import Findings, unreachable
from tasks.core.health.common import wait_s
from tasks.core.units import human_seconds, percent
from workers.config import PostgresTarget, Thresholds
from workers.doors import postgres as db
from workers.doors.pg_activity import LONGEST_TX_SQL, SERVER_SQL
from workers.errors import MaintdError, first_line
from workers.records.outcome import Result

logger = logging.getLogger(__name__)

APPLICATION_NAME = "maintd:health.postgres"
STATEMENT_TIMEOUT_S = 10.0
# Below this many block accesses since the statistics reset, a hit ratio says nothing
# (a fresh database reads its catalog from disk once).
MIN_CACHE_SAMPLE = 10_000

# Transactions of this database's client sessions, oldest first; our own session excluded.
# Zero when the replica has replayed everything it received, else the age of the last
# replayed commit (NULL until the first one).
LAG_SQL = """
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END::float8 AS lag_s
"""


@dataclass(frozen=True)
class PgSnapshot:
    """What one visit to a PostgreSQL server saw."""

    connect_ms: float
    version: str
    connections: int
    max_connections: int
    blks_hit: int = 0
    blks_read: int = 0
    idle_in_transaction: int = 0
    longest_tx_s: float | None = None
    longest_tx_state: str | None = None
    longest_tx_pid: int | None = None
    longest_tx_application: str | None = None
    in_recovery: bool = False
    replication_lag_s: float | None = None

    @property
    def cache_hit_ratio(self) -> float | None:
        total = self.blks_hit + self.blks_read
        return round(self.blks_hit / total, 4) if total else None

    @property
    def cache_sample_ok(self) -> bool:
        return self.blks_hit + self.blks_read >= MIN_CACHE_SAMPLE


def collect(conn: psycopg2.extensions.connection, connect_ms: float) -> PgSnapshot:
    """Read the server's state over an open connection."""
    server = db.query(conn, SERVER_SQL)[0]
    longest = db.query(conn, LONGEST_TX_SQL)
    lag = db.query(conn, LAG_SQL)[0]["lag_s"] if server["in_recovery"] else None
    tx = longest[0] if longest else {}
    return PgSnapshot(
        connect_ms=round(connect_ms, 1), version=server["version"], connections=server["connections"],
        max_connections=server["max_connections"], blks_hit=int(server["blks_hit"] or 0),
        blks_read=int(server["blks_read"] or 0), idle_in_transaction=server["idle_in_transaction"],
        longest_tx_s=round(tx["age_s"], 1) if tx else None, longest_tx_state=tx.get("state"),
        longest_tx_pid=tx.get("pid"), longest_tx_application=tx.get("application_name"),
        in_recovery=bool(server["in_recovery"]),
        replication_lag_s=round(lag, 1) if lag is not None else None,
    )


def assess(snap: PgSnapshot, thresholds: Thresholds) -> Result:
    """Grade a snapshot: pure, so the thresholds are tested with tables of cases."""
    found = Findings()
    found.grade("connect", snap.connect_ms, thresholds.pg_connect_ms, unit=" ms")
    conn_pct = percent(snap.connections, snap.max_connections)
    found.grade("connections", conn_pct, thresholds.pg_connections_percent, unit="%")
    if snap.longest_tx_s is not None:
        found.grade("longest transaction", snap.longest_tx_s, thresholds.pg_long_transaction_s, unit="s",
                    detail=f"{snap.longest_tx_state}, pid {snap.longest_tx_pid}, "
                           f"application {snap.longest_tx_application or '-'!r}")
    ratio = snap.cache_hit_ratio
    if ratio is not None and snap.cache_sample_ok:
        found.grade("cache hit ratio", ratio, thresholds.pg_cache_hit_ratio, lower_is_worse=True)
    if snap.in_recovery:
        if snap.replication_lag_s is None:
            found.add("warning", "replica has not replayed any transaction yet (lag unknown)")
        else:
            found.grade("replication lag", snap.replication_lag_s, thresholds.pg_replication_lag_s, unit="s")

    parts = [f"{snap.connections}/{snap.max_connections} connections"]
    if ratio is None:
        parts.append("cache hit n/a")
    else:
        parts.append(f"cache hit {ratio * 100:.1f}%" + ("" if snap.cache_sample_ok else " (too few reads to grade)"))
    parts.append(f"longest tx {human_seconds(snap.longest_tx_s)}" if snap.longest_tx_s is not None
                 else "no open transactions")
    if snap.in_recovery:
        lag = "unknown" if snap.replication_lag_s is None else human_seconds(snap.replication_lag_s)
        parts.append(f"replica lag {lag}")
    parts.append(f"connect {snap.connect_ms:.0f} ms")
    role = "replica" if snap.in_recovery else "primary"
    metrics: dict[str, Any] = {**asdict(snap), "connections_percent": conn_pct, "cache_hit_ratio": ratio,
                               "role": role, "reachable": True}
    return found.result(f"PostgreSQL {snap.version} ({role}): " + ", ".join(parts), metrics)


def check(target: PostgresTarget, thresholds: Thresholds) -> Result:
    """Visit ``target`` once and grade what it shows; unreachable is critical."""
    where = {"dsn": target.dsn.masked}
    started = time.monotonic()
    try:
        conn = db.connect(target.dsn, application_name=APPLICATION_NAME,
                          connect_timeout_s=wait_s(target.connect_timeout_s),
                          statement_timeout_s=min(target.statement_timeout_s, STATEMENT_TIMEOUT_S),
                          lock_timeout_s=min(target.lock_timeout_s, STATEMENT_TIMEOUT_S),
                          password=target.password)
    except MaintdError as exc:
        logger.warning("health.postgres[%s]: %s", target.name, first_line(exc))
        return unreachable("PostgreSQL", first_line(exc), where)
    connect_ms = (time.monotonic() - started) * 1000
    try:
        snap = collect(conn, connect_ms)
    except psycopg2.Error as exc:
        reason = first_line(db.classify(exc, target.dsn, "query"))
        return Result("critical", f"PostgreSQL connected but its state could not be read: {reason}",
                      {**where, "reachable": True, "error": reason, "problems": [f"critical: {reason}"]})
    finally:
        conn.close()
    result = assess(snap, thresholds)
    return Result(result.status, result.summary, {**result.metrics, **where})
