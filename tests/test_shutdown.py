"""Stopping workers (issue 8, item 1): a warm shutdown lets the running task finish; only
after a lane's grace is anything killed, and then its run is recorded ``lost``. The same for
`maintd up`'s Ctrl-C. The grace a lane gets is its tasks' longest hard limit, and the shipped
systemd unit and compose file allow at least that."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, ConfigFactory, RunningWorker, maintd_cmd, wait_until
from workers.config import parse_config


def pg_target(dsn: str) -> str:
    return f'[[postgres]]\nname = "local"\ndsn = "{dsn}"\n'


def runs_of(task_id: str) -> list[dict[str, Any]]:
    from workers.records import records

    return sorted(records().runs.find(task_id=task_id), key=lambda r: r["id"])


def running(task_id: str) -> bool:
    return any(r["status"] == "running" for r in runs_of(task_id))


@pytest.mark.slow
def test_sigterm_during_a_20s_task_lets_it_finish(config: ConfigFactory, target_db: str, start_worker: Any) -> None:
    """SIGTERM to `maintd worker` (what systemd, compose and Ctrl-C send) while the slow lane runs a
    20 s task: the task ends ok in its one and only attempt and the worker exits 0."""
    config.write(pg_target(target_db))
    worker: RunningWorker = start_worker(role="db")
    from tasks.maintd import hold

    result = hold.delay("local", seconds=20)
    wait_until(lambda: running(result.id), 30, "the run to start")
    time.sleep(2)
    sent = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    code = worker.proc.wait(timeout=120)
    took = time.monotonic() - sent
    log = worker.log.read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert took >= 10, f"the worker exited after {took:.1f}s: it did not wait for the task"
    rows = runs_of(result.id)
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "ok")], rows
    assert result.get(timeout=10)["status"] == "ok"
    assert "exited with signal" not in log and "WorkerLostError" not in log, log[-3000:]


@pytest.mark.slow
def test_stop_grace_passed_kills_and_records_the_run_lost(config: ConfigFactory, target_db: str,
                                                          tmp_path: Path) -> None:
    """A lane still busy when its grace is over (capped here at 3 s with --stop-grace) is killed,
    the worker exits 1, and the run it left is closed ``lost``, never left ``running``."""
    config.write(pg_target(target_db))
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(maintd_cmd("worker", "--role", "db", "--host", "testhost", "--concurrency", "2",
                                           "--stop-grace", "3"), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
    worker = RunningWorker(proc, log)
    try:
        worker.wait_ready(["db-fast@testhost", "db-slow@testhost"])
        from tasks.maintd import hold

        result = hold.delay("local", seconds=120)
        wait_until(lambda: running(result.id), 30, "the run to start")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        assert code == 1
        rows = runs_of(result.id)
        assert [r["status"] for r in rows] == ["lost"], rows
        assert "grace of 3s" in rows[0]["error"] and rows[0]["finished_at"] is not None
    finally:
        worker.stop()


@pytest.mark.slow
def test_up_ctrl_c_lets_the_running_task_finish(config: ConfigFactory, target_db: str, tmp_path: Path) -> None:
    """`maintd up` on a configured broker and results database: Ctrl-C (SIGINT to `up` only, as a
    terminal sends it to the foreground process) while a task runs → the task ends ok, `up` exits 0."""
    path = config.write(pg_target(target_db))
    out = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(maintd_cmd("--config", str(path), "up", "--no-flower"), stdout=out,
                            stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    worker = RunningWorker(proc, tmp_path / "up.log")
    try:
        logs = tmp_path / "data" / "logs"
        wait_until(lambda: (logs / "worker-db-slow.log").exists() and "ready." in (
            logs / "worker-db-slow.log").read_text(errors="replace"), 90, "maintd up's slow lane")
        from tasks.maintd import hold

        result = hold.delay("local", seconds=12)
        wait_until(lambda: running(result.id), 30, "the run to start")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
        text = (tmp_path / "up.log").read_text(errors="replace")
        assert code == 0, text[-2000:]
        assert [(r["attempt"], r["status"]) for r in runs_of(result.id)] == [(1, "ok")]
        assert "exited with signal" not in (logs / "worker-db-slow.log").read_text(errors="replace")
    finally:
        worker.stop()
        out.close()


def _seconds(text: str) -> int:
    """systemd / compose durations: '4h10min', '4h10m', '150', '2m'."""
    total = 0
    for value, unit in re.findall(r"(\d+)\s*(h|min|m|s)?", text):
        total += int(value) * {"h": 3600, "min": 60, "m": 60, "s": 1, "": 1}[unit]
    return total


def test_grace_is_the_lanes_longest_hard_limit_and_units_allow_it() -> None:
    from workers.catalog import effective_limits, load_catalog
    from workers.processes.profiles import STOP_MARGIN_S, lane_grace_s, stop_grace_s

    config = parse_config('[tasks."maintd.hold"]\ntime_limit = 20000\nsoft_time_limit = 19000\n')
    specs = load_catalog()
    assert lane_grace_s(config, "slow") == 20000 + STOP_MARGIN_S  # the override is the slow lane's longest
    fast = max(effective_limits(s, config)[1] for s in specs.values() if s.impact in ("none", "low"))
    assert lane_grace_s(config, "fast") == fast + STOP_MARGIN_S
    default = stop_grace_s(parse_config(""))
    unit = (ROOT / "ops/systemd/maintd-worker@.service").read_text()
    stop = re.search(r"^TimeoutStopSec=(\S+)", unit, re.M)
    assert stop and _seconds(stop.group(1)) >= default, f"TimeoutStopSec must allow {default}s"
    assert re.search(r"^KillMode=mixed", unit, re.M)  # SIGTERM to maintd only; it signals each lane
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("worker-db", "worker-app"):
        assert _seconds(compose["services"][name]["stop_grace_period"]) >= default, name


def test_check_config_prints_the_stop_grace(tmp_path: Path) -> None:
    path = tmp_path / "maintd.toml"
    path.write_text('[tasks."backup.restore"]\ntime_limit = 30000\nsoft_time_limit = 29000\n')
    proc = subprocess.run(maintd_cmd("--config", str(path), "check-config"), capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "slow lane 8h20m30s" in proc.stdout and "at least 30030s" in proc.stdout
