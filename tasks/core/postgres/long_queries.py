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

from tasks.core.postgres.session import APP_PREFIX, maintenance_session
from workers.config import PostgresTarget
from workers.doors import postgres as db
from workers.doors.pg_activity import SESSIONS_SQL, TERMINATE_SQL
from workers.records.outcome import Result, RunContext, grade, worst

logger = logging.getLogger(__name__)

_LITERAL = re.compile(r"[Ee]'(?:\\.|''|[^'\\])*(?:'|$)|[UuBbXx]?'(?:''|[^'])*(?:'|$)"
                      r"|\$([A-Za-z_]*)\$.*?(?:\$\1\$|$)", re.S)


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
    own: bool = False  # maintd's own session (application_name maintd:...): listed, never graded

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


def mask_literals(text: str) -> str:
    """SQL text with every string literal (plain, E'', U&'', B'', X'', dollar-quoted) blanked to
    ``'?'``: they may hold secrets (ALTER ROLE ... PASSWORD) or personal data."""
    return _LITERAL.sub("'?'", text)


def masked(query: str) -> str:
    """Query text with string literals blanked, shortened for a summary."""
    return mask_literals(query)[:200]


def sessions(conn: psycopg2.extensions.connection, min_age_s: float) -> list[LongSession]:
    rows = db.query(conn, SESSIONS_SQL, {"min_age": min_age_s})
    return [LongSession(int(r["pid"]), r["user_name"] or "", r["application_name"] or "", r["state"],
                        float(r["age_s"]), bool(r["superuser"]), r["backend_start"], r["xact_start"],
                        masked(r["query"] or ""), bool(r.get("own"))) for r in rows]


def long_queries(run: RunContext, target: PostgresTarget, terminate: bool = False) -> Result:
    """Report long-running queries and transactions; optionally terminate allowed ones."""
    warn_s, crit_s = run.config.thresholds.pg_long_transaction_s
    actions: list[str] = []
    terminated: list[dict[str, Any]] = []
    with maintenance_session(target, run.task) as conn:
        seen = sessions(conn, warn_s)
        # maintd's own sessions (the backup's snapshot transaction, pg_dump, VACUUM FULL) are long
        # by design and under their own time limits: listed, not graded, never terminated.
        found = [s for s in seen if not s.own]
        ours = [s for s in seen if s.own]
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
                               "thresholds_s": [warn_s, crit_s],
                               "maintd_sessions": [{"pid": s.pid, "application": s.application, "state": s.state,
                                                    "age_s": round(s.age_s, 1)} for s in ours]}
    if terminate and not run.dry_run:
        metrics["escalated_impact"] = "high"
    status = worst(grade(s.age_s, (warn_s, crit_s)) for s in found)
    if not found:
        note = f" (maintd's own, not graded: {len(ours)})" if ours else ""
        return Result("ok", f"no session active or in a transaction for {warn_s / 60:g} min or more{note}", metrics,
                      actions)
    oldest = found[0]
    summary = f"{len(found)} long session(s); oldest {oldest.label()}"
    if terminated:
        summary += f"; terminated {len(terminated)}"
    elif run.dry_run and actions:
        summary += f"; would terminate {len(actions)}"
    return Result(status, summary, metrics, actions)
