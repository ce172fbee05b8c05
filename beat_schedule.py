"""The maintenance matrix: when each task runs by default. Data, not logic.

Defaults come from the runbooks in shared/seeds: health every 5 minutes, daily
maintenance at 02:00 UTC, backup verification at 04:00, weekly work on Sunday
01:00, hourly log rotation. ``[schedule]`` in the config overrides any entry, for a
task (``"postgres.vacuum_bloated" = "0 3 * * *"``) or one target
(``"postgres.vacuum_full[main]" = "off"``). ``workers.schedule`` expands this
matrix over the configured targets into beat entries ``task[target]``.
"""

DEFAULT_CRON: dict[str, str] = {
    # health: continuous monitoring (runbooks: every 5 minutes)
    "health.postgres": "*/5 * * * *",
    "health.redis": "*/5 * * * *",
    "health.http": "*/5 * * * *",
    "health.sqlite": "*/5 * * * *",
    "health.host": "*/5 * * * *",
    "health.certificates": "0 6 * * *",
    "health.overview": "1-59/5 * * * *",  # a minute after the checks it folds
    # postgres: daily optimisation 02:00 UTC, weekly index work Sunday 01:00 UTC
    "postgres.analyze": "0 2 * * *",
    "postgres.vacuum_bloated": "15 2 * * *",
    "postgres.vacuum_full": "0 1 * * 0",
    "postgres.reindex": "0 3 * * 0",
    "postgres.unused_indexes": "0 4 * * 0",
    "postgres.slow_queries": "30 3 * * *",
    "postgres.long_queries": "*/5 * * * *",
    "postgres.retention": "30 2 * * *",
    "postgres.stats": "0 5 * * *",
    "postgres.stats_reset": "off",  # opt-in: e.g. [schedule] "postgres.stats_reset" = "0 5 1 * *" (monthly)
    # sqlite, redis
    "sqlite.integrity": "0 3 * * *",
    "sqlite.optimize": "0 2 * * 0",
    "redis.stats": "*/15 * * * *",
    # backups: nightly, verified at 04:00, restore-tested weekly
    "backup.postgres": "0 1 * * *",
    "backup.sqlite": "10 1 * * *",
    "backup.redis": "20 1 * * *",
    "backup.files": "30 1 * * *",
    "backup.verify": "0 4 * * *",
    "backup.restore_test": "0 5 * * 0",
    "backup.prune": "0 6 * * *",
    # files: hourly log rotation, daily tmp cleanup, weekly permission audit
    "files.rotate_logs": "0 * * * *",
    "files.clean_tmp": "0 3 * * *",
    "files.audit_permissions": "0 3 * * 0",
    # reports and the watchdog
    "reports.weekly": "0 7 * * 1",
    "reports.capacity": "0 7 1 * *",
    "watchdog.schedule": "*/10 * * * *",
    "incident.capture": "off",
    # runtime plumbing
    "maintd.release_deferred": "* * * * *",
}

# A beat message older than this is dropped instead of run late (seconds). Tasks not
# listed expire after 80% of their interval, at most one hour.
EXPIRES_S: dict[str, int] = {
    "postgres.vacuum_full": 4 * 3600,
    "postgres.reindex": 4 * 3600,
}
