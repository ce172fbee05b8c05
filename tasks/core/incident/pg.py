"""The PostgreSQL part of a snapshot: sessions with their waits and blocking chains, lock
waits and counts, the longest transactions, replication (standbys or the replica's own
lag, and slots). Every query lives in ``workers.doors.pg_activity``.

One connection, ``statement_timeout`` = the probe timeout; a query that fails is recorded
in ``errors`` and the others still run (a partial picture beats none).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg2

from tasks.core.incident.mask import mask_query
from workers.config import PostgresTarget
from workers.doors import pg_activity as sql
from workers.doors import postgres as db

APPLICATION_NAME = "maintd:incident.capture"
ROWS = 100
MAX_DEPTH = 10


def _num(v: Any) -> Any:
    return round(v, 1) if isinstance(v, float) else v


def blocking_chains(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trees of who blocks whom, from each session's ``blocked_by`` (pure).

    Roots are blockers not blocked themselves (in a lock cycle, the lowest pid). Each node
    carries the session's state and query; ``waiting`` counts every session under a root.
    """
    by_pid = {s["pid"]: s for s in sessions}
    blocks: dict[int, list[int]] = defaultdict(list)
    for s in sessions:
        for b in s.get("blocked_by") or []:
            blocks[b].append(s["pid"])
    roots = [b for b in blocks if not (by_pid.get(b, {}).get("blocked_by"))]
    if not roots and blocks:
        roots = [min(blocks)]

    def node(pid: int, seen: frozenset[int], depth: int) -> dict[str, Any]:
        s = by_pid.get(pid, {})
        kids = [node(k, seen | {k}, depth + 1) for k in sorted(set(blocks.get(pid, [])))
                if k not in seen and depth < MAX_DEPTH]
        return {"pid": pid, "state": s.get("state"), "application_name": s.get("application_name"),
                "user_name": s.get("user_name"), "wait_event": s.get("wait_event"),
                "xact_age_s": _num(s.get("xact_age_s")), "query": s.get("query"), "blocks": kids,
                "waiting": sum(1 + k["waiting"] for k in kids)}

    trees = [node(r, frozenset({r}), 0) for r in roots]
    return sorted(trees, key=lambda t: -t["waiting"])


def _rows(conn: psycopg2.extensions.connection, query: str, errors: dict[str, str], name: str,
          params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    try:
        found = db.query(conn, query, params)
    except psycopg2.Error as exc:
        errors[name] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return []
    return [{k: _num(v) for k, v in r.items()} for r in found]


def snapshot(target: PostgresTarget, timeout_s: float) -> dict[str, Any]:
    """What the runbooks ask for first on a PostgreSQL incident. Raises when unreachable."""
    conn = db.connect(target.dsn, application_name=APPLICATION_NAME, connect_timeout_s=timeout_s,
                      statement_timeout_s=timeout_s, lock_timeout_s=min(2.0, timeout_s), password=target.password)
    errors: dict[str, str] = {}
    try:
        server = (_rows(conn, sql.INCIDENT_SERVER_SQL, errors, "server") or [{}])[0]
        by_state = _rows(conn, sql.CONNECTIONS_SQL, errors, "connections")
        sessions = _rows(conn, sql.INCIDENT_SESSIONS_SQL, errors, "sessions", {"limit": ROWS})
        waits = _rows(conn, sql.INCIDENT_LOCK_WAITS_SQL, errors, "lock_waits", {"limit": ROWS})
        counts = _rows(conn, sql.INCIDENT_LOCK_COUNTS_SQL, errors, "lock_counts")
        longest = _rows(conn, sql.INCIDENT_LONGEST_TX_SQL, errors, "longest_transactions", {"limit": 10})
        replication: dict[str, Any] = {"role": "replica" if server.get("in_recovery") else "primary"}
        if server.get("in_recovery"):
            replication["replica"] = (_rows(conn, sql.INCIDENT_REPLICA_SQL, errors, "replica") or [{}])[0]
        else:
            replication["standbys"] = _rows(conn, sql.INCIDENT_STANDBYS_SQL, errors, "standbys")
        replication["slots"] = _rows(conn, sql.INCIDENT_SLOTS_SQL, errors, "slots")
    finally:
        conn.close()
    for r in sessions + longest:
        r["query"] = mask_query(r.get("query"), target)
    return {"dsn": target.dsn.masked, "server": server, "connections_by_state": by_state,
            "sessions": sessions, "blocking_chains": blocking_chains(sessions), "lock_waits": waits,
            "lock_counts": counts, "longest_transactions": longest, "replication": replication,
            "errors": errors}
