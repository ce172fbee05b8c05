"""The watchdog with real processes: real beat sends an every-minute entry, beat is stopped,
the clock (the core's ``now``) moves on → ``missed``; a run killed by Celery at its hard
time limit on a real worker → ``stuck``, alerted exactly once over several watchdog runs;
``watchdog.schedule`` run by the worker pings the dead-man URL; ``maintd status --check``."""

from __future__ import annotations

import signal
import socket
import subprocess
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tasks.core.watchdog import watch
from tests.conftest import ROOT, ConfigFactory, maintd_cmd, wait_until
from tests.test_alerts_support import CaptureServer
from tests.watchdog_support import Run, insert, only, unique
from workers.config import get_config
from workers.records import records

pytest_plugins = ["tests.test_alerts_support"]
pytestmark = pytest.mark.slow  # real beat and workers


def test_beat_stopped_then_missed(config: ConfigFactory, target_db: str, start_worker: Any, tmp_path: Path) -> None:
    name = unique()
    path = config.write(f'[[postgres]]\nname = "{name}"\ndsn = "{target_db}"\n'
                        + only("health.postgres", crons={"health.postgres": "* * * * *"}))
    start_worker(role="db")
    book = records(get_config())
    entry = f"health.postgres[{name}]"
    log = open(tmp_path / "beat.log", "wb")
    beat = subprocess.Popen(maintd_cmd("--config", str(path), "beat"), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        watch.watch(get_config(), book, datetime.now(UTC))  # the watchdog is watching while beat runs
        wait_until(lambda: book.runs.find(task="health.postgres", target=name, limit=1), 100,
                   "beat to send health.postgres")
    finally:
        beat.send_signal(signal.SIGTERM)
        beat.wait(timeout=30)
        log.close()
    stopped = datetime.now(UTC)
    [last] = book.runs.find(task="health.postgres", target=name, limit=1)
    found, _ = watch.watch(get_config(), book, stopped)
    assert not [f for f in found if f.entry == entry]  # beat was on time
    found, _ = watch.watch(get_config(), book, stopped + timedelta(minutes=10))  # the clock moves on, beat is gone
    [missed] = [f for f in found if f.entry == entry]
    assert missed.kind == "missed" and f"last good run {last['started_at']:%Y-%m-%d %H:%M:%S}Z" in missed.summary


def test_run_killed_at_hard_limit_is_stuck_once_and_watchdog_task_pings(
        config: ConfigFactory, start_worker: Any, http_capture: CaptureServer, results_db: str) -> None:
    """A health check hangs in libpq's connect to a server that accepts and never answers (C
    code: the soft limit's exception cannot be raised there), so Celery kills it at its hard
    limit: the real way a run gets "stuck"."""
    name = unique("hung")
    ping = "/ping/3f1e1c0a-hc-check"
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    config.write(textwrap.dedent(f"""\
        [[postgres]]
        name = "{name}"
        dsn = "postgresql://maintd@127.0.0.1:{hung.getsockname()[1]}/app"
        connect_timeout_s = 40

        [tasks."health.postgres"]
        soft_time_limit = 2
        time_limit = 4

        [watchdog]
        ping_url = "{http_capture.url(ping)}"

        [[alerts]]
        kind = "webhook"
        name = "ops"
        url = "{http_capture.url('/hook')}"
        """) + only("watchdog.schedule", "health.postgres"))
    try:
        start_worker(role="db")
        from tasks.health import postgres
        from tasks.watchdog import schedule

        result = postgres.delay(name)
        with pytest.raises(Exception, match="TimeLimitExceeded|time limit"):
            result.get(timeout=60)
        book = records(get_config())
        wait_until(lambda: [r for r in book.runs.find(task_id=result.id) if r["status"] == "failed"], 30,
                   f"the killed run closed: {book.runs.find(task_id=result.id)}")
    finally:
        hung.close()
    [row] = book.runs.find(task_id=result.id)
    # closed by the worker as killed at the hard limit (the dying process may have had the last
    # word with its soft-limit error: the watchdog knows both)
    assert row["error"].startswith(("hard time limit (4", "soft time limit")) and 3.5 <= row["duration_s"] < 20  # the row starts a moment after the limit's clock
    entry = f"health.postgres[{name}]"

    def watchdog_alerts() -> list[dict[str, Any]]:
        return [r.json() for r in http_capture.at("/hook") if r.json()["task"] == "watchdog.schedule"]

    # the task itself, through the worker: it finds the stuck run, alerts it, pings /fail;
    # its own (critical) outcome does not page a second time
    outcome = schedule.delay().get(timeout=60)
    assert outcome["task"] == "watchdog.schedule" and outcome["status"] == "critical"
    assert any(f["kind"] == "stuck" and f["entry"] == entry for f in outcome["metrics"]["findings"])
    assert "3f1e1c0a" not in outcome["summary"] and [p.path for p in http_capture.at(ping + "/fail")] == [ping + "/fail"]
    assert not [a for a in watchdog_alerts() if a["target"] == ""]
    clock = datetime.now(UTC)
    for _ in range(4):  # four more watchdog runs, ten minutes apart
        watch.run(get_config(), book, clock, "testhost")
        clock += timedelta(minutes=10)
    stuck = [a for a in watchdog_alerts() if a["target"] == f"stuck:{entry}"]
    assert [a["kind"] for a in stuck] == ["problem"]  # exactly once
    assert "killed at its hard time limit of 4s" in stuck[0]["summary"]
    assert len(http_capture.at(ping + "/fail")) == 5

    # maintd status --check: the watchdog just ran
    check = subprocess.run(maintd_cmd("status", "--check"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stdout.startswith("ok: watchdog.schedule ran"), check.stdout + check.stderr
    from workers.cli.watchdog import check_main

    last = book.watch.last_run("watchdog.schedule")
    assert last is not None and last["task_id"] == outcome["task_id"]
    assert check_main(now=last["started_at"] + timedelta(minutes=29)) == 0
    assert check_main(now=last["started_at"] + timedelta(minutes=31)) == 2  # 3 intervals of */10
    insert(results_db, [Run("watchdog.schedule", None, "failed", datetime.now(UTC) + timedelta(seconds=5), 0.1,
                            "connect postgresql://maintd:***@db/maintd: connection refused")])
    failed = subprocess.run(maintd_cmd("status", "--check"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 3 and failed.stdout.startswith("FAILED: watchdog.schedule ran"), failed.stdout
