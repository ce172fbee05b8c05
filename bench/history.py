"""History benchmark: "latest outcome per task and target" (what ``maintd status`` and
``health.overview`` read) over a large run history, maintd's loose index scan against the
``DISTINCT ON`` query it replaced (the peer), on the same database in the same run; and one
``maintd.prune_history`` pass over the same history once 90 days have passed for most of it.

    .venv/bin/python bench/history.py [--rows 1000000] [--pairs 400] [--runs 7]

Uses $MAINTD_TEST_POSTGRES_DSN (this machine's PostgreSQL 15) when set, an embedded server
otherwise; creates and drops its own database. Prints medians and the ratio. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

OLD_LATEST = ("SELECT DISTINCT ON (task, target) * FROM maintd_runs WHERE status NOT IN"
              " ('running', 'skipped', 'deferred', 'retrying', 'lost') ORDER BY task, target, started_at DESC, id DESC")


def median_ms(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=400, help="distinct (task, target) pairs")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    embedded = None
    admin = os.environ.get("MAINTD_TEST_POSTGRES_DSN")
    if not admin:
        from workers.processes.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="maintd-bench-")) / "pg").start()
        admin = embedded.url()
    name = f"maintd_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    try:
        from workers.records import Records

        book = Records(url)
        tasks = 10
        targets = max(1, args.pairs // tasks)
        started = time.perf_counter()

        def fill(cur: object) -> None:
            cur.execute("SET synchronous_commit = off")  # type: ignore[attr-defined]
            cur.execute(  # type: ignore[attr-defined]
                "INSERT INTO maintd_runs (task_id, task, target, status, summary, impact, host, worker, attempt,"
                " started_at, finished_at, duration_s)"
                " SELECT 'bulk-' || g, 'task.' || (g %% %(tasks)s), 'target-' || ((g / %(tasks)s) %% %(targets)s),"
                " (ARRAY['ok','ok','ok','warning','critical','skipped','deferred','failed'])"
                "[1 + (g / (%(tasks)s * %(targets)s)) %% 8], 'generated', 'none', 'h', 'w/1', 1,"
                " now() - (g * 32 || ' seconds')::interval, now() - (g * 32 || ' seconds')::interval, 0.1"
                " FROM generate_series(1, %(rows)s) g", {"tasks": tasks, "targets": targets, "rows": args.rows})
            cur.execute("ANALYZE maintd_runs")  # type: ignore[attr-defined]

        book.runs.find(limit=1)  # the schema, migrated at first connect
        bulk = psycopg2.connect(url)  # no statement timeout for the bulk load
        with bulk, bulk.cursor() as cur:
            fill(cur)
        bulk.close()
        print(f"{args.rows} rows, {tasks * targets} (task, target) pairs, spanning"
              f" {args.rows * 32 / 86400:.0f} days: filled in {time.perf_counter() - started:.1f}s")

        def old() -> None:
            book.execute(lambda cur: (cur.execute(OLD_LATEST), cur.fetchall()))

        new_ms = median_ms(book.runs.latest, args.runs)
        old_ms = median_ms(old, args.runs)
        assert len(book.runs.latest()) == tasks * targets
        print(f"latest per task and target: maintd {new_ms:.1f} ms, DISTINCT ON {old_ms:.1f} ms,"
              f" ratio {old_ms / new_ms:.0f}x (median of {args.runs})")

        from datetime import timedelta

        cutoff = datetime.now(UTC) - timedelta(days=90)
        keep = book.runs.keep_ids()
        started = time.perf_counter()
        deleted = 0
        while (n := book.runs.prune(cutoff, keep, 5000)) > 0:
            deleted += n
        took = time.perf_counter() - started
        print(f"prune (90 days, batches of 5000): {deleted} rows in {took:.1f}s ({deleted / max(took, 1e-6):.0f}/s);"
              f" kept {book.execute(lambda cur: (cur.execute('SELECT count(*) FROM maintd_runs'), cur.fetchone())[1][0])};"
              f" latest afterwards {median_ms(book.runs.latest, 3):.1f} ms")
        book.close()
    finally:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
