"""``postgres.analyze``: ANALYZE the whole database, or the configured ``analyze_tables``."""

from __future__ import annotations

import logging

from psycopg2 import sql

from tasks.core.postgres import steps
from tasks.core.postgres.relations import resolve_all
from tasks.core.postgres.session import cap_statement_timeout, maintenance_session, render
from workers.config import PostgresTarget
from workers.records.outcome import Result, RunContext

logger = logging.getLogger(__name__)


def analyze(run: RunContext, target: PostgresTarget) -> Result:
    """ANALYZE the database (or ``analyze_tables``) to refresh planner statistics."""
    budget = run.budget()
    with maintenance_session(target, run.task) as conn:
        rels = resolve_all(conn, target.name, "analyze_tables", target.analyze_tables)
        plan: list[tuple[str, sql.Composable]] = (
            [(str(r), sql.SQL("ANALYZE {}").format(r.ident)) for r in rels] if rels
            else [("database", sql.SQL("ANALYZE"))])
        if run.dry_run:
            return Result("ok", f"plan: {len(plan)} ANALYZE statement(s)", {"planned": len(plan)},
                          [render(conn, s) for _, s in plan])
        tally = steps.Tally("analyzed", planned=len(plan))
        for i, (name, stmt) in enumerate(plan):
            # ANALYZE reads a sample and takes no blocking lock: no admission check needed.
            if not tally.gate(conn, target, budget, remaining=len(plan) - i, check_load=False):
                break
            cap_statement_timeout(conn, target, budget)
            reason, seconds = steps.execute(conn, target, stmt, f"ANALYZE {name}")
            if reason:
                tally.failed(name, reason)
            else:
                tally.did(conn, stmt)
            tally.objects.append({"table": name, "status": "failed" if reason else "done",
                                  "seconds": round(seconds, 3), **({"reason": reason} if reason else {})})
        return tally.result("nothing to analyze")
