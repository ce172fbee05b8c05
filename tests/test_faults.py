"""Faults: a worker killed mid-task, Redis restarted under a running worker."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import ROOT, ConfigFactory, maintd_cmd, wait_until
from workers.processes.embedded import EmbeddedPostgres, EmbeddedRedis

pytestmark = pytest.mark.slow  # worker/broker mechanics: run once, against the machine's services


def pg_target(dsn: str) -> str:
    return f'[[postgres]]\nname = "local"\ndsn = "{dsn}"\n'


def runs_of(task_id: str) -> list[dict[str, Any]]:
    from workers.records import records

    return sorted(records().runs.find(task_id=task_id), key=lambda r: r["id"])


def running_pid(task_id: str) -> int | None:
    rows = [r for r in runs_of(task_id) if r["status"] == "running"]
    return int(rows[-1]["worker"].rsplit("/", 1)[1]) if rows else None


def test_pool_process_killed_mid_task_runs_again_once(config: ConfigFactory, target_db: str,
                                                      start_worker: Any) -> None:
    config.write(pg_target(target_db))
    start_worker(role="db", host="db-a")
    start_worker(role="db", host="db-b")
    from tasks.maintd import hold

    result = hold.delay("local", seconds=4)
    pid = wait_until(lambda: running_pid(result.id), 30, "the run to start")
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    outcome = result.get(timeout=90)
    assert outcome["status"] == "ok" and outcome["attempt"] == 2
    time.sleep(3)  # nothing else may run it a third time
    rows = runs_of(result.id)
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "lost"), (2, "ok")]
    assert "worker lost" in rows[0]["error"]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_whole_worker_killed_task_redelivered_to_surviving_worker(config: ConfigFactory, target_db: str,
                                                                  start_worker: Any) -> None:
    """SIGKILL to a worker's whole process tree: the unacked message comes back after the
    visibility timeout (short here, with every task's hard limit lowered below it) and
    runs on the worker that survived."""
    from workers.catalog import load_catalog

    limits = "".join(f'[tasks."{name}"]\nsoft_time_limit = 20\ntime_limit = 25\n'
                     for name, spec in load_catalog().items() if spec.time_limit > 25)
    config.write(pg_target(target_db) + limits, visibility_timeout=30)
    victim = start_worker(role="db", host="db-a")
    from tasks.maintd import hold

    # Only the victim is up when the message is taken.
    result = hold.delay("local", seconds=3)
    pid = wait_until(lambda: running_pid(result.id), 30, "the run to start on db-a")
    assert "db-slow@db-a" in runs_of(result.id)[-1]["worker"]
    tree = [victim.proc.pid] + [p.pid for p in psutil.Process(victim.proc.pid).children(recursive=True)]
    assert pid in tree
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    start_worker(role="db", host="db-b")
    outcome = result.get(timeout=120)
    assert outcome["status"] == "ok"
    rows = runs_of(result.id)
    assert [r["status"] for r in rows] == ["lost", "ok"]
    assert "db-slow@db-b" in rows[-1]["worker"]


@pytest.fixture
def own_redis(scratch_root: Path) -> Any:
    server = EmbeddedRedis(scratch_root / f"redis-{time.time_ns()}").start()
    yield server
    server.stop()


def test_redis_restart_under_running_worker(tmp_path: Path, results_db: str, target_db: str, own_redis: EmbeddedRedis,
                                            start_worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    factory = ConfigFactory(tmp_path / "maintd.toml", own_redis.url, results_db)
    monkeypatch.setenv("MAINTD_CONFIG", str(factory.path))
    path = factory.write(pg_target(target_db))
    worker = start_worker(role="db")

    def run_noop() -> subprocess.CompletedProcess[str]:
        # a fresh process: the CLI as an operator would use it, on this test's own broker
        return subprocess.run(maintd_cmd("--config", str(path), "run", "maintd.noop", "local", "--wait",
                                         "--timeout", "60"), capture_output=True, text=True, cwd=ROOT, timeout=90)

    first = run_noop()
    assert first.returncode == 0 and '"status": "ok"' in first.stdout, first.stderr
    offset = len(worker.log.read_bytes())
    own_redis.stop()
    time.sleep(2)
    own_redis.start()  # same port, empty: queues and bindings are gone too
    wait_until(lambda: "Connected to redis://" in worker.log.read_text(errors="replace")[offset:], 60,
               "the worker to reconnect")
    second = run_noop()
    assert second.returncode == 0 and '"status": "ok"' in second.stdout, second.stderr + worker.log.read_text()[-3000:]
    assert worker.proc.poll() is None  # the same worker, not a restart


def test_target_postgres_stopped_one_alert_then_one_recovery(tmp_path: Path, scratch_root: Path, config: ConfigFactory,
                                                             start_worker: Any) -> None:
    from tests.test_alerts_support import start_capture

    target = EmbeddedPostgres(scratch_root / f"target-{time.time_ns()}").start()
    capture = start_capture()
    try:
        config.write(f'[alerting]\nbackoff_s = 0.05\n[[alerts]]\nkind = "webhook"\nurl = "{capture.url("/hook")}"\n'
                     f'[[postgres]]\nname = "main"\ndsn = "{target.url()}"\nconnect_timeout_s = 3\n')
        start_worker(role="db")
        from tasks.health import postgres

        assert postgres.delay("main").get(timeout=30)["status"] in ("ok", "warning")
        assert capture.at("/hook") == []  # first sight ok: nothing to say

        target.stop()
        for _ in range(2):  # seen twice while down: still one alert
            started = time.monotonic()
            outcome = postgres.delay("main").get(timeout=30)
            assert outcome["status"] == "critical", outcome
            assert time.monotonic() - started < 3 + 5, "critical within the connect timeout"
        alerts = [c.json() for c in capture.at("/hook")]
        assert [(a["kind"], a["severity"], a["target"]) for a in alerts] == [("problem", "critical", "main")]

        target.start()
        assert postgres.delay("main").get(timeout=30)["status"] in ("ok", "warning")
        assert postgres.delay("main").get(timeout=30)["status"] in ("ok", "warning")
        alerts = [c.json() for c in capture.at("/hook")]
        assert [a["kind"] for a in alerts] == ["problem", "recovery"]
    finally:
        capture.server.shutdown()
        target.stop()
