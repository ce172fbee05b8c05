"""Benchmark: backup.postgres (pg_dump -Fc -Z 0 | multithreaded zstd, streamed into the
store) against the runbooks' `pg_dump -Fc -f file` and `pg_dump | gzip > file`, on the
same generated database in the same run; and backup.restore_test's restore against a
plain `pg_restore` of the plain `pg_dump -Fc` archive.

    .venv/bin/python bench/backup.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--size-gb 1.0]

It creates a scratch database (realistic rows: text, numbers, timestamps, jsonb — not
pgbench's filler, which compresses 50x), runs everything, prints a table and drops the
database. The backup code runs in a child process (as in a worker) so its peak RSS is
its own; pg_dump's peak RSS is reported apart. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

FIRST = "Olivia Liam Emma Noah Amelia Oliver Ava Elijah Sophia Lucas Mia Levi Isla Mateo Aria Leo Zoe Hugo Lea Paul".split()
LAST = "Smith Jones Taylor Brown Williams Wilson Johnson Davies Martin Bernard Dubois Muller Schmidt Garcia Rossi".split()
CITIES = "London Paris Berlin Madrid Leeds Lyon Munich Porto Dublin Milan".split()


def pick(values: list[str], expr: str = "random()") -> str:
    """SQL: one of ``values``, chosen by ``expr`` in [0, 1)."""
    arr = "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]"
    return f"({arr})[1 + floor({expr} * {len(values)})::int]"


# Application text is made from templates with variables (log lines, notes, statuses), not
# uniformly random words: a word salad from a tiny vocabulary is an artificial worst case
# for LZ compressors with repeat-offset coding, as pgbench's blank filler is a best case.
SCHEMA = """
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL, city text,
                        created timestamptz NOT NULL, profile jsonb);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
                     total numeric(12,2) NOT NULL, currency text NOT NULL, created timestamptz NOT NULL,
                     shipped timestamptz, items jsonb NOT NULL, note text);
CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL, customer_id int, kind text NOT NULL,
                     user_agent text, payload jsonb NOT NULL, message text NOT NULL);
"""

MESSAGE = f"""CASE floor(random() * 6)::int
  WHEN 0 THEN format('GET /api/v1/orders/%s completed in %sms status=%s request_id=%s', floor(random() * 900000)::int,
                     floor(random() * 900)::int, {pick(["200", "200", "200", "304", "404", "500"])}, substr(md5(random()::text), 1, 16))
  WHEN 1 THEN format('user %s logged in from %s.%s.%s.%s (%s)', floor(random() * 200000)::int, 10, floor(random() * 255)::int,
                     floor(random() * 255)::int, floor(random() * 255)::int, {pick(["password", "sso", "api key"])})
  WHEN 2 THEN format('payment of %s %s %s: %s', round((random() * 500)::numeric, 2), {pick(["GBP", "EUR", "USD"])},
                     {pick(["accepted", "accepted", "declined", "refunded"])}, {pick(["ok", "insufficient funds", "card expired", "3DS challenge passed"])})
  WHEN 3 THEN format('order %s shipped to %s via %s, tracking %s', floor(random() * 900000)::int, {pick(CITIES)},
                     {pick(["DHL", "UPS", "Royal Mail", "DPD"])}, upper(substr(md5(random()::text), 1, 12)))
  WHEN 4 THEN format('cache %s for key product:%s (%s ms)', {pick(["hit", "hit", "miss"])}, floor(random() * 50000)::int,
                     round((random() * 5)::numeric, 2))
  ELSE format('job %s finished: %s rows processed, %s skipped', {pick(["nightly-export", "price-sync", "reindex", "mailer"])},
              floor(random() * 100000)::int, floor(random() * 50)::int)
END"""


def fill(dsn: str, size_gb: float) -> dict[str, Any]:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SET synchronous_commit = off")
    cur.execute(SCHEMA)
    cur.execute(f"""
        INSERT INTO customers (name, email, city, created, profile)
        SELECT {pick(FIRST)} || ' ' || {pick(LAST)}, 'user' || g || '@' || {pick(["example.com", "mail.net", "corp.io"])},
               {pick(CITIES)}, now() - random() * interval '1000 days',
               jsonb_build_object('tier', {pick(["basic", "premium", "trial"])}, 'newsletter', g % 2 = 0,
                                  'score', round((random() * 100)::numeric, 1))
        FROM generate_series(1, 200000) g""")
    target = size_gb * 1024 ** 3
    batch = 0
    started = time.monotonic()
    while True:
        cur.execute("SELECT sum(pg_table_size(c.oid)) FROM pg_class c WHERE c.relname IN ('customers','orders','events')")
        size = int(cur.fetchone()[0] or 0)  # type: ignore[index]
        print(f"  generated {size / 1024 ** 3:.2f} GB of table data ({time.monotonic() - started:.0f}s)", flush=True)
        if size >= target:
            break
        batch += 1
        cur.execute(f"""
            INSERT INTO orders (customer_id, status, total, currency, created, shipped, items, note)
            SELECT 1 + floor(random() * 200000)::int, {pick(["new", "paid", "shipped", "delivered", "refunded"])},
                   round((random() * 500)::numeric, 2), {pick(["GBP", "EUR", "USD"])},
                   now() - random() * interval '700 days', CASE WHEN g % 4 > 0 THEN now() - random() * interval '600 days' END,
                   jsonb_build_array(jsonb_build_object('sku', 'SKU-' || floor(random() * 5000)::int, 'qty', 1 + g % 4,
                                                        'price', round((random() * 100)::numeric, 2)),
                                     jsonb_build_object('sku', 'SKU-' || floor(random() * 5000)::int, 'qty', 1)),
                   CASE WHEN g % 3 = 0 THEN {pick(["Leave at the door", "Call before delivery", "Gift wrap please",
                                                   "Deliver after 6pm", "Fragile: handle with care"])} END
            FROM generate_series(1, 250000) g""")
        cur.execute(f"""
            INSERT INTO events (at, customer_id, kind, user_agent, payload, message)
            SELECT now() - random() * interval '90 days', 1 + floor(random() * 200000)::int,
                   {pick(["page_view", "click", "login", "error", "api_call", "checkout"])},
                   'Mozilla/5.0 (' || {pick(["X11; Linux x86_64", "Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 14_2"])}
                       || ') Chrome/' || (100 + g % 25) || '.0',
                   jsonb_build_object('path', '/' || {pick(["orders", "cart", "account", "search", "products"])} || '/'
                                              || floor(random() * 10000)::int,
                                      'ms', floor(random() * 2000)::int, 'status', (ARRAY[200,200,200,201,304,404,500])[1 + g % 7],
                                      'trace', md5(random()::text)),
                   {MESSAGE}
            FROM generate_series(1, 600000) g""")
    cur.execute("VACUUM ANALYZE")
    cur.execute("SELECT pg_database_size(current_database())")
    total = int(cur.fetchone()[0])  # type: ignore[index]
    conn.close()
    return {"table_bytes": size, "database_bytes": total, "batches": batch}


def timed_child(argv: list[str], stdout: Any = None, stdin: Any = None) -> tuple[subprocess.Popen[bytes], float]:
    return subprocess.Popen(argv, stdout=stdout, stdin=stdin, stderr=subprocess.PIPE), time.monotonic()


def wait_rss(proc: subprocess.Popen[bytes]) -> tuple[int, int]:
    """Exit code and peak RSS (KB) of one child."""
    code, rss, _cpu = wait_usage(proc)
    return code, rss


def wait_usage(proc: subprocess.Popen[bytes]) -> tuple[int, int, float]:
    """Exit code, peak RSS (KB) and CPU seconds (user + system) of one child."""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def plain_custom(bin_dir: Path, conninfo: str, out: Path, *extra: str) -> dict[str, Any]:
    proc, t0 = timed_child([str(bin_dir / "pg_dump"), "-Fc", *extra, "-f", str(out), "-d", conninfo])
    code, rss, cpu = wait_usage(proc)
    wall = time.monotonic() - t0
    assert code == 0, proc.stderr.read() if proc.stderr else code
    return {"wall_s": wall, "bytes": out.stat().st_size, "rss_worker_kb": None, "rss_tool_kb": rss,
            "cpu_tool_s": cpu, "cpu_worker_s": 0.0}


def plain_gzip(bin_dir: Path, conninfo: str, out: Path) -> dict[str, Any]:
    with open(out, "wb") as fh:
        dump, t0 = timed_child([str(bin_dir / "pg_dump"), "-d", conninfo], stdout=subprocess.PIPE)
        gz = subprocess.Popen([shutil.which("gzip") or "gzip"], stdin=dump.stdout, stdout=fh, stderr=subprocess.PIPE)
        assert dump.stdout is not None
        dump.stdout.close()
        c1, r1 = wait_rss(dump)
        c2, r2 = wait_rss(gz)
    wall = time.monotonic() - t0
    assert c1 == 0 and c2 == 0, (c1, c2)
    return {"wall_s": wall, "bytes": out.stat().st_size, "rss_worker_kb": None, "rss_tool_kb": max(r1, r2)}


def maintd_backup(dsn: str, store: dict[str, Any], level: int, threads: int,
                  tuning: dict[str, int] | None = None) -> dict[str, Any]:
    """backup.postgres's Celery-free code in a fresh process (like a pool worker)."""
    spec = json.dumps({"dsn": dsn, "store": {**store, "compression_level": level, "compression_threads": threads,
                                              "compression_tuning": tuning or {}}})
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - t0
    if out.returncode != 0:
        raise SystemExit(f"backup child failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    return result


def child(spec_text: str) -> None:
    spec = json.loads(spec_text)
    from tasks.core.backup import postgres
    from tasks.core.backup.coordinate import Compression
    from tasks.core.backup.stores import open_store
    from workers.config import PostgresTarget, StoreSection

    section = StoreSection(**spec["store"])
    store = open_store(section)
    target = PostgresTarget(name="bench", dsn=spec["dsn"])
    t0 = time.monotonic()
    result = postgres.backup(target, store, host="bench", task_id="bench", compression=Compression.of(section),
                             timeout_s=3600)
    wall = time.monotonic() - t0
    me, tools = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"wall_s": wall, "bytes": result.metrics["size_bytes"], "raw_bytes": result.metrics["raw_bytes"],
                      "backup_id": result.metrics["backup_id"], "pg_dump": result.metrics["tools"].get("pg_dump"),
                      "rss_worker_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "rss_tool_kb": tools.ru_maxrss, "cpu_tool_s": tools.ru_utime + tools.ru_stime,
                      "cpu_worker_s": me.ru_utime + me.ru_stime}))


def restore_plain(bin_dir: Path, admin_dsn: str, conninfo_of: Any, archive: Path) -> float:
    name = f"maintd_bench_plain_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(admin_dsn)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        t0 = time.monotonic()
        subprocess.run([str(bin_dir / "pg_restore"), "-d", conninfo_of(name), str(archive)], check=True,
                       capture_output=True)
        return time.monotonic() - t0
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def default_level() -> int:
    from workers.config import StoreSection

    return int(StoreSection.model_fields["compression_level"].default)


# The "no larger than pg_dump -Fc" setting of ops/runbooks/backup.postgres.md: level 6's lazy
# matching with small match-finder tables and 7-byte minimum matches (rows of text and numbers).
SMALL_TUNING = {"min_match": 7, "search_log": 1, "chain_log": 14, "hash_log": 16}


def label_of(level: int, tuning: dict[str, int], threads: int) -> str:
    return f"zstd -{level}{' tuned' if tuning else ''}, {threads} threads"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default=os.environ.get("MAINTD_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--size-gb", type=float, default=1.0)
    p.add_argument("--level", type=int, default=default_level(), help="zstd level (default: the [store] default)")
    p.add_argument("--tuning", type=json.loads, default={}, help="zstd parameters over --level, JSON (default: none)")
    p.add_argument("--small-level", type=int, default=6, help="a second, slower zstd level for the size trade-off")
    p.add_argument("--small-tuning", type=json.loads, default=SMALL_TUNING, help="its zstd parameters, JSON")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child")
    args = p.parse_args()
    if args.child:
        child(args.child)
        return

    from psycopg2.extensions import make_dsn, parse_dsn

    from tests.test_backup_support import MotoS3
    from workers.doors import pgtools

    params = parse_dsn(args.dsn)
    name = f"maintd_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(args.dsn)
    admin.autocommit = True
    major = admin.server_version // 10000
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    dsn = make_dsn(**{**params, "dbname": name})

    def conninfo_of(db: str) -> str:
        return make_dsn(**{**params, "dbname": db})

    tool = pgtools.tool_for("pg_dump", major, "the server")
    bin_dir = Path(tool.path).parent
    work = Path(tempfile.mkdtemp(prefix="maintd-bench-"))
    s3 = None
    try:
        print(f"PostgreSQL {major}, pg_dump {tool.version} ({bin_dir}); generating ≥{args.size_gb} GB in {name} …")
        info = fill(dsn, args.size_gb)
        rows: list[tuple[str, dict[str, Any]]] = []
        print("plain pg_dump -Fc -f file …", flush=True)
        rows.append(("pg_dump -Fc -f file (runbook 001)", plain_custom(bin_dir, dsn, work / "plain.dump")))
        print("pg_dump -Fc -Z 0 -f file (no compression: the floor of any pipeline) …", flush=True)
        floor = plain_custom(bin_dir, dsn, work / "raw.dump", "-Z", "0")
        (work / "raw.dump").unlink()
        print("pg_dump | gzip > file …", flush=True)
        rows.append(("pg_dump | gzip > file (runbook 000)", plain_gzip(bin_dir, dsn, work / "plain.sql.gz")))
        print("maintd backup.postgres → local store …", flush=True)
        local = {"kind": "local", "path": str(work / "store")}
        mine = maintd_backup(dsn, local, args.level, args.threads, args.tuning)
        rows.append((f"maintd → local ({label_of(args.level, args.tuning, args.threads)})", mine))
        if (args.small_level, args.small_tuning) != (args.level, args.tuning):
            print(f"maintd backup.postgres → local store, {label_of(args.small_level, args.small_tuning, 2)} …",
                  flush=True)
            small = maintd_backup(dsn, {"kind": "local", "path": str(work / "store-small")}, args.small_level,
                                  args.threads, args.small_tuning)
            rows.append((f"maintd → local ({label_of(args.small_level, args.small_tuning, args.threads)})", small))
        print("maintd backup.postgres → S3 (moto server) …", flush=True)
        s3 = MotoS3(work / "moto")
        bucket = s3.bucket()
        s3_store = {"kind": "s3", "bucket": bucket, "prefix": "bench", "endpoint_url": s3.endpoint,
                    "access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}
        rows.append((f"maintd → S3/moto (zstd -{args.level}, 16 MB parts)", maintd_backup(dsn, s3_store, args.level,
                                                                                       args.threads, args.tuning)))

        print("restore: plain pg_restore of the pg_dump -Fc archive …", flush=True)
        plain_restore = restore_plain(bin_dir, args.dsn, conninfo_of, work / "plain.dump")
        print("restore: maintd backup.restore_test from the local store …", flush=True)
        from datetime import UTC, datetime

        from tasks.core.backup import drill
        from tasks.core.backup.stores import open_store
        from workers.config import PostgresTarget, StoreSection

        t0 = time.monotonic()
        tested = drill.restore_test(open_store(StoreSection(**local)), PostgresTarget(name="bench", dsn=dsn),
                                           now=datetime.now(UTC), timeout_s=7200)
        test_total = time.monotonic() - t0
        assert tested.status == "ok", tested

        rows.insert(1, ("pg_dump -Fc -Z 0 -f file (no compression)", floor))
        base = rows[0][1]
        print()
        print(f"database: {info['table_bytes'] / 1024 ** 3:.2f} GB of table data ({info['database_bytes'] / 1024 ** 3:.2f} GB"
              f" with indexes); raw custom-format dump {mine['raw_bytes'] / 1024 ** 2:.0f} MB; {mine['pg_dump']}")
        print(f"{'method':44} {'wall s':>7} {'speed-up':>8} {'size MB':>8} {'size/plain':>10} "
              f"{'worker RSS MB':>13} {'tool RSS MB':>11}")
        for label, r in rows:
            worker = f"{r['rss_worker_kb'] / 1024:.0f}" if r.get("rss_worker_kb") else "-"
            print(f"{label:44} {r['wall_s']:7.1f} {base['wall_s'] / r['wall_s']:7.2f}x {r['bytes'] / 1024 ** 2:8.1f}"
                  f" {r['bytes'] / base['bytes']:10.3f} {worker:>13} {r['rss_tool_kb'] / 1024:11.0f}")
        print()
        print(f"{'CPU seconds per stage':44} {'pg_dump':>8} {'worker':>8} {'total':>8}   (2 cores)")
        for label, r in rows:
            if "cpu_tool_s" in r:
                print(f"{label:44} {r['cpu_tool_s']:8.1f} {r['cpu_worker_s']:8.1f}"
                      f" {r['cpu_tool_s'] + r['cpu_worker_s']:8.1f}")
        print("(the server backend's COPY is not counted: the same in every row; pg_dump -Fc compresses in pg_dump)")
        # pg_dump -Fc is one thread busy all along: its CPU time is its wall time on a quiet machine
        goal = min(base["wall_s"], base["cpu_tool_s"]) / 3
        print(f"3x pg_dump -Fc ({base['cpu_tool_s']:.1f} CPU-s, {base['wall_s']:.1f} s wall) = {goal:.1f} s wall:"
              f" at most {2 * goal:.1f} CPU-s on 2 cores for pg_dump -Z 0, the backend's COPY and compression")
        print(f"default ({label_of(args.level, args.tuning, args.threads)}): {base['wall_s'] / mine['wall_s']:.2f}x"
              f" faster than pg_dump -Fc, size {mine['bytes'] / base['bytes']:.3f} of it")
        print()
        m = tested.metrics
        print(f"{'restore':44} {'wall s':>7} {'vs plain':>8}")
        print(f"{'pg_restore of the pg_dump -Fc file':44} {plain_restore:7.1f} {1:7.2f}x")
        print(f"{'maintd restore_test: zstd -d | pg_restore':44} {m['restore_duration_s']:7.1f}"
              f" {plain_restore / m['restore_duration_s']:7.2f}x")
        print(f"{'maintd restore_test incl. count(*) + drop':44} {test_total:7.1f} {plain_restore / test_total:7.2f}x")
    finally:
        if s3 is not None:
            s3.stop()
        shutil.rmtree(work, ignore_errors=True)
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        print(f"dropped {name}")


if __name__ == "__main__":
    main()
