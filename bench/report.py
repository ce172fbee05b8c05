"""Reports benchmark, two parts on fresh databases of their own:

1. **series**: 1 M runs over 90 days (40 checks every 5 minutes) with 3 metric points each;
   one series over 90 days read from ``maintd_metric_points`` (maintd) against the same
   numbers pulled out of the runs' JSON through ``maintd_runs``'s (task, target, time) index
   (the peer: what a report would do without the points table).
2. **weekly**: ``reports.weekly`` (gather + HTML with every chart) over a week holding 1 M
   runs, against just reading that week's rows into Python (the peer: the least a report
   computed client-side would do).

    .venv/bin/python bench/report.py [--rows 1000000] [--runs 5]

Uses $MAINTD_TEST_POSTGRES_DSN when set, an embedded server otherwise. Prints medians and the
ratios. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


@contextmanager
def scratch_database(admin: str) -> Iterator[str]:
    name = f"maintd_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def bulk(url: str, *statements: str, params: dict[str, object] | None = None) -> None:
    conn = psycopg2.connect(url)  # no statement timeout for the bulk load
    with conn, conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        for sql in statements:
            cur.execute(sql, params or {})
    conn.close()


def vacuum(url: str) -> None:
    """What autovacuum does to an insert-only table soon after a load (PostgreSQL 13+): the
    visibility map that lets a series be read by an index-only scan, and fresh statistics."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    conn.cursor().execute("VACUUM (ANALYZE) maintd_runs, maintd_metric_points")
    conn.close()


def series_part(admin: str, rows: int, runs: int) -> None:
    from workers.records import Records

    with scratch_database(admin) as url:
        book = Records(url)
        book.runs.find(limit=1)  # migrate
        pairs = 40
        every_s = 90 * 86400 * pairs / rows
        started = time.perf_counter()
        bulk(url,
             "INSERT INTO maintd_runs (task_id, task, target, status, summary, metrics, impact, host, worker,"
             " started_at, finished_at, duration_s) SELECT 'b' || g, 'health.check' || (g %% 4), 'target-' || (g %% %(pairs)s),"
             " 'ok', 'fine', jsonb_build_object('a', g %% 97, 'b', g %% 89, 'c', g %% 83), 'none', 'h', 'w/1',"
             " now() - make_interval(secs => (g / %(pairs)s) * %(every)s), now() - make_interval(secs => (g / %(pairs)s) * %(every)s),"
             " 0.1 FROM generate_series(1, %(rows)s) g",
             "INSERT INTO maintd_metric_points (task, target, metric, at, run_id, value)"
             " SELECT task, target, m.k, finished_at, id, (metrics->>m.k)::float8 FROM maintd_runs"
             " CROSS JOIN unnest(ARRAY['a', 'b', 'c']) AS m(k)",
             params={"pairs": pairs, "every": every_s, "rows": rows})
        vacuum(url)
        print(f"series: {rows} runs over 90 days, {pairs} (task, target) pairs, 3 points each:"
              f" filled in {time.perf_counter() - started:.0f}s")
        task, target, since = "health.check1", "target-1", datetime.now(UTC) - timedelta(days=90)
        n = len(book.metrics.series(task, target, "a", since))

        def peer() -> object:
            return book.execute(lambda cur: (cur.execute(
                "SELECT finished_at, (metrics->>'a')::float8 FROM maintd_runs WHERE task = %s AND target = %s"
                " AND started_at >= %s ORDER BY started_at", (task, target, since)), cur.fetchall()))

        plan = book.execute(lambda cur: (cur.execute(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT at, value FROM maintd_metric_points WHERE task = %s AND target = %s"
            " AND metric = 'a' AND at >= %s ORDER BY at", (task, target, since)), cur.fetchall()))
        print("  " + "\n  ".join(str(r[0]) for r in plan[1][:3]))
        ours = median_ms(lambda: book.metrics.series(task, target, "a", since), runs)
        theirs = median_ms(peer, runs)
        print(f"90-day series ({n} points): maintd_metric_points {ours:.1f} ms, runs' JSON {theirs:.1f} ms,"
              f" ratio {theirs / ours:.1f}x (median of {runs})")
        book.close()


def weekly_part(admin: str, rows: int, runs: int) -> None:
    from tasks.core.reports import render, weekly
    from tests.report_history import CONFIG, bulk_health, daily, insert_daily
    from workers.config import parse_config
    from workers.records import Records

    with scratch_database(admin) as url:
        book = Records(url)
        book.runs.find(limit=1)
        until = datetime.now(UTC).replace(microsecond=0)
        since = until - timedelta(days=7)
        every_s = 7 * 86400 * 6 / rows  # 5 checks and the overview
        started = time.perf_counter()
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("SET synchronous_commit = off")
            bulk_health(cur, since, until, every_s, (until - timedelta(days=3), until - timedelta(days=3) + timedelta(hours=1)))
            insert_daily(cur, daily(until, days=90))
            cur.execute("SELECT count(*) FROM maintd_runs WHERE started_at >= %s", (since,))
            row = cur.fetchone()
            in_week = int(row[0]) if row else 0
        conn.close()
        vacuum(url)
        print(f"weekly: {in_week} runs in the week: filled in {time.perf_counter() - started:.0f}s")
        config = parse_config(CONFIG, "bench")

        def report() -> str:
            data = weekly.gather(book, config, since, until, "bench")
            return render.html(data, "bench")

        def peer() -> object:
            return book.execute(lambda cur: (cur.execute(
                "SELECT * FROM maintd_runs WHERE started_at >= %s AND started_at < %s", (since, until)),
                len(cur.fetchall())), transaction=False)

        page = report()
        t = time.perf_counter()
        gathered = weekly.gather(book, config, since, until, "bench", charts=False)
        t_sql = time.perf_counter() - t
        t = time.perf_counter()
        weekly.capacity.assess(book, config, until, chart=True)
        render.html(gathered, "bench")
        t_charts = time.perf_counter() - t
        print(f"  one run's parts: queries {t_sql:.2f} s, charts and HTML {t_charts:.2f} s")
        ours = median_ms(report, runs)
        theirs = median_ms(peer, runs)
        print(f"weekly report over {in_week} runs: {ours / 1000:.2f} s ({len(page) / 1e6:.1f} MB page,"
              f" {page.count('data:image/png')} charts); reading the week's rows: {theirs / 1000:.2f} s;"
              f" ratio report/read {ours / theirs:.2f} (median of {runs})")
        book.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--part", choices=("series", "weekly", "both"), default="both")
    args = parser.parse_args()
    embedded = None
    admin = os.environ.get("MAINTD_TEST_POSTGRES_DSN")
    if not admin:
        from workers.processes.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="maintd-bench-")) / "pg").start()
        admin = embedded.url()
    try:
        if args.part in ("series", "both"):
            series_part(admin, args.rows, args.runs)
        if args.part in ("weekly", "both"):
            weekly_part(admin, args.rows, args.runs)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
