"""``postgres.long_queries``: sessions of the target database active, or idle in a
transaction, beyond the warning / critical ages (``[thresholds] pg_long_transaction_s``;
runbook: 5 and 30 minutes).

Terminating is opt-in twice: the run's ``terminate`` flag *and* the target's allow-lists
(``terminate_users``, ``terminate_applications``). Only sessions past the critical age
are terminated, never a superuser's, never a replication connection, never maintd's
own. Each termination is guarded by the session's start and transaction times, so a
reused pid is never hit; each one is listed in ``actions``. Such a run reports
``escalated_impact = "high"`` in its metrics (it stays in the fast lane and takes no
target lock, so a runaway query can be stopped while VACUUM FULL holds the slow lane).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2.extensions

from tasks.pg.session import APP_PREFIX, maintenance_session
from workers import db
from workers.config_model import PostgresTarget
from workers.outcome import Result, RunContext, grade, worst

logger = logging.getLogger(__name__)

SESSIONS_SQL = """
SELECT a.pid, a.usename AS user_name, a.application_name, a.state, a.backend_start, a.xact_start,
       a.query_start, coalesce(r.rolsuper, false) AS superuser, a.backend_type,
       EXTRACT(epoch FROM now() - CASE WHEN a.state = 'active' THEN a.query_start ELSE a.xact_start END)::float8
         AS age_s,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 400) AS query
FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.pid <> pg_backend_pid() AND a.backend_type = 'client backend' AND a.datname = current_database()
  AND a.state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
  AND EXTRACT(epoch FROM now() - CASE WHEN a.state = 'active' THEN a.query_start ELSE a.xact_start END)
      >= %(min_age)s
ORDER BY age_s DESC
"""
_LITERAL = re.compile(r"[Ee]'(?:\\.|''|[^'\\])*(?:'|$)|[UuBbXx]?'(?:''|[^'])*(?:'|$)"
                      r"|\$([A-Za-z_]*)\$.*?(?:\$\1\$|$)", re.S)
TERMINATE_SQL = """
SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity
WHERE pid = %(pid)s AND backend_start = %(backend_start)s AND xact_start IS NOT DISTINCT FROM %(xact_start)s
"""


@dataclass(frozen=True)
class LongSession:
    pid: int
    user: str
    application: str
    state: str
    age_s: float
    superuser: bool
    backend_start: datetime
    xact_start: datetime | None
    query: str

    def label(self) -> str:
        return (f"pid {self.pid} user {self.user!r} app {self.application!r} {self.state}"
                f" {self.age_s / 60:.1f} min: {self.query[:80]}")


def may_terminate(s: LongSession, critical_s: float, users: list[str], applications: list[str]) -> str | None:
    """None when ``s`` may be terminated, else why not (pure)."""
    if s.age_s < critical_s:
        return "below the critical age"
    if s.superuser:
        return "superuser sessions are never terminated"
    if s.application.startswith(APP_PREFIX):
        return "maintd's own session"
    if s.user not in users and s.application not in applications:
        return "not in terminate_users / terminate_applications"
    return None


def masked(query: str) -> str:
    """Query text with string literals blanked: they may hold secrets (ALTER ROLE ... PASSWORD)."""
    return _LITERAL.sub("'?'", query)[:200]


def sessions(conn: psycopg2.extensions.connection, min_age_s: float) -> list[LongSession]:
    rows = db.query(conn, SESSIONS_SQL, {"min_age": min_age_s})
    return [LongSession(int(r["pid"]), r["user_name"] or "", r["application_name"] or "", r["state"],
                        float(r["age_s"]), bool(r["superuser"]), r["backend_start"], r["xact_start"],
                        masked(r["query"] or "")) for r in rows]


def long_queries(run: RunContext, target: PostgresTarget, terminate: bool = False) -> Result:
    """Report long-running queries and transactions; optionally terminate allowed ones."""
    warn_s, crit_s = run.config.thresholds.pg_long_transaction_s
    actions: list[str] = []
    terminated: list[dict[str, Any]] = []
    with maintenance_session(target, run.task) as conn:
        found = sessions(conn, warn_s)
        for s in found:
            if not terminate or may_terminate(s, crit_s, target.terminate_users, target.terminate_applications):
                continue
            statement = f"SELECT pg_terminate_backend({s.pid})  -- {s.label()}"
            if run.dry_run:
                actions.append(statement)
                continue
            done = db.query(conn, TERMINATE_SQL, {"pid": s.pid, "backend_start": s.backend_start,
                                                  "xact_start": s.xact_start})
            if done and done[0]["done"]:
                actions.append(statement)
                terminated.append({"pid": s.pid, "user": s.user, "application": s.application, "age_s": round(s.age_s)})
                logger.warning("terminated %s on %s", s.label(), target.name)
    listed = [{"pid": s.pid, "user": s.user, "application": s.application, "state": s.state,
               "age_s": round(s.age_s, 1), "superuser": s.superuser, "query": s.query} for s in found]
    metrics: dict[str, Any] = {"sessions": listed, "long": len(found), "terminated": terminated,
                               "thresholds_s": [warn_s, crit_s]}
    if terminate and not run.dry_run:
        metrics["escalated_impact"] = "high"
    status = worst(grade(s.age_s, (warn_s, crit_s)) for s in found)
    if not found:
        return Result("ok", f"no session active or in a transaction for {warn_s / 60:g} min or more", metrics, actions)
    oldest = found[0]
    summary = f"{len(found)} long session(s); oldest {oldest.label()}"
    if terminated:
        summary += f"; terminated {len(terminated)}"
    elif run.dry_run and actions:
        summary += f"; would terminate {len(actions)}"
    return Result(status, summary, metrics, actions)
