"""What ``reports.weekly`` reads: aggregates over one time range of the run history and the
metric points. Each is one statement over the ``started_at`` (runs) or ``at`` (points) index,
aggregated in the database: a week of a million runs is never shipped to Python row by row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg2.extensions

from workers.records.connection import ResultsDatabase, rows

BAD = ("critical", "failed", "lost")
GOOD = ("ok", "warning")
# Metrics of maintenance runs summed into "maintenance done" (per task).
WORK_METRICS = ("reclaimed_bytes", "freed_bytes", "archived", "deleted", "size_bytes", "restore_duration_s",
                "rows_archived", "rows_deleted", "tables_vacuumed", "indexes_reindexed")
# (task, metric LIKE) of the series whose growth over the range is "top growth".
GROWTH = (("postgres.stats", "database_bytes"), ("postgres.stats", "tables.%.total_bytes"),
          ("health.sqlite", "size_bytes"), ("health.redis", "used_memory"))


class ReportQueries:
    def __init__(self, db: ResultsDatabase) -> None:
        self.db = db

    def _rows(self, sql: str, params: Any) -> list[dict[str, Any]]:
        return self.db.execute(lambda cur: rows(cur, sql, params), transaction=False)  # type: ignore[return-value]

    def availability(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Per health check and target: runs, good (ok/warning) and bad (critical/failed/lost) runs."""
        return self._rows(
            "SELECT task, coalesce(target, '') AS target, count(*) AS runs,"
            " count(*) FILTER (WHERE status = ANY(%(good)s)) AS good,"
            " count(*) FILTER (WHERE status = ANY(%(bad)s)) AS bad"
            " FROM maintd_runs WHERE started_at >= %(since)s AND started_at < %(until)s"
            " AND task LIKE 'health.%%' AND task <> 'health.overview'"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            {"good": list(GOOD), "bad": list(BAD), "since": since, "until": until})

    def failures(self, since: datetime, until: datetime, limit: int = 25) -> list[dict[str, Any]]:
        """Runs that failed, were lost or found something critical, by (task, target, status)."""
        return self._rows(
            "SELECT task, coalesce(target, '') AS target, status, count(*) AS runs, max(started_at) AS last_at,"
            " (array_agg(coalesce(nullif(error, ''), summary) ORDER BY started_at DESC))[1] AS last_summary"
            " FROM maintd_runs WHERE started_at >= %(since)s AND started_at < %(until)s AND status = ANY(%(bad)s)"
            " GROUP BY 1, 2, 3 ORDER BY runs DESC, last_at DESC LIMIT %(limit)s",
            {"bad": list(BAD), "since": since, "until": until, "limit": limit})

    def maintenance(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Per maintenance task (not health checks): runs done, their actions, the longest run."""
        return self._rows(
            "SELECT task, count(*) AS runs, count(DISTINCT target) AS targets,"
            " sum(jsonb_array_length(actions)) AS actions, max(duration_s) AS longest_s"
            " FROM maintd_runs WHERE started_at >= %(since)s AND started_at < %(until)s"
            " AND status = ANY(%(good)s) AND NOT dry_run AND task NOT LIKE 'health.%%'"
            " AND task NOT IN ('maintd.release_deferred', 'watchdog.schedule', 'reports.weekly')"
            " GROUP BY 1 ORDER BY 1", {"good": list(GOOD), "since": since, "until": until})

    def work_totals(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Per task and work metric: the sum and the largest value over the range."""
        return self._rows(
            "SELECT task, metric, sum(value) AS total, max(value) AS largest, count(*) AS points"
            " FROM maintd_metric_points WHERE at >= %(since)s AND at < %(until)s AND metric = ANY(%(names)s)"
            " AND task NOT LIKE 'health.%%' GROUP BY 1, 2 ORDER BY 1, 2",
            {"names": list(WORK_METRICS), "since": since, "until": until})

    def growth(self, since: datetime, until: datetime, limit: int = 10) -> list[dict[str, Any]]:
        """The series that grew most over the range (first and last point)."""
        match = " OR ".join(f"(task = %(t{i})s AND metric LIKE %(m{i})s)" for i in range(len(GROWTH)))
        given = {f"{k}{i}": v for i, (t, m) in enumerate(GROWTH) for k, v in (("t", t), ("m", m))}
        return self._rows(
            "SELECT task, target, metric, first, last, last - first AS growth FROM ("
            " SELECT task, target, metric, (array_agg(value ORDER BY at))[1] AS first,"
            " (array_agg(value ORDER BY at DESC))[1] AS last FROM maintd_metric_points"
            f" WHERE at >= %(since)s AND at < %(until)s AND ({match}) GROUP BY 1, 2, 3) s"
            " WHERE last > first ORDER BY growth DESC LIMIT %(limit)s",
            {"since": since, "until": until, "limit": limit, **given})

    def latest_in(self, task: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """The newest finished run of ``task`` per target within the range."""
        return self._rows(
            "SELECT DISTINCT ON (coalesce(target, '')) coalesce(target, '') AS target, metrics, started_at"
            " FROM maintd_runs WHERE task = %(task)s AND started_at >= %(since)s AND started_at < %(until)s"
            " AND status = ANY(%(good)s) ORDER BY coalesce(target, ''), started_at DESC",
            {"task": task, "since": since, "until": until, "good": list(GOOD)})

    def backups(self, since: datetime, until: datetime) -> dict[str, Any]:
        """Backups taken (per task), verified, restore-tested, and the longest restore (RTO)."""
        def do(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
            cur.execute(
                "SELECT task, count(*) FILTER (WHERE status = ANY(%(good)s)),"
                " count(*) FILTER (WHERE status = ANY(%(bad)s)) FROM maintd_runs"
                " WHERE started_at >= %(since)s AND started_at < %(until)s AND task LIKE 'backup.%%' AND NOT dry_run"
                " GROUP BY 1", {"good": list(GOOD), "bad": list(BAD), "since": since, "until": until})
            per_task = {t: {"ok": int(g), "failed": int(b)} for t, g, b in cur.fetchall()}
            cur.execute(
                "SELECT max(value) FROM maintd_metric_points WHERE task = 'backup.restore_test'"
                " AND metric = ANY(ARRAY['restore_duration_s', 'duration_s']) AND at >= %s AND at < %s",
                (since, until))
            row = cur.fetchone()
            return {"per_task": per_task, "rto_s": None if row is None or row[0] is None else float(row[0])}

        return self.db.execute(do, transaction=False)
