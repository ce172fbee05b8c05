"""Metric series in the records (issue 10, item 1): every finished run's numeric metrics
become points (task, target, metric, at, value), written with the run's end; one series
reads back in time order; ``maintd.prune_history`` deletes points past the retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ConfigFactory, PgServer
from tests.test_postgres_support import ctx
from tests.test_prune_history import fresh_results
from workers.records.metrics import flatten


def test_flatten_names_nested_and_listed_values() -> None:
    flat = flatten({"database_bytes": 10, "ok": True, "label": "x", "disks": {"/": 41.5, "/var": 90},
                    "tables": [{"name": "public.t", "total_bytes": 5, "rows": 2.0}, {"nameless": 1}],
                    "by_mean": [{"queryid": "42", "query": "SELECT 1", "mean_ms": 3.5}],
                    "nan": float("nan"), "none": None})
    assert flat == {"database_bytes": 10.0, "disks./": 41.5, "disks./var": 90.0,
                    "tables.public.t.total_bytes": 5.0, "tables.public.t.rows": 2.0, "by_mean.42.mean_ms": 3.5}
    assert len(flatten({f"m{i}": i for i in range(5000)})) == 1000  # bounded per run


def test_finish_writes_points_and_series_reads_them(config: ConfigFactory, pg_server: PgServer) -> None:
    book = fresh_results(config, pg_server)
    start = datetime.now(UTC) - timedelta(days=3)
    for day in range(3):
        at = start + timedelta(days=day)
        run_id = book.runs.start(task_id=f"t{day}", task="postgres.stats", target="main", impact="none",
                                 host="h", worker="w/1", attempt=1, dry_run=False, started_at=at)
        book.runs.finish(run_id, status="ok", summary="s", actions=[], error=None, finished_at=at,
                         duration_s=1.0, metrics={"database_bytes": 1000 * (day + 1),
                                                  "tables": [{"name": "public.a", "total_bytes": day}]})
    # a whole row at once (quiet tasks) carries its points too
    book.runs.record(task_id="q", task="maintd.release_deferred", target=None, status="ok", summary="s",
                     impact="none", host="h", worker="w/1", attempt=1, dry_run=False, started_at=start,
                     finished_at=start, metrics={"released": 4})
    series = book.metrics.series("postgres.stats", "main", "database_bytes", start - timedelta(hours=1))
    assert [p.value for p in series] == [1000.0, 2000.0, 3000.0]
    assert series[0].at < series[1].at < series[2].at
    assert [p.value for p in book.metrics.series("postgres.stats", "main", "tables.public.a.total_bytes",
                                                 start + timedelta(hours=1))] == [1.0, 2.0]
    assert [p.value for p in book.metrics.series("maintd.release_deferred", None, "released", start)] == [4.0]
    assert ("main", "database_bytes") in book.metrics.names("postgres.stats", start)


def test_prune_history_deletes_old_points(config: ConfigFactory, pg_server: PgServer) -> None:
    book = fresh_results(config, pg_server, "[history]\nkeep_days = 30\nbatch_size = 100\n")
    now = datetime.now(UTC)
    for i in range(250):
        book.metrics.record(task="health.redis", target="cache", at=now - timedelta(days=40, minutes=i),
                            run_id=i, values={"used_memory": float(i)})
    book.metrics.record(task="health.redis", target="cache", at=now - timedelta(days=1), run_id=999,
                        values={"used_memory": 7.0})
    from tasks.core.maintd.history import prune

    plan = prune(ctx("maintd.prune_history", dry_run=True))
    assert plan.metrics["would_delete"]["maintd_metric_points"] == 250
    result = prune(ctx("maintd.prune_history"))
    assert result.metrics["deleted"]["maintd_metric_points"] == 250
    assert "250 metric point(s)" in result.summary
    left = book.metrics.series("health.redis", "cache", "used_memory", now - timedelta(days=365))
    assert [p.value for p in left] == [7.0]


def test_binned_series_keeps_lows_and_means(config: ConfigFactory, pg_server: PgServer) -> None:
    book = fresh_results(config, pg_server)
    since = datetime(2026, 11, 16, tzinfo=UTC)
    for i in range(100):  # one reading a minute for 100 minutes, a dip to 40 at minute 70
        book.metrics.record(task="health.overview", target=None, at=since + timedelta(minutes=i), run_id=i,
                            values={"score": 40.0 if i == 70 else 100.0})
    bins = book.metrics.binned("health.overview", None, "score", since, since + timedelta(minutes=100), bins=2)
    assert [(b[0], b[1], b[3]) for b in bins] == [(since, 100.0, 50), (since + timedelta(minutes=50), 40.0, 50)]
    assert bins[1][2] == pytest.approx((49 * 100 + 40) / 50)
