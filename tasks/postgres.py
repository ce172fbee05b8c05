"""PostgreSQL maintenance tasks: thin Celery shells over ``tasks.core.postgres`` (Celery-free).

From a Python shell::

    from tasks.postgres import vacuum_bloated
    vacuum_bloated.delay("main", dry_run=True).get(timeout=60)

Impacts follow DESIGN.md. A run that backs off under live load (admission) ends
``deferred`` with a ``not_before`` of ``[postgres.admission] backoff_s`` from now; the gate
records it and it is released then (a window gate still applies when it comes back).
"""

from __future__ import annotations

import logging

from tasks.core.postgres import analyze as pg_analyze
from tasks.core.postgres import indexes as pg_indexes
from tasks.core.postgres import long_queries as pg_long
from tasks.core.postgres import reindex as pg_reindex
from tasks.core.postgres import retention as pg_retention
from tasks.core.postgres import slow_queries as pg_slow
from tasks.core.postgres import stats as pg_stats
from tasks.core.postgres import vacuum as pg_vacuum
from tasks.core.postgres import vacuum_full as pg_vacuum_full
from workers.config import PostgresTarget
from workers.records.outcome import Result, RunContext
from workers.taskdef import maintenance_task

logger = logging.getLogger(__name__)


@maintenance_task("postgres.analyze", impact="low", target="postgres", soft_time_limit=1800, time_limit=1860)
def analyze(run: RunContext, target: PostgresTarget) -> Result:
    """ANALYZE the database, or the configured analyze_tables."""
    return pg_analyze.analyze(run, target)


@maintenance_task("postgres.vacuum_bloated", impact="low", target="postgres", soft_time_limit=3600, time_limit=3660)
def vacuum_bloated(run: RunContext, target: PostgresTarget) -> Result:
    """VACUUM (ANALYZE) tables over the dead-tuple thresholds, most bloated first, within a time budget."""
    return pg_vacuum.vacuum_bloated(run, target)


@maintenance_task("postgres.vacuum_full", impact="high", target="postgres", soft_time_limit=13800, time_limit=14400,
                  max_retries=2)
def vacuum_full(run: RunContext, target: PostgresTarget) -> Result:
    """Rewrite configured or badly bloated tables with VACUUM FULL (window, lock, free-disk check)."""
    return pg_vacuum_full.vacuum_full(run, target)


@maintenance_task("postgres.reindex", impact="medium", target="postgres", soft_time_limit=7200, time_limit=7260)
def reindex(run: RunContext, target: PostgresTarget) -> Result:
    """REINDEX INDEX CONCURRENTLY invalid and bloated indexes; drop leftovers of interrupted rebuilds."""
    return pg_reindex.reindex(run, target)


@maintenance_task("postgres.unused_indexes", impact="none", target="postgres", soft_time_limit=120, time_limit=150)
def unused_indexes(run: RunContext, target: PostgresTarget) -> Result:
    """Report indexes never scanned and over the size floor (never drops)."""
    return pg_indexes.unused_indexes(run, target)


@maintenance_task("postgres.slow_queries", impact="none", target="postgres", soft_time_limit=120, time_limit=150)
def slow_queries(run: RunContext, target: PostgresTarget) -> Result:
    """Top statements by mean and total time from pg_stat_statements."""
    return pg_slow.slow_queries(run, target)


@maintenance_task("postgres.long_queries", impact="none", target="postgres", soft_time_limit=60, time_limit=90,
                  max_retries=1)
def long_queries(run: RunContext, target: PostgresTarget, terminate: bool = False) -> Result:
    """Report long queries and transactions; terminate allowed ones only with terminate=true."""
    return pg_long.long_queries(run, target, terminate=terminate)


@maintenance_task("postgres.retention", impact="medium", target="postgres", soft_time_limit=3600, time_limit=3660)
def retention(run: RunContext, target: PostgresTarget) -> Result:
    """Archive-then-delete expired rows per retention policy, in short batches."""
    return pg_retention.retention(run, target)


@maintenance_task("postgres.stats", impact="none", target="postgres", soft_time_limit=300, time_limit=360)
def stats(run: RunContext, target: PostgresTarget) -> Result:
    """Sizes, connections, cache hit ratio and XID age, kept in history for capacity planning."""
    return pg_stats.stats(run, target)


# Not repeatable: a reset re-run on its own hours later (redelivery after a lost worker) would
# wipe hours of statistics nobody asked to lose. VACUUM FULL and retention are repeatable: each
# table rewrite / batch is one transaction (a lost run leaves nothing half-done), a re-run
# re-plans from what is there now, and VACUUM FULL waits for its window again.
@maintenance_task("postgres.stats_reset", impact="low", target="postgres", soft_time_limit=120, time_limit=150,
                  repeatable=False)
def stats_reset(run: RunContext, target: PostgresTarget, all_counters: bool = False) -> Result:
    """Reset pg_stat_statements (and, with all_counters=true, the database's statistics)."""
    return pg_stats.stats_reset(run, target, all_counters=all_counters)
