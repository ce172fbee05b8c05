"""Dispatch benchmark: round trips of the gated ``maintd.noop`` against a bare Celery
task on the same broker, result backend and worker process.

    .venv/bin/python bench/dispatch.py [--n 500]

Uses $MAINTD_TEST_REDIS_URL / $MAINTD_TEST_POSTGRES_DSN when set (this machine's
Redis 7 and PostgreSQL 15), embedded servers otherwise. Prints p50/p99 of each and
the gate overhead (maintd minus bare) and ratio. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()

    from workers.processes.embedded import EmbeddedPostgres, EmbeddedRedis

    scratch = Path(tempfile.mkdtemp(prefix="maintd-bench-"))
    scratch.chmod(0o755)
    servers = []
    redis_url = os.environ.get("MAINTD_TEST_REDIS_URL")
    pg_dsn = os.environ.get("MAINTD_TEST_POSTGRES_DSN")
    if not redis_url:
        r = EmbeddedRedis(scratch / "redis").start()
        servers.append(r)
        redis_url = r.url
    if not pg_dsn:
        p = EmbeddedPostgres(scratch / "pg").start()
        servers.append(p)
        pg_dsn = p.url()
    db = f"maintd_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(pg_dsn)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db}"')
    dsn = pg_dsn.rsplit("/", 1)[0] + f"/{db}"
    config = scratch / "maintd.toml"
    config.write_text(f'[maintd]\nhost = "bench"\n[broker]\nurl = "{redis_url}"\n[results]\nurl = "{dsn}"\n'
                      f'[[postgres]]\nname = "bench"\ndsn = "{dsn}"\n')
    os.environ["MAINTD_CONFIG"] = str(config)
    os.environ["MAINTD_HOST"] = "bench"
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    log = open(os.environ.get("BENCH_WORKER_LOG") or scratch / "worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.bare_app", "worker", "-Q", "db.none,db.low", "-c", "1",
         "-n", "bench@bench", "--without-mingle", "--without-gossip", "-l", os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from bench.bare_app import bare_noop
        from tasks.maintd import noop

        # The database result backend is polled; a 2 ms interval keeps polling out of the numbers.
        def round_trip(task: object) -> float:
            t0 = time.perf_counter()
            task.delay("bench").get(timeout=30, interval=0.002)  # type: ignore[attr-defined]
            return (time.perf_counter() - t0) * 1000

        for _ in range(20):  # warm up both paths (connections, imports, schema)
            round_trip(noop)
            round_trip(bare_noop)
        gated: list[float] = []
        bare: list[float] = []
        for i in range(args.n):  # interleaved so drift affects both alike
            (gated if i % 2 == 0 else bare).append(round_trip(noop if i % 2 == 0 else bare_noop))
            (bare if i % 2 == 0 else gated).append(round_trip(bare_noop if i % 2 == 0 else noop))
        print(f"dispatch round trips, n={args.n} each, one worker process (-c 1), "
              f"broker {redis_url.split('@')[-1]}, backend+history on PostgreSQL")
        print(f"{'':14}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
        for name, vals in (("bare celery", bare), ("maintd.noop", gated)):
            print(f"{name:14}{pct(vals, .5):9.2f}{pct(vals, .99):9.2f}{statistics.mean(vals):9.2f}")
        over50 = pct(gated, .5) - pct(bare, .5)
        over99 = pct(gated, .99) - pct(bare, .99)
        print(f"gate overhead: p50 {over50:+.2f} ms, p99 {over99:+.2f} ms; ratio p50 {pct(gated, .5) / pct(bare, .5):.2f}x"
              f" (goal: overhead under 5 ms at p50)")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        from workers.records import records

        records().close()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()
        for s in servers:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
