"""The schema of maintd's own tables, as numbered migrations applied at first connect.

Each migration runs once, in order, in one transaction under an advisory lock (several
workers starting together serialise here); ``maintd_schema`` records what was applied.
Migration 1 is the schema as first released, written with ``IF NOT EXISTS``: a results
database created before migrations existed adopts it and keeps its rows. Add a
migration at the end; never edit one that has shipped.
"""

from __future__ import annotations

import logging

import psycopg2.extensions

logger = logging.getLogger(__name__)

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "runs, deferred runs, alert state and deliveries", """
CREATE TABLE IF NOT EXISTS maintd_runs (
    id bigserial PRIMARY KEY,
    task_id text NOT NULL,
    task text NOT NULL,
    target text,
    status text NOT NULL,
    summary text NOT NULL DEFAULT '',
    metrics jsonb NOT NULL DEFAULT '{}',
    actions jsonb NOT NULL DEFAULT '[]',
    dry_run boolean NOT NULL DEFAULT false,
    impact text NOT NULL,
    host text NOT NULL,
    worker text NOT NULL,
    attempt integer NOT NULL DEFAULT 1,
    error text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    duration_s double precision
);
CREATE INDEX IF NOT EXISTS maintd_runs_task_target ON maintd_runs (task, target, started_at DESC);
CREATE INDEX IF NOT EXISTS maintd_runs_task_id ON maintd_runs (task_id);
CREATE TABLE IF NOT EXISTS maintd_deferred (
    task text NOT NULL,
    target text NOT NULL,
    kwargs jsonb NOT NULL DEFAULT '{}',
    not_before timestamptz NOT NULL,
    reason text NOT NULL,
    deferred_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, target)
);
CREATE TABLE IF NOT EXISTS maintd_alert_state (
    task text NOT NULL,
    target text NOT NULL,
    status text NOT NULL,
    since timestamptz NOT NULL,
    notified_status text,
    notified_at timestamptz,
    PRIMARY KEY (task, target)
);
CREATE TABLE IF NOT EXISTS maintd_alert_deliveries (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    task text NOT NULL,
    target text NOT NULL,
    channel text NOT NULL,
    kind text NOT NULL,
    severity text NOT NULL,
    reason text NOT NULL,
    delivered boolean NOT NULL,
    attempts integer NOT NULL,
    error text
);
"""),
    (2, "watchdog: watched entries, partial indexes for unfinished and failed runs; incidents", """
CREATE TABLE IF NOT EXISTS maintd_watch_entries (
    entry text PRIMARY KEY,
    cron text NOT NULL,
    first_seen timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS maintd_runs_running ON maintd_runs (started_at) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS maintd_runs_failed ON maintd_runs (started_at) WHERE status IN ('failed', 'lost');
CREATE TABLE IF NOT EXISTS maintd_incidents (
    id bigserial PRIMARY KEY,
    opened_at timestamptz NOT NULL DEFAULT now(),
    trigger_task text,
    trigger_target text,
    trigger_status text,
    trigger_summary text NOT NULL DEFAULT '',
    trigger_host text,
    state text NOT NULL,
    captured_at timestamptz,
    captured_on text,
    summary text NOT NULL DEFAULT '',
    snapshot jsonb NOT NULL DEFAULT '{}',
    error text
);
CREATE INDEX IF NOT EXISTS maintd_incidents_trigger ON maintd_incidents (trigger_task, trigger_target, opened_at DESC);
"""),
    (3, "scheduled runs, lock waits with expiry, indexes for latest-per-target and pruning", """
-- Which beat entry fired a run (NULL: ad hoc) and the first dispatch of its chain of deferrals.
ALTER TABLE maintd_runs ADD COLUMN IF NOT EXISTS entry text;
ALTER TABLE maintd_runs ADD COLUMN IF NOT EXISTS origin text;
-- A deferred run waits for a time ('time': a window or a back-off) or for the target's lock
-- ('lock': released as soon as the holder lets go, dropped at expires_at).
ALTER TABLE maintd_deferred ADD COLUMN IF NOT EXISTS waiting_for text NOT NULL DEFAULT 'time';
ALTER TABLE maintd_deferred ADD COLUMN IF NOT EXISTS entry text;
ALTER TABLE maintd_deferred ADD COLUMN IF NOT EXISTS origin text;
ALTER TABLE maintd_deferred ADD COLUMN IF NOT EXISTS expires_at timestamptz;
-- Latest row and latest finding per (task, target): walked with a loose index scan, so
-- `maintd status` and health.overview read one index entry per pair, whatever the history's size.
CREATE INDEX IF NOT EXISTS maintd_runs_pair ON maintd_runs (task, (coalesce(target, '')), started_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS maintd_runs_findings ON maintd_runs (task, (coalesce(target, '')), started_at DESC, id DESC)
    WHERE status NOT IN ('running', 'skipped', 'deferred', 'retrying', 'lost');
CREATE INDEX IF NOT EXISTS maintd_runs_started_at ON maintd_runs (started_at);
CREATE INDEX IF NOT EXISTS maintd_runs_running ON maintd_runs (started_at) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS maintd_alert_deliveries_at ON maintd_alert_deliveries (at);
"""),
    (4, "metric series: one point per (task, target, metric) of every finished run", """
-- Every numeric metric of a run's Outcome, flattened to a dotted name ("disks./var",
-- "tables.public.audit_logs.total_bytes"), written with the run's finish in one statement.
CREATE TABLE IF NOT EXISTS maintd_metric_points (
    task text NOT NULL,
    target text NOT NULL DEFAULT '',
    metric text NOT NULL,
    at timestamptz NOT NULL,
    run_id bigint NOT NULL,
    value double precision NOT NULL,
    -- value included: one series over a time range is an index-only scan of adjacent leaf
    -- pages, never a heap fetch per point (a series' points are spread over the whole heap).
    PRIMARY KEY (task, target, metric, at, run_id) INCLUDE (value)
);
-- Pruning by age (maintd.prune_history).
CREATE INDEX IF NOT EXISTS maintd_metric_points_at ON maintd_metric_points (at);
"""),
)
LATEST = MIGRATIONS[-1][0]
_SCHEMA_LOCK = 0x6D61696E7464  # "maintd": serialises concurrent migrations


def migrate(conn: psycopg2.extensions.connection) -> list[int]:
    """Apply every migration not applied yet; returns the versions applied now."""
    applied: list[int] = []
    with conn, conn.cursor() as cur:  # one transaction
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        cur.execute("CREATE TABLE IF NOT EXISTS maintd_schema (version integer PRIMARY KEY,"
                    " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        cur.execute("SELECT coalesce(max(version), 0) FROM maintd_schema")
        row = cur.fetchone()
        current = int(row[0]) if row else 0
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            cur.execute(statements)
            cur.execute("INSERT INTO maintd_schema (version, description) VALUES (%s, %s)", (version, description))
            applied.append(version)
    if applied:
        logger.info("results database migrated to schema %d (applied %s)", LATEST, applied)
    return applied
