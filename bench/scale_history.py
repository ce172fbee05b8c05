"""1 M rows of run history for the fleet's entries, loaded with COPY, and the reads that must
stay fast over it: `maintd status`, health.overview, the watchdog's pass, the exporter's scrape.
The peer: the ``DISTINCT ON`` form of "latest per task and target" on the same rows."""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
from croniter import croniter

from workers.config import Config
from workers.schedule import Entry, interval_s

COLUMNS = ("task_id", "task", "target", "status", "summary", "impact", "host", "worker", "attempt",
           "started_at", "finished_at", "duration_s", "entry")
DISTINCT_ON = ("SELECT DISTINCT ON (task, target) * FROM maintd_runs WHERE status NOT IN"
               " ('running', 'skipped', 'deferred', 'retrying', 'lost') ORDER BY task, target, started_at DESC, id DESC")


def _status(i: int) -> str:
    """Mostly ok, as a healthy fleet is; some warnings, a few critical, failed, skipped."""
    if i % 500 == 7:
        return "failed"
    if i % 300 == 11:
        return "skipped"
    if i % 200 == 3:
        return "critical"
    if i % 50 == 1:
        return "warning"
    return "ok"


def _slots(cron: str, now: datetime, n: int) -> list[datetime]:
    it = croniter(cron, now)
    return [it.get_prev(datetime) for _ in range(n)]


def fill(url: str, entries: list[Entry], rows: int, now: datetime) -> int:
    """Each entry's last runs at its own cron slots before ``now``, as many as ``rows`` allows over
    one common span (frequent entries have more); COPY in chunks; returns the rows written."""
    per_s = sum(1 / interval_s(e.cron) for e in entries)
    span_s = rows / per_s
    slots: dict[tuple[str, int], list[datetime]] = {}
    conn = psycopg2.connect(url)
    written = 0
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SET synchronous_commit = off")
            buf = io.StringIO()
            for e in entries:
                n = max(1, int(span_s / interval_s(e.cron)))
                n = min(n, rows - written)
                if n <= 0:
                    break
                key = (e.cron, n)
                if key not in slots:
                    slots[key] = _slots(e.cron, now - timedelta(seconds=90), n)
                for k, at in enumerate(slots[key]):
                    i = written + k
                    dur = 0.05 + (i % 97) / 40
                    buf.write(f"bench-{i}\t{e.task}\t{e.target or chr(92) + 'N'}\t{_status(i)}\tgenerated\t{e.impact}"
                              f"\th{i % 50:02d}\tw{i % 50:02d}/1\t1\t{at.isoformat()}"
                              f"\t{(at + timedelta(seconds=dur)).isoformat()}\t{dur:.3f}\t{e.name}\n")
                written += n
                if buf.tell() > 32 << 20:
                    buf.seek(0)
                    cur.copy_expert(f"COPY maintd_runs ({', '.join(COLUMNS)}) FROM STDIN", buf)
                    buf = io.StringIO()
            buf.seek(0)
            cur.copy_expert(f"COPY maintd_runs ({', '.join(COLUMNS)}) FROM STDIN", buf)
        conn.autocommit = True
        conn.cursor().execute("VACUUM ANALYZE maintd_runs")
    finally:
        conn.close()
    return written


def median_s(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def reads(config: Config, runs: int = 5) -> dict[str, float]:
    """Median seconds of each read, in this process (the CLI's start-up is timed by the caller)."""
    from tasks.core.health.overview import CHECKS, fold
    from tasks.core.watchdog.watch import watch
    from workers.cli.metrics import MaintdCollector
    from workers.cli.views import status_document
    from workers.records import records

    book = records(config)
    now = datetime.now(UTC)
    return {
        "status (latest per task and target, queues, workers, deferred)": median_s(status_document, runs),
        "health.overview (latest health per target, folded)":
            median_s(lambda: fold(book.runs.latest(list(CHECKS)), config, now), runs),
        "watchdog pass (recent runs of every entry, stuck runs)": median_s(lambda: watch(config, book, now), runs),
        "exporter scrape (every metric)": median_s(lambda: list(MaintdCollector(config).collect()), runs),
        "peer: latest per task and target by DISTINCT ON":
            median_s(lambda: book.execute(lambda cur: (cur.execute(DISTINCT_ON), cur.fetchall())), runs),
    }
