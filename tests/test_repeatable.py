"""Runs that must not repeat themselves (issue 8, item 2): a non-repeatable task is acknowledged
when its run starts; a lost run is recorded ``lost`` and alerted and never runs again on its own;
a second delivery of its task id is refused; ad hoc dispatches expire (default one hour)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.conftest import ROOT, ConfigFactory, RedisServer, maintd_cmd, wait_until
from tests.test_alerts_support import start_capture


def pg_target(dsn: str) -> str:
    return f'[[postgres]]\nname = "local"\ndsn = "{dsn}"\n'


NOT_REPEATABLE_HOLD = '[tasks."maintd.hold"]\nrepeatable = false\n'


def runs_of(task_id: str) -> list[dict[str, Any]]:
    from workers.records import records

    return sorted(records().runs.find(task_id=task_id), key=lambda r: r["id"])


def test_declared_policy_and_how_celery_acknowledges(config: ConfigFactory) -> None:
    config.write()
    from workers.app import app
    from workers.catalog import load_catalog

    specs = load_catalog()
    assert not specs["backup.restore"].repeatable and not specs["postgres.stats_reset"].repeatable
    assert specs["postgres.vacuum_full"].repeatable and specs["postgres.retention"].repeatable
    restore, vacuum = app.tasks["backup.restore"], app.tasks["postgres.vacuum_full"]
    # acknowledged when the run starts; a lost worker neither requeues nor retries it
    assert (restore.acks_late, restore.reject_on_worker_lost, restore.retry_on_worker_lost) == (False, False, False)
    assert (vacuum.acks_late, vacuum.reject_on_worker_lost, vacuum.retry_on_worker_lost) == (True, True, True)
    with pytest.raises(TypeError, match="unknown options"):
        from workers.catalog import TaskSpec

        TaskSpec.declare("x.y", impact="low", repeatble=False)


@pytest.mark.slow
def test_lost_non_repeatable_run_is_recorded_alerted_and_not_run_again(config: ConfigFactory, target_db: str,
                                                                       start_worker: Any) -> None:
    capture = start_capture()
    try:
        config.write(f'[alerting]\nbackoff_s = 0.05\n[[alerts]]\nkind = "webhook"\nurl = "{capture.url("/hook")}"\n'
                     + pg_target(target_db) + NOT_REPEATABLE_HOLD)
        start_worker(role="db", host="db-a")
        start_worker(role="db", host="db-b")
        from tasks.maintd import hold

        result = hold.delay("local", seconds=8)
        row = wait_until(lambda: [r for r in runs_of(result.id) if r["status"] == "running"], 30, "the run to start")
        assert isinstance(row, list)
        pid = int(row[0]["worker"].rsplit("/", 1)[1])
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: runs_of(result.id)[0]["status"] == "lost", 30, "the run to be closed lost")
        alerts = wait_until(lambda: [c.json() for c in capture.at("/hook")], 20, "the alert")
        assert isinstance(alerts, list)
        assert [(a["severity"], a["task"], a["target"]) for a in alerts] == [("critical", "maintd.hold", "local")]
        assert "not repeatable" in alerts[0]["summary"]
        time.sleep(12)  # a requeue, a retry (5 s) or a redelivery would have started by now
        assert [r["status"] for r in runs_of(result.id)] == ["lost"]
        assert result.state == "FAILURE"
    finally:
        capture.server.shutdown()


def test_second_delivery_of_a_non_repeatable_task_id_is_refused(config: ConfigFactory, target_db: str,
                                                                start_worker: Any) -> None:
    """A message delivered again under a task id whose run already started (its worker was lost
    and the message came back) finds that run's row and refuses: nothing runs, the earlier run is
    closed ``lost``, and the refusal is recorded."""
    config.write(pg_target(target_db) + NOT_REPEATABLE_HOLD)
    from tasks.maintd import hold
    from workers.records import records

    earlier = datetime.now(timezone.utc) - timedelta(minutes=3)
    task_id = f"redelivered-{time.time_ns()}"
    records().runs.start(task_id=task_id, task="maintd.hold", target="local", impact="high", host="db-x",
                         worker="db-slow@db-x/4242", attempt=1, dry_run=False, started_at=earlier)
    start_worker(role="db")
    outcome = hold.apply_async(("local",), {"seconds": 30}, task_id=task_id).get(timeout=30)
    assert outcome["status"] == "skipped" and outcome["summary"].startswith("refused:")
    assert "not repeatable" in outcome["summary"] and "db-slow@db-x/4242" in outcome["summary"]
    assert outcome["duration_s"] < 5  # it did not hold for 30 s
    rows = runs_of(task_id)
    assert [r["status"] for r in rows] == ["lost", "skipped"]
    # a repeatable task's redelivery runs again, as before (attempt 2 after a lost attempt 1)
    again = f"repeatable-{time.time_ns()}"
    records().runs.start(task_id=again, task="maintd.noop", target="local", impact="low", host="db-x",
                         worker="db-fast@db-x/4242", attempt=1, dry_run=False, started_at=earlier)
    from tasks.maintd import noop

    assert noop.apply_async(("local",), task_id=again).get(timeout=30)["status"] == "ok"
    assert [r["status"] for r in runs_of(again)] == ["lost", "ok"]


def _queued(redis_server: RedisServer, queue: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in redis_server.client().lrange(queue, 0, -1)]


def test_ad_hoc_dispatch_expires_after_an_hour_by_default(config: ConfigFactory, target_db: str,
                                                          redis_server: RedisServer) -> None:
    """No worker is running: the messages wait in the queue, each with its expiry."""
    path = config.write(pg_target(target_db))
    windows = []  # (expected expiry seconds, sent no earlier than, no later than)
    for extra, expires_s in (([], 3600), (["--expires", "90"], 90)):
        before = datetime.now(timezone.utc)
        proc = subprocess.run(maintd_cmd("--config", str(path), "run", "maintd.noop", "local", *extra),
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert proc.returncode == 0, proc.stderr
        windows.append((expires_s, before, datetime.now(timezone.utc)))
    from tasks.maintd import noop

    before = datetime.now(timezone.utc)
    noop.delay("local")  # a Python shell's .delay() is ad hoc too
    windows.append((3600, before, datetime.now(timezone.utc)))
    expiries = [datetime.fromisoformat(m["headers"]["expires"]) for m in _queued(redis_server, "db.low")]
    assert len(expiries) == 3
    # each expiry is its dispatch time + its expiry (1 h by default, 90 s with --expires 90)
    for expires_s, earliest, latest in sorted(windows, key=lambda w: w[0]):
        match = [e for e in expiries if earliest + timedelta(seconds=expires_s - 1) <= e
                 <= latest + timedelta(seconds=expires_s + 1)]
        assert match, (expires_s, earliest, latest, expiries)
        expiries.remove(match[0])
    bad = subprocess.run(maintd_cmd("--config", str(path), "run", "maintd.noop", "local", "--expires", "0"),
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 1 and bad.stderr.strip() == "maintd: error: --expires must be positive (got 0)"


def test_expired_ad_hoc_run_is_dropped_and_recorded(config: ConfigFactory, target_db: str,
                                                    start_worker: Any) -> None:
    path = config.write(pg_target(target_db))
    proc = subprocess.run(maintd_cmd("--config", str(path), "run", "maintd.noop", "local", "--expires", "1"),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    task_id = proc.stdout.split()[-1]
    time.sleep(2)  # typed at 10:00, no worker until later
    start_worker(role="db")
    rows = wait_until(lambda: runs_of(task_id), 30, "the expired run to be recorded")
    assert isinstance(rows, list)
    assert [r["status"] for r in rows] == ["skipped"] and rows[0]["summary"].startswith("expired before it started")
    waited = subprocess.run(maintd_cmd("--config", str(path), "run", "maintd.noop", "local", "--expires", "0.5",
                                       "--wait", "--timeout", "20"), capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    # it may have been started in time (exit 0) or expired (exit 3, said so): never a traceback
    assert waited.returncode in (0, 3), waited.stderr
    if waited.returncode == 3:
        assert "expired before a worker started it" in waited.stdout
