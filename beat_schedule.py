"""The maintenance matrix: when each task runs by default. Data, not logic.

Defaults come from the runbooks in shared/seeds: health every 5 minutes, backup
verification at 04:00, weekly heavy work on Sunday, hourly log rotation. The nightly work
on one database is *staggered* so that, at the typical durations below, no two runs want
the same target's lock at once (``tests/test_schedule.py`` proves it for a default config):

    00:15  backup.postgres        (~1 h; a fresh backup before the weekly rewrite)
    01:30  postgres.vacuum_full   Sunday (~1 h, inside the runbooks' "Sun 01:00-05:00" window)
    02:30  postgres.retention     (~30 min: trim first ...)
    03:00  postgres.vacuum_bloated (~30 min: ... then vacuum what the trim left ...)
    03:30  postgres.analyze       (~15 min: ... then fresh statistics)
    04:00  backup.verify          (no lock)   04:00 postgres.reindex Sunday (~1 h)
    05:15  backup.restore_test    Sunday (~1 h)
    06:30  backup.prune           (after verify and the restore test)
    07:15  maintd.prune_history   (maintd's own records; no target)

When a run takes longer (a big dump), a scheduled run that meets the held lock waits for it
(deferred, offered again when it is let go) until its message expires (``EXPIRES_S``), so a
long night shifts the rest instead of dropping it; `maintd schedule` flags entries that
overlap on one target at the durations seen in history. ``[schedule]`` in the config
overrides any entry, for a task (``"postgres.vacuum_bloated" = "0 3 * * *"``) or one target
(``"postgres.vacuum_full[main]" = "off"``). ``workers.schedule`` expands this matrix over the
configured targets into beat entries ``task[target]``.
"""

DEFAULT_CRON: dict[str, str] = {
    # health: continuous monitoring (runbooks: every 5 minutes)
    "health.postgres": "*/5 * * * *",
    "health.redis": "*/5 * * * *",
    "health.http": "*/5 * * * *",
    "health.sqlite": "*/5 * * * *",
    "health.host": "*/5 * * * *",
    "health.certificates": "0 6 * * *",
    "health.metric": "*/5 * * * *",
    "health.overview": "1-59/5 * * * *",  # a minute after the checks it folds
    # postgres: nightly optimisation (retention → vacuum → analyze), weekly rewrite and reindex on Sunday
    "postgres.analyze": "30 3 * * *",
    "postgres.vacuum_bloated": "0 3 * * *",
    "postgres.vacuum_full": "30 1 * * 0",
    "postgres.reindex": "0 4 * * 0",
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
    "backup.postgres": "15 0 * * *",
    "backup.sqlite": "25 0 * * *",
    "backup.redis": "35 0 * * *",
    "backup.files": "45 0 * * *",
    "backup.verify": "0 4 * * *",
    "backup.restore_test": "15 5 * * 0",
    "backup.prune": "30 6 * * *",
    # files: daily log rotation (per target: [schedule] "files.rotate_logs[NAME]"), daily tmp cleanup, weekly permission audit
    "files.rotate_logs": "0 0 * * *",
    "files.clean_tmp": "0 3 * * *",
    "files.audit_permissions": "0 3 * * 0",
    # reports and the watchdog
    "reports.weekly": "0 7 * * 1",
    "reports.capacity": "0 7 1 * *",
    "watchdog.schedule": "*/10 * * * *",
    "incident.capture": "off",
    # runtime plumbing, and maintd's own records
    "maintd.release_deferred": "* * * * *",
    "maintd.prune_history": "15 7 * * *",
}

# A beat message older than this is dropped instead of run late (seconds). Tasks not
# listed expire after 80% of their interval, at most one hour.
EXPIRES_S: dict[str, int] = {
    "postgres.vacuum_full": 4 * 3600,
    "postgres.reindex": 4 * 3600,
    # the nightly work may wait this long for a lock held by a long backup or rewrite
    "postgres.retention": 4 * 3600,
    "postgres.vacuum_bloated": 4 * 3600,
    "postgres.analyze": 4 * 3600,
    "backup.restore_test": 4 * 3600,
    "backup.prune": 4 * 3600,
}

# How long a run typically takes (seconds), from the runbooks ("database optimisation 15-30
# minutes", "index optimisation 1-2 hours", backups within the night). `maintd schedule` uses
# the durations seen in history where there are any, these otherwise, to flag entries that
# overlap on one target. Tasks not listed: 5 minutes.
TYPICAL_S: dict[str, int] = {
    "backup.postgres": 3600,
    "backup.sqlite": 600,
    "backup.redis": 600,
    "backup.files": 1800,
    "backup.restore_test": 3600,
    "backup.prune": 600,
    "postgres.vacuum_full": 3600,
    "postgres.reindex": 3600,
    "postgres.retention": 1800,
    "postgres.vacuum_bloated": 1800,
    "postgres.analyze": 900,
    "sqlite.optimize": 600,
}
TYPICAL_DEFAULT_S = 300
