"""Benchmark: one watchdog run over a large run history.

Generates ``--runs`` history rows (default 1,000,000) in a scratch results database for the
schedule of ``--targets`` PostgreSQL targets (every default entry of each), then times
``watch.watch`` (every finding, all entries; median of ``--repeat``) against the plainest
peer query a cron monitor would run on the same table — the last start of every
(task, target), ``SELECT task, target, max(started_at) ... GROUP BY`` — and prints the ratio.

    MAINTD_TEST_POSTGRES_DSN=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/watchdog.py --runs 1000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--targets", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    admin = os.environ.get("MAINTD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"maintd_bench_watchdog_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    try:
        return run(url, args)
    finally:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def run(url: str, args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "maintd.toml"
        config.write_text(f'[results]\nurl = "{url}"\n' + "".join(
            f'[[postgres]]\nname = "db{i}"\ndsn = "postgresql://x@127.0.0.1:1/db{i}"\n' for i in range(args.targets)))
        os.environ["MAINTD_CONFIG"] = str(config)
        from tasks.core.watchdog import watch
        from workers.config import get_config
        from workers.records import records
        from workers.schedule import expand, interval_s

        cfg = get_config()
        book = records(cfg)
        book.execute(lambda cur: cur.execute("SELECT 1"))  # migrated
        entries = [e for e in expand(cfg) if e.task != "watchdog.schedule"]
        now = datetime(2031, 3, 3, tzinfo=UTC)
        # Rows per entry in proportion to how often it runs (as a real history would be).
        weights = [1.0 / interval_s(e.cron) for e in entries]
        total = sum(weights)
        started = time.monotonic()
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            for e, w in zip(entries, weights, strict=True):
                n = max(10, int(args.runs * w / total))
                step = interval_s(e.cron)
                cur.execute(
                    "INSERT INTO maintd_runs (task_id, task, target, status, impact, host, worker, started_at,"
                    " finished_at, duration_s) SELECT md5(random()::text), %s, %s,"
                    " CASE WHEN g %% 50 = 0 THEN 'failed' ELSE 'ok' END, 'none', 'h', 'w',"
                    " %s - g * %s * interval '1 second', %s - g * %s * interval '1 second' + interval '2 seconds', 2.0"
                    " FROM generate_series(0, %s) g", (e.task, e.target, now, step, now, step, n - 1))
            cur.execute("ANALYZE maintd_runs")
            cur.execute("SELECT count(*) FROM maintd_runs")
            rows = cur.fetchone()[0]  # type: ignore[index]
        print(f"{rows} history rows for {len(entries)} entries generated in {time.monotonic() - started:.1f}s")
        watch.watch(cfg, book, now)  # first sight of every entry; warm caches

        def timed(fn: object) -> float:
            out = []
            for i in range(args.repeat):
                t = time.perf_counter()
                fn(i)  # type: ignore[operator]
                out.append(time.perf_counter() - t)
            return statistics.median(out)

        # a new clock each time (as every real run has): no cached slot is reused across runs
        ours = timed(lambda i: watch.watch(cfg, book, now + timedelta(minutes=1, seconds=7 * i + 1)))
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            def peer(_: int) -> None:
                cur.execute("SELECT task, target, max(started_at) FROM maintd_runs GROUP BY 1, 2")
                cur.fetchall()
            theirs = timed(peer)
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            watch.watch(cfg, book, now + timedelta(minutes=1))
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
        found, n = watch.watch(cfg, book, now + timedelta(minutes=1))
        print(f"watchdog run (5 findings, {n} entries): {ours * 1000:.1f} ms (median of {args.repeat});"
              f" {len(found)} finding(s)")
        print(f"peer: last start per (task, target) by GROUP BY: {theirs * 1000:.1f} ms")
        print(f"ratio watchdog / peer: {ours / theirs:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
