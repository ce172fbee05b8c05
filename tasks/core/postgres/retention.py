"""``postgres.retention`` (medium): per ``[[postgres.retention]]`` policy, archive-then-delete
rows older than ``older_than`` in batches.

Each batch is one short transaction and one statement: it deletes a slice of expired
rows and inserts exactly the deleted rows into the archive; the archived and deleted
counts must match or the batch rolls back. A crash anywhere leaves every row either
still in the source or both archived and deleted, never both or neither: a rerun
continues where the last commit stopped. Batches walk the table by block ranges
(sweep) or oldest-first through the column's index (limit), see ``batches``; their
size adapts to ``target_batch_s``. A policy that would delete every row (none newer
than the cut-off) is refused unless ``allow_empty = true``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from tasks.core.postgres import admission, batches, relations
from tasks.core.postgres.relations import Relation
from tasks.core.postgres.session import failure, maintenance_session, per_object, render
from workers.config import PostgresTarget, RetentionPolicy
from workers.doors import postgres as db
from workers.errors import PermanentError
from workers.records.outcome import Budget, Result, RunContext, progress

logger = logging.getLogger(__name__)

TIME_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")
MAX_SWEEPS = 3  # a later sweep only finds rows updated into already-swept pages meanwhile


def next_batch_size(current: int, seconds: float, target_s: float, lo: int, hi: int) -> int:
    """Scale the batch toward ``target_s`` per batch, at most 2x up or down per step (pure)."""
    factor = 2.0 if seconds <= 0 else max(0.5, min(2.0, target_s / seconds))
    return int(max(lo, min(hi, round(current * factor))))


class BatchMismatch(PermanentError):
    """Archived and deleted counts of one batch differ; the batch was rolled back."""


@dataclass(frozen=True)
class PolicyPlan:
    policy: RetentionPolicy
    index: int
    source: Relation
    column: str
    partitioned: bool
    indexed: bool  # an index leads with the policy's column
    archive_label: str | None
    create_archive: sql.Composed | None  # archive table missing: created LIKE the source
    batch: batches.BatchSql
    cond: sql.Composed  # parameters: cutoff
    guard: sql.Composed  # parameters: cutoff -> (newer, expired)

    @property
    def label(self) -> str:
        return f"retention[{self.index}] {self.source}.{self.column}"


def _archive_target(conn: psycopg2.extensions.connection, source: Relation,
                    text: str) -> tuple[sql.Identifier, str, Relation | None]:
    """The archive as (identifier, label, existing relation or None). A missing archive named
    without an existing schema goes next to the source table."""
    try:
        rel = relations.resolve(conn, "", "", text)
        return rel.ident, str(rel), rel
    except relations.UnknownObject:
        pass
    for i, ch in enumerate(text):
        if ch == "." and db.query(conn, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (text[:i],)):
            return sql.Identifier(text[:i], text[i + 1:]), f"{text[:i]}.{text[i + 1:]}", None
    return sql.Identifier(source.schema, text), f"{source.schema}.{text}", None


def plan_policy(conn: psycopg2.extensions.connection, target: PostgresTarget, index: int,
                policy: RetentionPolicy) -> PolicyPlan:
    field = f"retention[{index}]"
    source = relations.resolve(conn, target.name, f"{field}.table", policy.table)
    col = relations.require_column(conn, target.name, f"{field}.column", source, policy.column)
    if col["type"] not in TIME_TYPES:
        raise relations.UnknownObject(f"postgres target {target.name!r}: {field}.column: {policy.column!r} in"
                                      f" {str(source)!r} is {col['type']}; need a timestamp or date column")
    cols = [str(c["name"]) for c in relations.columns(conn, source)]
    column = sql.Identifier(policy.column)
    cond = sql.SQL("{} < %(cutoff)s").format(column)
    if policy.where:
        # The statements are executed with parameters (the cutoff): a literal '%' of the operator's
        # SQL (LIKE 'tmp%') must reach the server as '%', not be read as a placeholder.
        cond = sql.SQL("{} AND ({})").format(cond, sql.SQL(policy.where.replace("%", "%%")))
    info = db.query(conn, (
        "SELECT c.relkind = 'p' AS partitioned, EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a"
        " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = c.oid AND a.attname = %s)"
        " AS indexed FROM pg_class c WHERE c.oid = %s"), (policy.column, source.oid))[0]
    archive: sql.Identifier | None = None
    label: str | None = None
    create: sql.Composed | None = None
    if policy.archive_table:
        archive, label, existing = _archive_target(conn, source, policy.archive_table)
        if existing is None:
            create = sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {})").format(archive, source.ident)
        else:
            have = {str(c["name"]) for c in relations.columns(conn, existing)}
            missing = [c for c in cols if c not in have]
            if missing:
                raise relations.UnknownObject(f"postgres target {target.name!r}: {field}.archive_table: {label!r}"
                                              f" lacks column(s) {missing} of {str(source)!r}")
    guard = sql.SQL("SELECT EXISTS (SELECT 1 FROM {src} WHERE {col} >= %(cutoff)s) AS newer,"
                    " EXISTS (SELECT 1 FROM {src} WHERE {cond}) AS expired").format(
        src=source.ident, col=column, cond=cond)
    return PolicyPlan(policy, index, source, policy.column, bool(info["partitioned"]), bool(info["indexed"]),
                      label, create, batches.build(source.ident, cond, cols, archive, bool(info["partitioned"])),
                      cond, guard)


def _mogrify(conn: psycopg2.extensions.connection, stmt: sql.Composable, params: dict[str, Any]) -> str:
    with conn.cursor() as cur:
        return cur.mogrify(stmt, params).decode()


@dataclass
class PolicyReport:
    label: str
    cutoff: str
    strategy: str = ""
    status: str = "done"  # done | planned | refused | failed | partial | deferred
    reason: str | None = None
    deleted: int = 0
    archived: int = 0
    batches: int = 0
    sweeps: int = 0
    batch_size: int = 0  # last batch: rows (limit) or blocks (sweep)
    seconds: float = 0.0
    max_batch_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Shape:
    """What the planner and catalog say about the source, for choosing and sizing batches."""

    pages: int
    rows_per_page: float
    expired_fraction: float


def shape(conn: psycopg2.extensions.connection, plan: PolicyPlan, cutoff: datetime) -> Shape:
    row = db.query(conn, "SELECT c.reltuples::float8 AS tuples, c.relpages AS pages,"
                         " pg_relation_size(c.oid) / current_setting('block_size')::int AS blocks"
                         " FROM pg_class c WHERE c.oid = %s", (plan.source.oid,))[0]
    with conn.cursor() as cur:
        cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} WHERE {}").format(plan.source.ident, plan.cond),
                    {"cutoff": cutoff})
        estimate = float(cur.fetchone()[0][0]["Plan"]["Plan Rows"])
    conn.rollback()
    tuples, pages = max(float(row["tuples"]), 0.0), int(row["pages"])
    density = tuples / pages if tuples > 0 and pages > 0 else 100.0
    return Shape(int(row["blocks"]), density, min(1.0, estimate / tuples) if tuples > 0 else 1.0)


class Walk:
    """One policy's batches: gates before each, one transaction each, the report kept current."""

    def __init__(self, conn: psycopg2.extensions.connection, target: PostgresTarget, plan: PolicyPlan,
                 cutoff: datetime, budget: Budget, report: PolicyReport) -> None:
        self.conn, self.target, self.plan, self.cutoff = conn, target, plan, cutoff
        self.budget, self.report = budget, report
        self.maybe_left = False  # rows may remain (skipped as locked, or the sweeps ran out)
        self.expected: int | None = None  # the planner's estimate of the expired rows (for progress)

    def gate(self) -> bool:
        self.budget.checkpoint()  # the target lock lost: stop before the next batch (LockLostError)
        if self.budget.exhausted():
            self.report.status, self.report.reason = "partial", "time budget spent; the next run continues"
            return False
        refusal = admission.refusal(self.conn, self.target.admission)
        self.conn.commit()  # the check must not hold a snapshot open between batches
        if refusal:
            self.report.status, self.report.reason = "deferred", refusal
            return False
        return True

    def batch(self, stmt: sql.Composed, params: dict[str, Any], size: int) -> tuple[int, float]:
        """Run one batch in its own transaction: (rows deleted, seconds)."""
        started = time.monotonic()
        with self.conn.cursor() as cur:
            cur.execute(stmt, {"cutoff": self.cutoff, **params})
            if self.plan.batch.counted:
                deleted, archived = cur.fetchone()
                if archived != deleted:
                    self.conn.rollback()
                    raise BatchMismatch(f"{self.plan.label}: batch archived {archived} but deleted {deleted} rows;"
                                        " rolled back")
            else:
                deleted, archived = cur.rowcount, 0
        self.conn.commit()
        took = time.monotonic() - started
        r = self.report
        r.batches += 1
        r.deleted += int(deleted)
        total = max(self.expected, r.deleted) if self.expected is not None else None
        progress(self.plan.label, done=r.deleted, total=total, unit="rows")
        r.archived += int(archived)
        r.batch_size = size
        r.max_batch_s = round(max(r.max_batch_s, took), 4)
        if self.plan.policy.pause_s:
            time.sleep(self.plan.policy.pause_s)
        return int(deleted), took

    def sweep(self, first: Shape) -> None:
        p, b = self.plan.policy, self.plan.batch
        assert b.sweep is not None and b.sweep_skip_locked is not None
        lo_k = max(1, math.ceil(p.min_batch_size / first.rows_per_page))
        hi_k = max(lo_k, math.ceil(p.max_batch_size / first.rows_per_page))
        k = max(lo_k, min(hi_k, math.ceil(p.batch_size / first.rows_per_page)))
        for _ in range(MAX_SWEEPS):
            self.report.sweeps += 1
            pages = int(db.query(self.conn, "SELECT pg_relation_size(%s::oid) / current_setting('block_size')::int"
                                            " AS n", (self.plan.source.oid,))[0]["n"])
            self.conn.commit()
            found, block = 0, 0
            while block < pages:
                if not self.gate():
                    return
                span = batches.block_range(block, block + k)
                try:
                    deleted, took = self.batch(b.sweep, span, k)
                except psycopg2.errors.LockNotAvailable:
                    self.conn.rollback()  # a writer holds a row: take what is free, leave the rest
                    self.maybe_left = True
                    deleted, took = self.batch(b.sweep_skip_locked, span, k)
                found += deleted
                block += k
                k = next_batch_size(k, took, p.target_batch_s, lo_k, hi_k)
            if not found:
                return
        self.maybe_left = True

    def limit(self) -> None:
        p = self.plan.policy
        size = p.batch_size
        while self.gate():
            deleted, took = self.batch(self.plan.batch.limit, {"limit": size}, size)
            if not deleted:
                self.maybe_left = True  # SKIP LOCKED may have passed rows by
                return
            size = next_batch_size(size, took, p.target_batch_s, p.min_batch_size, p.max_batch_size)

    def finish(self) -> None:
        if self.report.status == "done" and self.maybe_left:
            if db.query(self.conn, self.plan.guard, {"cutoff": self.cutoff})[0]["expired"]:
                self.report.status = "partial"
                self.report.reason = "expired rows remain, locked by other sessions; the next run continues"
            self.conn.rollback()


def retention(run: RunContext, target: PostgresTarget) -> Result:
    """Archive-then-delete expired rows per retention policy, in batches of one transaction each."""
    budget = run.budget()
    with maintenance_session(target, run.task, autocommit=False) as conn:
        # Each batch is atomic either way; not waiting for the WAL flush of every commit only means
        # a *server* crash may undo the last few batches (rows back in the source, not archived):
        # consistent, and the next run redoes them.
        db.query(conn, "SELECT set_config('synchronous_commit', 'off', false)")
        conn.commit()
        plans = [plan_policy(conn, target, i, p) for i, p in enumerate(target.retention)]
        version = conn.server_version
        now = db.query(conn, "SELECT now() AS now")[0]["now"]
        conn.rollback()
        if not plans:
            return Result("ok", "no retention policy configured", {"policies": []})
        reports: list[PolicyReport] = []
        actions: list[str] = []
        for plan in plans:
            report = PolicyReport(plan.label, (now - plan.policy.max_age).isoformat())
            reports.append(report)
            try:
                actions += _policy(conn, target, plan, now - plan.policy.max_age, budget, report, run.dry_run,
                                   version)
            except psycopg2.Error as exc:
                if not conn.closed:
                    conn.rollback()
                reason = per_object(exc)
                if reason is None or conn.closed:
                    raise failure(exc, target, plan.label) from None
                report.status, report.reason = "failed", reason
            if report.status == "deferred":
                break
    return _result(reports, actions, run.dry_run, target.admission.backoff_s)


def _policy(conn: psycopg2.extensions.connection, target: PostgresTarget, plan: PolicyPlan, cutoff: datetime,
            budget: Budget, report: PolicyReport, dry_run: bool, version: int) -> list[str]:
    """Guard, then plan or apply one policy; the statements it ran (or would run)."""
    guard = db.query(conn, plan.guard, {"cutoff": cutoff})[0]
    conn.rollback()
    if guard["expired"] and not guard["newer"] and not plan.policy.allow_empty:
        report.status = "refused"
        report.reason = (f"would delete every row of {plan.source} (none newer than {cutoff:%Y-%m-%d %H:%M}Z);"
                         " set allow_empty = true if that is intended")
        return []
    first = shape(conn, plan, cutoff)
    report.strategy = batches.choose(plan.policy.strategy, plan.partitioned, version, plan.indexed,
                                     first.expired_fraction)
    statements = [render(conn, plan.create_archive)] if plan.create_archive is not None else []
    if report.strategy == "sweep":
        assert plan.batch.sweep is not None
        k = max(1, math.ceil(plan.policy.batch_size / first.rows_per_page))
        statements.append(_mogrify(conn, plan.batch.sweep, {"cutoff": cutoff, **batches.block_range(0, k)}))
    else:
        statements.append(_mogrify(conn, plan.batch.limit, {"cutoff": cutoff, "limit": plan.policy.batch_size}))
    if dry_run:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(plan.source.ident, plan.cond),
                        {"cutoff": cutoff})
            expired = int(cur.fetchone()[0])
        conn.rollback()
        report.status, report.deleted = "planned", expired
        report.reason = f"{expired} row(s) expired; {report.strategy} batches repeat until none is left"
        return statements
    started = time.monotonic()
    try:
        if plan.create_archive is not None:
            with conn.cursor() as cur:
                cur.execute(plan.create_archive)
            conn.commit()
        walk = Walk(conn, target, plan, cutoff, budget, report)
        walk.expected = int(first.expired_fraction * first.pages * first.rows_per_page)
        if report.strategy == "sweep":
            walk.sweep(first)
        else:
            walk.limit()
        walk.finish()
    finally:
        report.seconds = round(time.monotonic() - started, 3)
    return statements if report.batches else []


def _result(reports: list[PolicyReport], actions: list[str], dry_run: bool, backoff_s: float) -> Result:
    metrics = {"policies": [r.as_dict() for r in reports], "deleted": sum(r.deleted for r in reports),
               "archived": sum(r.archived for r in reports)}
    if dry_run:
        return Result("ok", f"plan: {metrics['deleted']} expired row(s) in {len(reports)} polic(ies)", metrics, actions)
    parts = [f"{r.label}: {r.status}, deleted {r.deleted}" + (f", archived {r.archived}" if r.archived else "")
             + (f" ({r.reason})" if r.reason else "") for r in reports]
    deferred = next((r for r in reports if r.status == "deferred"), None)
    if deferred:
        return Result("deferred", "; ".join(parts), {**metrics, "reason": deferred.reason}, actions,
                      not_before=datetime.now(UTC) + timedelta(seconds=backoff_s))
    status = "warning" if any(r.status in ("refused", "failed", "partial") for r in reports) else "ok"
    return Result(status, "; ".join(parts), metrics, actions)
