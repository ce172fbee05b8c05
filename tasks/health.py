"""Health checks (impact none). Each task is a thin shell over ``tasks.core.health``.

A health check reports, it does not retry: findings (an unreachable target included)
are statuses, and the next scheduled run is the retry. Limits are short so a hung
check never holds a fast-lane slot for long.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.core import health as checks
from workers.config import (
    CertificateTarget,
    HostTarget,
    HttpTarget,
    MetricTarget,
    PostgresTarget,
    RedisTarget,
    SqliteTarget,
)
from workers.records import records
from workers.records.outcome import Result, RunContext
from workers.taskdef import maintenance_task

LIMITS = {"soft_time_limit": 60, "time_limit": 75, "max_retries": 0}


@maintenance_task("health.postgres", impact="none", target="postgres", **LIMITS)
def postgres(run: RunContext, target: PostgresTarget) -> Result:
    """PostgreSQL: connect latency, connections, long transactions, cache hit ratio, replica lag."""
    return checks.postgres.check(target, run.config.thresholds)


@maintenance_task("health.redis", impact="none", target="redis", **LIMITS)
def redis(run: RunContext, target: RedisTarget) -> Result:
    """Redis: ping latency, memory vs maxmemory, eviction policy, hit rate, clients, evictions."""
    return checks.redis.check(target, run.config.thresholds)


@maintenance_task("health.http", impact="none", target="http", **LIMITS)
def http(run: RunContext, target: HttpTarget) -> Result:
    """HTTP endpoint: status code, latency, expectations on JSON fields."""
    return checks.http.check(target, run.config.thresholds)


@maintenance_task("health.sqlite", impact="none", target="sqlite", **LIMITS)
def sqlite(run: RunContext, target: SqliteTarget) -> Result:
    """SQLite file on its host: quick_check, size, journal mode, locked."""
    return checks.sqlite.check(target, run.config.thresholds)


@maintenance_task("health.host", impact="none", target="hosts", **LIMITS)
def host(run: RunContext, target: HostTarget) -> Result:
    """Host: CPU, memory, disk usage of each mount, load per CPU."""
    logs = {t.name: t.path for t in run.config.logs if t.host == target.host}
    return checks.host.check(target, run.config.thresholds, logs)


@maintenance_task("health.certificates", impact="none", target="certificates", **LIMITS)
def certificates(run: RunContext, target: CertificateTarget) -> Result:
    """TLS certificate (PEM file or host:port): days until expiry."""
    return checks.certificates.check(target, run.config.thresholds)


@maintenance_task("health.metric", impact="none", target="metrics", **LIMITS)
def metric(run: RunContext, target: MetricTarget) -> Result:
    """A configured metric (SQL, JSON field or Redis INFO field) against its warning/critical conditions."""
    return checks.metric.check(target, run.config)


@maintenance_task("health.overview", impact="none", **LIMITS)
def overview(run: RunContext) -> Result:
    """Overall status and score from the latest health result of every target."""
    rows = records(run.config).runs.latest(list(checks.overview.CHECKS))
    return checks.overview.check(rows, run.config, datetime.now(UTC))
