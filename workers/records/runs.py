"""The run history (``maintd_runs``): one row per attempt of a task run.

A run is inserted as ``running`` when it starts and updated when it ends, so a worker
killed mid-task leaves a visible ``running`` row; the next attempt of the same Celery
task id marks such rows ``lost``, and so do the supervisor (a lane killed after its stop
grace) and the stale-run sweep (a row older than its task's hard limit: its host is gone).
Reports, the watchdog and ``maintd status`` read here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import psycopg2.extensions

from workers.records.connection import ResultsDatabase
from workers.records.metrics import POINTS_INSERT, points_params

RUN_COLUMNS = ("id", "task_id", "task", "target", "status", "summary", "metrics", "actions", "dry_run",
               "impact", "host", "worker", "attempt", "error", "started_at", "finished_at", "duration_s",
               "entry", "origin")
# Statuses that say something about the target (the others are about the run itself).
NOT_FINDINGS = ("running", "skipped", "deferred", "retrying", "lost")
_FINDING = f"status NOT IN ({', '.join(repr(s) for s in NOT_FINDINGS)})"  # the partial index's predicate
NOT_RUN = ("skipped", "deferred")  # a scheduled firing that did not do its work


def _rows(cur: psycopg2.extensions.cursor, sql: str, params: Any) -> list[dict[str, Any]]:
    cur.execute(sql, params)
    return [dict(zip(RUN_COLUMNS, r, strict=True)) for r in cur.fetchall()]


def latest_per_pair_sql(predicate: str, columns: str, tasks_given: bool) -> str:
    """The newest row matching ``predicate`` of each (task, target), by a loose index scan:
    one index probe per task and per target (``maintd_runs_pair`` / ``maintd_runs_findings``),
    never a pass over the history. ``%(tasks)s`` (a text[]) restricts the tasks when given."""
    if tasks_given:
        seed = "SELECT t.task FROM unnest(%(tasks)s::text[]) AS t(task)"
    else:
        seed = (f"SELECT task FROM (WITH RECURSIVE t(task) AS ("
                f"(SELECT task FROM maintd_runs WHERE {predicate} ORDER BY task LIMIT 1)"
                f" UNION ALL SELECT (SELECT task FROM maintd_runs WHERE {predicate} AND task > t.task"
                f" ORDER BY task LIMIT 1) FROM t WHERE t.task IS NOT NULL) SELECT task FROM t) s"
                f" WHERE task IS NOT NULL")
    return (
        f"WITH RECURSIVE seed AS ({seed}),"
        f" pairs(task, tgt) AS ("
        f"  SELECT s.task, (SELECT coalesce(target, '') FROM maintd_runs WHERE {predicate} AND task = s.task"
        f"                  ORDER BY coalesce(target, '') LIMIT 1) FROM seed s"
        f"  UNION ALL"
        f"  SELECT p.task, (SELECT coalesce(target, '') FROM maintd_runs WHERE {predicate} AND task = p.task"
        f"                  AND coalesce(target, '') > p.tgt ORDER BY coalesce(target, '') LIMIT 1)"
        f"    FROM pairs p WHERE p.tgt IS NOT NULL)"
        f" SELECT {columns} FROM pairs p CROSS JOIN LATERAL ("
        f"  SELECT * FROM maintd_runs WHERE {predicate} AND task = p.task AND coalesce(target, '') = p.tgt"
        f"  ORDER BY started_at DESC, id DESC LIMIT 1) r"
        f" WHERE p.tgt IS NOT NULL ORDER BY r.task, r.target"
    )


class RunLog:
    def __init__(self, db: ResultsDatabase) -> None:
        self.db = db

    def start(self, *, task_id: str, task: str, target: str | None, impact: str, host: str,
              worker: str, attempt: int, dry_run: bool, started_at: datetime,
              entry: str | None = None, origin: str | None = None) -> int:
        def do(cur: psycopg2.extensions.cursor) -> int:
            # One statement: an earlier attempt of the same Celery task still 'running'
            # was lost with its worker; then this attempt's row.
            cur.execute(
                "WITH lost AS (UPDATE maintd_runs SET status = 'lost', finished_at = %s,"
                " error = 'worker lost before the run finished (killed, crashed or restarted)'"
                " WHERE task_id = %s AND status = 'running')"
                " INSERT INTO maintd_runs (task_id, task, target, status, impact, host, worker, attempt,"
                " dry_run, started_at, entry, origin) VALUES (%s,%s,%s,'running',%s,%s,%s,%s,%s,%s,%s,%s)"
                " RETURNING id",
                (started_at, task_id, task_id, task, target, impact, host, worker, attempt, dry_run, started_at,
                 entry, origin),
            )
            row = cur.fetchone()
            assert row is not None
            return int(row[0])

        return self.db.execute(do, transaction=False)

    def finish(self, run_id: int, *, status: str, summary: str, metrics: dict[str, Any],
               actions: list[str], error: str | None, finished_at: datetime, duration_s: float) -> None:
        names, values = points_params(metrics)
        # One statement: the run's end and its metric points (workers.records.metrics).
        self.db.execute(lambda cur: cur.execute(
            "WITH r AS (UPDATE maintd_runs SET status=%(status)s, summary=%(summary)s, metrics=%(metrics)s,"
            " actions=%(actions)s, error=%(error)s, finished_at=%(finished_at)s, duration_s=%(duration_s)s"
            " WHERE id=%(id)s RETURNING id, task, target, finished_at)" + POINTS_INSERT,
            {"status": status, "summary": summary, "metrics": json.dumps(metrics, default=str),
             "actions": json.dumps(actions), "error": error, "finished_at": finished_at,
             "duration_s": duration_s, "id": run_id, "metric_names": names, "metric_values": values},
        ), transaction=False)

    def record(self, *, task_id: str, task: str, target: str | None, status: str, summary: str, impact: str,
               host: str, worker: str, attempt: int, dry_run: bool, started_at: datetime,
               finished_at: datetime, metrics: dict[str, Any] | None = None, actions: list[str] | None = None,
               error: str | None = None, entry: str | None = None, origin: str | None = None) -> int:
        """A whole row at once: a run recorded only when it did something (``quiet`` tasks), a
        message that expired before it started, a delivery refused."""
        duration = round((finished_at - started_at).total_seconds(), 3)

        def do(cur: psycopg2.extensions.cursor) -> int:
            names, values = points_params(metrics or {})
            cur.execute(
                "WITH r AS (INSERT INTO maintd_runs (task_id, task, target, status, summary, metrics, actions,"
                " dry_run, impact, host, worker, attempt, error, started_at, finished_at, duration_s, entry, origin)"
                " VALUES (%(task_id)s, %(task)s, %(target)s, %(status)s, %(summary)s, %(metrics)s, %(actions)s,"
                " %(dry_run)s, %(impact)s, %(host)s, %(worker)s, %(attempt)s, %(error)s, %(started_at)s,"
                " %(finished_at)s, %(duration_s)s, %(entry)s, %(origin)s) RETURNING id, task, target, finished_at),"
                " p AS (" + POINTS_INSERT.strip() + ") SELECT id FROM r",
                {"task_id": task_id, "task": task, "target": target, "status": status, "summary": summary,
                 "metrics": json.dumps(metrics or {}, default=str), "actions": json.dumps(actions or []),
                 "dry_run": dry_run, "impact": impact, "host": host, "worker": worker, "attempt": attempt,
                 "error": error, "started_at": started_at, "finished_at": finished_at, "duration_s": duration,
                 "entry": entry, "origin": origin, "metric_names": names, "metric_values": values})
            row = cur.fetchone()
            assert row is not None
            return int(row[0])

        return self.db.execute(do, transaction=False)

    def fail_running(self, task_id: str, error: str, status: str = "failed") -> list[str | None]:
        """Close the still-running rows of ``task_id`` (``failed``, or ``lost``); returns their targets."""
        now = datetime.now(timezone.utc)

        def do(cur: psycopg2.extensions.cursor) -> list[str | None]:
            cur.execute(
                "UPDATE maintd_runs SET status = %s, error = %s, summary = %s, finished_at = %s,"
                " duration_s = EXTRACT(EPOCH FROM (%s - started_at)) WHERE task_id = %s AND status = 'running'"
                " RETURNING target", (status, error, error, now, now, task_id))
            return [r[0] for r in cur.fetchall()]

        return self.db.execute(do, transaction=False)

    def close_node(self, node: str, error: str) -> list[dict[str, Any]]:
        """Rows still ``running`` in any process of the Celery node ``node`` (``<node>/<pid>``),
        which is gone (killed after its stop grace, or crashed): ``lost``."""
        return self._close("status = 'running' AND left(worker, length(%(node)s) + 1) = %(node)s || '/'",
                           {"node": node}, error)

    def close_stale(self, limits_s: Mapping[str, float], default_s: float, error: str) -> list[dict[str, Any]]:
        """Rows ``running`` for longer than their task's hard limit (``limits_s``, plus nothing:
        the caller adds its margin): the process that ran them is gone, host and all, since a
        living worker kills a run at that limit. ``lost``."""
        names, limits = list(limits_s), [float(v) for v in limits_s.values()]
        return self._close(
            "status = 'running' AND started_at < now() - make_interval(secs => coalesce("
            "(SELECT l.limit_s FROM unnest(%(names)s::text[], %(limits)s::float8[]) AS l(task, limit_s)"
            " WHERE l.task = maintd_runs.task), %(default)s))",
            {"names": names, "limits": limits, "default": float(default_s)}, error)

    def _close(self, where: str, params: dict[str, Any], error: str) -> list[dict[str, Any]]:
        def do(cur: psycopg2.extensions.cursor) -> list[dict[str, Any]]:
            cur.execute(
                f"UPDATE maintd_runs SET status = 'lost', error = %(error)s, summary = %(error)s,"
                f" finished_at = now(), duration_s = EXTRACT(EPOCH FROM (now() - started_at))"
                f" WHERE {where} RETURNING task, target, task_id, worker", {**params, "error": error})
            return [dict(zip(("task", "target", "task_id", "worker"), r, strict=True)) for r in cur.fetchall()]

        return self.db.execute(do, transaction=False)

    def find(self, *, task: str | None = None, target: str | None = None, task_id: str | None = None,
             limit: int = 50) -> list[dict[str, Any]]:
        """The newest rows matching every given column, newest first."""
        where, params = [], []
        for col, val in (("task", task), ("target", target), ("task_id", task_id)):
            if val is not None:
                where.append(f"{col} = %s")
                params.append(val)
        sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM maintd_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC LIMIT %s"
        return self.db.execute(lambda cur: _rows(cur, sql, (*params, limit)), transaction=False)

    def latest(self, tasks: list[str] | None = None) -> list[dict[str, Any]]:
        """The newest finished run of each (task, target), excluding skipped/deferred/lost."""
        sql = latest_per_pair_sql(_FINDING, ", ".join(f"r.{c}" for c in RUN_COLUMNS), bool(tasks))
        params = {"tasks": list(tasks or [])}
        return self.db.execute(lambda cur: _rows(cur, sql, params), transaction=False)

    def last_of_entries(self, entries: Sequence[tuple[str, str, str | None]]) -> dict[str, dict[str, Any]]:
        """Per beat entry ``(name, task, target)``: its newest scheduled run (``status``,
        ``started_at``, ``duration_s``; None before the first) and the end of the newest
        success of its task and target (``ok`` or ``warning``, not a dry run, scheduled or
        ad hoc: ``last_success_at``). Two index probes per entry (``maintd_runs_pair``)."""
        if not entries:
            return {}
        sql = ("SELECT e.name, r.status, r.started_at, r.duration_s, s.at"
               " FROM unnest(%(names)s::text[], %(tasks)s::text[], %(targets)s::text[]) AS e(name, task, tgt)"
               " LEFT JOIN LATERAL (SELECT status, started_at, duration_s FROM maintd_runs"
               "  WHERE task = e.task AND coalesce(target, '') = e.tgt AND entry = e.name"
               "  ORDER BY started_at DESC, id DESC LIMIT 1) r ON true"
               " LEFT JOIN LATERAL (SELECT coalesce(finished_at, started_at) AS at FROM maintd_runs"
               "  WHERE task = e.task AND coalesce(target, '') = e.tgt AND status IN ('ok', 'warning') AND NOT dry_run"
               "  ORDER BY started_at DESC, id DESC LIMIT 1) s ON true")
        params = {"names": [n for n, _, _ in entries], "tasks": [t for _, t, _ in entries],
                  "targets": [g or "" for _, _, g in entries]}

        def do(cur: psycopg2.extensions.cursor) -> dict[str, dict[str, Any]]:
            cur.execute(sql, params)
            return {name: {"status": status, "started_at": started, "duration_s": duration, "last_success_at": ok_at}
                    for name, status, started, duration, ok_at in cur.fetchall()}

        return self.db.execute(do, transaction=False)

    def not_run_streak(self, task: str, target: str | None, limit: int = 100) -> tuple[int, str]:
        """How many *scheduled firings* of (task, target) in a row, newest first, ended without
        doing their work (skipped, or deferred and not run since), and the last one's summary.
        Re-offers of one waiting firing (same origin) count once."""
        sql = ("SELECT status, coalesce(origin, task_id), summary FROM maintd_runs"
               " WHERE task = %s AND coalesce(target, '') = %s AND entry IS NOT NULL AND status <> 'running'"
               " ORDER BY started_at DESC, id DESC LIMIT %s")

        def do(cur: psycopg2.extensions.cursor) -> tuple[int, str]:
            cur.execute(sql, (task, target or "", limit))
            origins: set[str] = set()
            last = ""
            for status, origin, summary in cur.fetchall():
                if status not in NOT_RUN:
                    break
                last = last or summary
                origins.add(origin)
            return len(origins), last

        return self.db.execute(do, transaction=False)

    def durations(self, pairs: list[tuple[str, str | None]], last: int = 10) -> dict[tuple[str, str | None], float]:
        """The longest of the last ``last`` completed runs of each (task, target), where any."""
        if not pairs:
            return {}
        sql = ("SELECT p.task, p.tgt, max(r.duration_s) FROM unnest(%s::text[], %s::text[]) AS p(task, tgt)"
               " CROSS JOIN LATERAL (SELECT duration_s FROM maintd_runs WHERE task = p.task"
               " AND coalesce(target, '') = p.tgt AND status IN ('ok', 'warning', 'critical')"
               " AND NOT dry_run AND duration_s IS NOT NULL ORDER BY started_at DESC, id DESC LIMIT %s) r"
               " GROUP BY p.task, p.tgt")

        def do(cur: psycopg2.extensions.cursor) -> dict[tuple[str, str | None], float]:
            cur.execute(sql, ([t for t, _ in pairs], [g or "" for _, g in pairs], last))
            return {(t, g or None): float(d) for t, g, d in cur.fetchall() if d is not None}

        return self.db.execute(do, transaction=False)

    def keep_ids(self) -> list[int]:
        """Rows pruning never deletes, whatever their age: the newest row and the newest finding
        of every (task, target)."""
        def do(cur: psycopg2.extensions.cursor) -> list[int]:
            ids: set[int] = set()
            for predicate in ("true", _FINDING):
                cur.execute(latest_per_pair_sql(predicate, "r.id", False), {})
                ids.update(int(r[0]) for r in cur.fetchall())
            return sorted(ids)

        return self.db.execute(do, transaction=False)

    def prune(self, cutoff: datetime, keep: list[int], batch: int) -> int:
        """Delete up to ``batch`` rows started before ``cutoff`` (oldest first), never those in
        ``keep``; returns how many were deleted (fewer than ``batch``: nothing more to do)."""
        def do(cur: psycopg2.extensions.cursor) -> int:
            cur.execute("DELETE FROM maintd_runs WHERE id IN (SELECT id FROM maintd_runs WHERE started_at < %s"
                        " AND id <> ALL(%s::bigint[]) ORDER BY started_at LIMIT %s)", (cutoff, keep, batch))
            return int(cur.rowcount)

        return self.db.execute(do)

    def prunable(self, cutoff: datetime, keep: list[int]) -> int:
        """How many rows ``prune`` would delete (a dry run's plan)."""
        def do(cur: psycopg2.extensions.cursor) -> int:
            cur.execute("SELECT count(*) FROM maintd_runs WHERE started_at < %s AND id <> ALL(%s::bigint[])",
                        (cutoff, keep))
            row = cur.fetchone()
            return int(row[0]) if row else 0

        return self.db.execute(do, transaction=False)
