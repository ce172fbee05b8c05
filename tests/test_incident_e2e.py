"""End to end on real services: a throwaway PostgreSQL started here is stopped → a real
worker's health.postgres turns critical → the alert state opens an incident and dispatches
incident.capture → the alert delivered to a loopback webhook carries the incident's id →
the capture stores a partial snapshot (the dead target's error, the host, the server's own
log) → ``maintd incidents show`` prints it."""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, ConfigFactory, RedisServer, maintd_cmd, wait_until
from tests.test_alerts_support import CaptureServer
from tests.watchdog_support import unique
from workers.processes.embedded import EmbeddedPostgres
from workers.records import records

pytest_plugins = ["tests.test_alerts_support"]
pytestmark = pytest.mark.slow  # a real worker and a PostgreSQL server of its own


def test_critical_health_captures_an_incident_and_the_alert_carries_its_id(
        config: ConfigFactory, scratch_root: Path, redis_server: RedisServer, http_capture: CaptureServer,
        inprocess_worker: Any) -> None:
    name = unique("victim")
    server = EmbeddedPostgres(scratch_root / name).start()
    try:
        config.write(textwrap.dedent(f"""\
            [[postgres]]
            name = "{name}"
            dsn = "{server.url()}"
            connect_timeout_s = 3
            incident = true

            [[redis]]
            name = "{name}-broker"
            url = "{redis_server.url}"

            [incidents]
            logs = ["{server.data_dir / 'postgres.log'}"]
            probe_timeout_s = 3

            [[alerts]]
            kind = "webhook"
            name = "pager"
            url = "{http_capture.url('/pager')}"
            min_severity = "critical"
            """))
        inprocess_worker(role="db")
        from tasks.health import postgres

        assert postgres.delay(name).get(timeout=60)["status"] == "ok"
        server.stop()  # the target dies
        started = time.monotonic()
        outcome = postgres.delay(name).get(timeout=60)
        assert outcome["status"] == "critical" and "unreachable" in outcome["summary"]
        assert time.monotonic() - started < 20  # the check's outcome does not wait for the snapshot
    finally:
        server.stop()

    # the page: one alert, with the id of the incident opened for it
    wait_until(lambda: http_capture.at("/pager"), 30, "the critical alert")
    [alert] = [r.json() for r in http_capture.at("/pager")]
    assert alert["kind"] == "problem" and alert["task"] == "health.postgres" and alert["target"] == name
    incident_id = alert["incident"]
    assert isinstance(incident_id, int) and f"maintd incidents show {incident_id}" in alert["title"]

    # the snapshot, taken by its own task
    book = records()
    row = wait_until(lambda: (r := book.incidents.get(incident_id)) and r["state"] in ("captured", "partial") and r,
                     60, f"incident {incident_id} captured")
    assert isinstance(row, dict)
    assert row["state"] == "partial" and row["trigger_task"] == "health.postgres" and row["trigger_target"] == name
    snap = row["snapshot"]
    assert snap["trigger"]["status"] == "critical" and list(snap["postgres"]) == [name]
    dead = snap["postgres"][name]
    assert dead["ok"] is False and "refused" in dead["error"].lower() and dead["elapsed_s"] < 10
    assert snap["probes"]["host"]["ok"] and snap["redis"][f"{name}-broker"]["ok"]
    assert snap["redis"][f"{name}-broker"]["clients"]["total"] >= 1  # the worker's own broker connections
    pg_log = next(iter(snap["logs"]["files"].values()))["lines"]
    assert any("shutting down" in line or "shut down" in line for line in pg_log), pg_log[-5:]
    assert row["opened_at"] <= row["captured_at"]
    [capture_run] = book.runs.find(task="incident.capture", limit=5)[:1]
    assert capture_run["status"] == "warning" and f"incident {incident_id}" in capture_run["summary"]
    assert len(http_capture.at("/pager")) == 1  # the capture's own (partial) outcome pages nobody

    shown = subprocess.run(maintd_cmd("incidents", "show", str(incident_id)), cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"incident {incident_id}: partial" in shown.stdout and f"== PostgreSQL {name}" in shown.stdout
    assert "UNAVAILABLE" in shown.stdout
