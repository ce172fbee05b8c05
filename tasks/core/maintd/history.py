"""``maintd.prune_history``: maintd's own records do not grow without bound.

Runs (``maintd_runs``), alert deliveries and metric points (``maintd_metric_points``) older than ``[history] keep_days`` (90) are
deleted in short batches, oldest first; the newest row and the newest finding of every
(task, target) stay whatever their age (``maintd status`` and ``health.overview`` still know
the last word on a target that has not run for months), and so does the newest delivery per
task, target, channel and kind (recoveries still reach the channels that heard the problem).
Celery's result rows (``celery_taskmeta``, ``celery_groupmeta``) go after ``results_keep_days``
(30). Each batch is its own transaction; the run stops at its time budget and the next run
continues.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from workers.records import Records, records
from workers.records.outcome import Result, RunContext


@dataclass
class Step:
    name: str
    describe: str
    prune: Callable[[], int]
    count: Callable[[], int]


@dataclass
class Pruned:
    counts: dict[str, int] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)


def steps(book: Records, now: datetime, keep_days: int, results_keep_days: int, batch: int) -> list[Step]:
    cutoff = now - timedelta(days=keep_days)
    results_cutoff = now - timedelta(days=results_keep_days)
    keep_runs = book.runs.keep_ids()
    keep_deliveries = book.alerts.keep_delivery_ids()
    out = [
        Step("maintd_runs", f"DELETE FROM maintd_runs WHERE started_at < '{cutoff:%Y-%m-%d %H:%M}Z'"
                            f" (the newest row and finding of each task and target kept: {len(keep_runs)} rows)",
             lambda: book.runs.prune(cutoff, keep_runs, batch), lambda: book.runs.prunable(cutoff, keep_runs)),
        Step("maintd_alert_deliveries", f"DELETE FROM maintd_alert_deliveries WHERE at < '{cutoff:%Y-%m-%d %H:%M}Z'"
                                        " (the newest per task, target, channel and kind kept)",
             lambda: book.alerts.prune_deliveries(cutoff, keep_deliveries, batch),
             lambda: book.alerts.prunable_deliveries(cutoff, keep_deliveries)),
        Step("maintd_metric_points", f"DELETE FROM maintd_metric_points WHERE at < '{cutoff:%Y-%m-%d %H:%M}Z'",
             lambda: book.metrics.prune(cutoff, batch), lambda: book.metrics.prunable(cutoff)),
    ]
    for table in book.celery_results.existing():
        out.append(Step(table, f"DELETE FROM {table} WHERE date_done < '{results_cutoff:%Y-%m-%d %H:%M}Z'",
                        lambda t=table: book.celery_results.prune(t, results_cutoff, batch),  # type: ignore[misc]
                        lambda t=table: book.celery_results.prunable(t, results_cutoff)))  # type: ignore[misc]
    return out


def prune(run: RunContext) -> Result:
    """Delete what is past its keep time, in batches, within the run's budget."""
    settings = run.config.history
    book = records(run.config)
    budget = run.budget()
    done = Pruned()
    for step in steps(book, datetime.now(UTC), settings.keep_days, settings.results_keep_days,
                      settings.batch_size):
        if run.dry_run:
            n = step.count()
            done.counts[step.name] = n
            done.actions.append(f"{step.describe}: {n} rows")
            continue
        total = 0
        while True:
            budget.checkpoint()
            if budget.exhausted():
                done.unfinished.append(step.name)
                break
            n = step.prune()
            total += n
            if n < settings.batch_size:
                break
        done.counts[step.name] = total
        if total:
            done.actions.append(f"{step.describe}: {total} rows")
    return _result(done, settings.keep_days, settings.results_keep_days, run.dry_run)


def _result(done: Pruned, keep_days: int, results_keep_days: int, dry_run: bool) -> Result:
    verb = "would delete" if dry_run else "deleted"
    runs, deliveries = done.counts.get("maintd_runs", 0), done.counts.get("maintd_alert_deliveries", 0)
    results = sum(v for k, v in done.counts.items() if k.startswith("celery_"))
    points = done.counts.get("maintd_metric_points", 0)
    summary = (f"{verb} {runs} run(s), {deliveries} alert deliveries and {points} metric point(s)"
               f" older than {keep_days} days,"
               f" {results} Celery result(s) older than {results_keep_days} days")
    metrics = {"deleted" if not dry_run else "would_delete": done.counts, "keep_days": keep_days,
               "results_keep_days": results_keep_days}
    if done.unfinished:
        return Result("warning", f"{summary}; time budget spent before {', '.join(done.unfinished)} was done"
                                 " (the next run continues)", {**metrics, "unfinished": done.unfinished},
                      done.actions)
    return Result("ok", summary, metrics, done.actions)
