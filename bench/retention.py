"""Retention benchmark: delete N expired rows under a concurrent writer, maintd's batched
retention against the runbooks' single ``DELETE``; and ``vacuum_bloated``'s scan over a
database with thousands of tables.

    .venv/bin/python bench/retention.py [--expired 2000000] [--fresh 200000] [--tables 5000] [--repeat 3]

Uses $MAINTD_TEST_POSTGRES_DSN when set (this machine's PostgreSQL 15), an embedded
PostgreSQL 18 otherwise; works in a scratch database dropped at the end. Prints total
time of each way, the writer's p50/p99/max latency during each (and at rest), the
ratio (medians of interleaved runs: the machine may be shared), and the scan timings.
Not a test: nothing is asserted.

The writer does what an application does to such a table: inserts new rows and
updates recent ones, one autocommit statement each, ~200 per second. A second probe
updates one *expired* row every 100 ms (a late correction, a GDPR flag): under the
single DELETE it waits for the whole DELETE to commit; under maintd at most one batch.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402

GOAL_P99_MS = 50.0
GOAL_RATIO = 1.5
GOAL_SCAN_S = 2.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def connect(dsn: str, app: str = "bench") -> psycopg2.extensions.connection:
    conn = psycopg2.connect(dsn, application_name=app, connect_timeout=10)
    conn.autocommit = True
    return conn


def load(dsn: str, expired: int, fresh: int) -> None:
    """A fresh ``events`` table: ``expired`` rows 400+ days old, ``fresh`` from the last day."""
    with closing(connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS events")
        cur.execute("CREATE TABLE events (id bigserial PRIMARY KEY, ts timestamptz NOT NULL, actor int,"
                    " payload text) WITH (autovacuum_enabled = false)")
        cur.execute("INSERT INTO events (ts, actor, payload) SELECT now() - interval '400 days'"
                    " - g * interval '1 second', g %% 1000, md5(g::text) FROM generate_series(1, %s) g", (expired,))
        cur.execute("INSERT INTO events (ts, actor, payload) SELECT now() - g * interval '10 ms', g %% 1000,"
                    " md5(g::text) FROM generate_series(1, %s) g", (fresh,))
        cur.execute("CREATE INDEX events_ts ON events (ts)")
        cur.execute("VACUUM ANALYZE events")
        cur.execute("CHECKPOINT")


class Writer(threading.Thread):
    """Inserts and updates recent rows at ~``rate`` statements/s; records each latency."""

    def __init__(self, dsn: str, first_fresh: int, last_fresh: int, rate: float = 200.0) -> None:
        super().__init__(daemon=True)
        self.conn = connect(dsn, "bench-writer")
        self.range = (first_fresh, last_fresh)
        self.pause = 1.0 / rate
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        cur = self.conn.cursor()
        n = 0
        while not self.stop.is_set():
            t0 = time.perf_counter()
            if n % 2:
                cur.execute("UPDATE events SET payload = md5(random()::text) WHERE id = %s",
                            (random.randint(*self.range),))
            else:
                cur.execute("INSERT INTO events (ts, actor, payload) VALUES (now(), 1, 'new')")
            self.latencies.append((time.perf_counter() - t0) * 1000)
            n += 1
            time.sleep(max(0.0, self.pause - (time.perf_counter() - t0)))
        self.conn.close()


class ExpiredProbe(threading.Thread):
    """Every 100 ms, update one random expired row not yet deleted; records each latency."""

    def __init__(self, dsn: str, expired: int) -> None:
        super().__init__(daemon=True)
        self.conn = connect(dsn, "bench-probe")
        self.expired = expired
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        cur = self.conn.cursor()
        while not self.stop.is_set():
            t0 = time.perf_counter()
            cur.execute("UPDATE events SET actor = actor WHERE id = %s", (random.randint(1, self.expired),))
            self.latencies.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.1)
        self.conn.close()


def under_load(dsn: str, expired: int, fresh: int, work: Any) -> dict[str, Any]:
    writer = Writer(dsn, expired + 1, expired + fresh)
    probe = ExpiredProbe(dsn, expired)
    writer.start()
    probe.start()
    time.sleep(1.0)  # the writer is warm before the work starts
    writer.latencies.clear()
    probe.latencies.clear()
    t0 = time.perf_counter()
    extra = work()
    took = time.perf_counter() - t0
    writer.stop.set()
    probe.stop.set()
    writer.join(30)
    probe.join(30)
    w, p = writer.latencies, probe.latencies
    return {"seconds": took, "writes": len(w), "p50": pct(w, 0.5), "p99": pct(w, 0.99), "max": max(w, default=0),
            "probe_p99": pct(p, 0.99), "probe_max": max(p, default=0), **(extra or {})}


def single_delete(dsn: str) -> dict[str, Any]:
    with closing(connect(dsn, "bench-runbook")) as conn, conn.cursor() as cur:
        cur.execute("SET statement_timeout = 0")
        cur.execute("DELETE FROM events WHERE ts < now() - interval '365 days'")
        return {"deleted": cur.rowcount}


def maintd_retention(dsn: str, archive: bool) -> dict[str, Any]:
    from tasks.core.postgres.retention import retention
    from workers.config import Config, PostgresTarget, RetentionPolicy
    from workers.records.outcome import RunContext

    policy = RetentionPolicy(table="events", column="ts", older_than="365d",
                             archive_table="events_archive" if archive else None)
    target = PostgresTarget(name="bench", dsn=dsn, statement_timeout_s=60, retention=[policy])  # type: ignore[arg-type]
    run = RunContext(task="postgres.retention", task_id="bench", target="bench", impact="medium", host="bench",
                     worker="bench", attempt=1, dry_run=False, config=Config(), started_at=datetime.now(UTC),
                     soft_deadline_s=3600)
    result = retention(run, target)
    p = result.metrics["policies"][0]
    return {"deleted": p["deleted"], "archived": p.get("archived", 0), "batches": p["batches"],
            "strategy": p["strategy"], "sweeps": p["sweeps"], "slowest_batch_s": p["max_batch_s"],
            "status": result.status}


def at_rest(dsn: str, expired: int, fresh: int) -> dict[str, Any]:
    return under_load(dsn, expired, fresh, lambda: time.sleep(5) or {})


def make_tables(dsn: str, n: int) -> None:
    with closing(connect(dsn)) as conn, conn.cursor() as cur:
        for start in range(0, n, 500):  # chunks: one transaction locks every table it creates
            cur.execute("BEGIN")
            for i in range(start, min(n, start + 500)):
                cur.execute(f"CREATE TABLE t{i} (id int, v text) WITH (autovacuum_enabled = false)")
            cur.execute("COMMIT")
        for i in range(0, n, max(1, n // 100)):  # 100 of them bloated
            cur.execute(f"INSERT INTO t{i} SELECT g, 'x' FROM generate_series(1, 3000) g")
            cur.execute(f"DELETE FROM t{i} WHERE id % 3 <> 0")


def scan_bench(dsn: str, n: int) -> dict[str, Any]:
    from tasks.core.postgres.session import connect as pg_connect
    from tasks.core.postgres.vacuum import candidates, vacuum_bloated
    from workers.config import Config, PostgresTarget
    from workers.records.outcome import RunContext

    make_tables(dsn, n)
    target = PostgresTarget(name="bench", dsn=dsn)  # type: ignore[arg-type]
    time.sleep(1.5)  # let the statistics of the writing session land
    scans, plans = [], []
    found = 0
    for _ in range(5):
        conn = pg_connect(target, "postgres.vacuum_bloated")
        t0 = time.perf_counter()
        found = len(candidates(conn, target))
        scans.append(time.perf_counter() - t0)
        conn.close()
        run = RunContext(task="postgres.vacuum_bloated", task_id="bench", target="bench", impact="low", host="bench",
                         worker="bench", attempt=1, dry_run=True, config=Config(), started_at=datetime.now(UTC),
                         soft_deadline_s=600)
        t0 = time.perf_counter()
        vacuum_bloated(run, target)
        plans.append(time.perf_counter() - t0)
    return {"tables": n, "bloated_found": found, "scan_median_s": statistics.median(scans),
            "dry_run_median_s": statistics.median(plans)}


def line(name: str, r: dict[str, Any]) -> str:
    return (f"{name:<26} {r['seconds']:8.2f} s  writer p50 {r['p50']:6.2f} ms  p99 {r['p99']:7.2f} ms"
            f"  max {r['max']:8.1f} ms  ({r['writes']} writes)  expired-row update p99 {r['probe_p99']:8.1f} ms"
            f"  max {r['probe_max']:8.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--expired", type=int, default=2_000_000)
    parser.add_argument("--fresh", type=int, default=200_000)
    parser.add_argument("--tables", type=int, default=5000)
    parser.add_argument("--archive", action="store_true", help="also time maintd's archive-then-delete")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way, interleaved (medians printed)")
    args = parser.parse_args()

    from workers.processes.embedded import EmbeddedPostgres

    emb = None
    pg_dsn = os.environ.get("MAINTD_TEST_POSTGRES_DSN")
    if not pg_dsn:
        scratch = Path(tempfile.mkdtemp(prefix="maintd-bench-"))
        scratch.chmod(0o755)
        emb = EmbeddedPostgres(scratch / "pg").start()
        pg_dsn = emb.url()
    admin = connect(pg_dsn)
    version = admin.server_version
    dbs = [f"maintd_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for db in dbs:
        admin.cursor().execute(f'CREATE DATABASE "{db}"')
    dsn, scan_dsn = (pg_dsn.rsplit("/", 1)[0] + f"/{db}" for db in dbs)
    try:
        print(f"PostgreSQL {version // 10000}.{version % 10000}; {args.expired:,} expired + {args.fresh:,} fresh rows,"
              f" index on ts; writer ~200 statements/s")
        load(dsn, args.expired, args.fresh)
        rest = at_rest(dsn, args.expired, args.fresh)
        print(line("writer at rest (5 s)", rest))
        bases, ours_runs = [], []
        for i in range(args.repeat):  # interleaved: a noisy neighbour hits both ways alike
            load(dsn, args.expired, args.fresh)
            base = under_load(dsn, args.expired, args.fresh, lambda: single_delete(dsn))
            print(line(f"runbook single DELETE #{i + 1}", base))
            load(dsn, args.expired, args.fresh)
            ours = under_load(dsn, args.expired, args.fresh, lambda: maintd_retention(dsn, archive=False))
            print(line(f"maintd batched #{i + 1}", ours) + f"  [{ours['strategy']}: {ours['batches']} batches in"
                  f" {ours['sweeps']} pass(es), slowest {ours['slowest_batch_s']:.2f} s, deleted {ours['deleted']:,}]")
            bases.append(base)
            ours_runs.append(ours)
        if args.archive:
            load(dsn, args.expired, args.fresh)
            arch = under_load(dsn, args.expired, args.fresh, lambda: maintd_retention(dsn, archive=True))
            print(line("maintd archive+delete", arch) + f"  [{arch['batches']} batches, archived {arch['archived']:,}]")
        ratios = [o["seconds"] / b["seconds"] for o, b in zip(ours_runs, bases, strict=True)]
        med = statistics.median
        print(f"median of {args.repeat}: single DELETE {med(b['seconds'] for b in bases):.2f} s, maintd"
              f" {med(o['seconds'] for o in ours_runs):.2f} s; time ratio maintd/DELETE {med(ratios):.2f}"
              f" (each: {', '.join(f'{r:.2f}' for r in ratios)}; goal <= {GOAL_RATIO})")
        print(f"writer p99 median: under maintd {med(o['p99'] for o in ours_runs):.2f} ms (goal < {GOAL_P99_MS:.0f} ms),"
              f" under DELETE {med(b['p99'] for b in bases):.2f} ms, at rest {rest['p99']:.2f} ms;"
              f" an update of an expired row waits up to {med(b['probe_max'] for b in bases):.0f} ms under DELETE,"
              f" {med(o['probe_max'] for o in ours_runs):.0f} ms under maintd")
        scan = scan_bench(scan_dsn, args.tables)
        print(f"vacuum_bloated over {scan['tables']:,} tables: scan {scan['scan_median_s'] * 1000:.0f} ms,"
              f" whole dry run {scan['dry_run_median_s'] * 1000:.0f} ms (median of 5; goal < {GOAL_SCAN_S:.0f} s);"
              f" {scan['bloated_found']} bloated found")
    finally:
        for db in dbs:
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()
        if emb is not None:
            emb.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
