"""Alerts end to end: ``maintd alerts test`` as a subprocess, and a real worker whose
alert deliveries fail while its tasks still return their outcomes.
"""

from __future__ import annotations

import socket
import subprocess
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.conftest import ROOT, ConfigFactory, PgServer, maintd_cmd, wait_for_workers, wait_until
from tests.test_alerts_support import (
    HMAC_KEY_E2E,
    LOOPBACK,
    SMTP_PASSWORD,
    SMTP_USER,
    CaptureServer,
    Pki,
    SmtpCapture,
    free_port,
    toml_str,
)

pytest_plugins = ["tests.test_alerts_support"]

SLACK_PATH = "/services/T0E2E/B0E2E/e2eSlackTokenValue987"


def channels(http: CaptureServer, smtp: SmtpCapture, pki: Pki) -> str:
    return textwrap.dedent(f"""\
        [[alerts]]
        kind = "slack"
        name = "ops-slack"
        url = "{http.url(SLACK_PATH)}"

        [[alerts]]
        kind = "webhook"
        name = "pager"
        url = "{http.url('/pager')}"
        secret = {toml_str(HMAC_KEY_E2E)}
        min_severity = "critical"

        [[alerts]]
        kind = "email"
        name = "ops-mail"
        smtp_host = "{LOOPBACK}"
        smtp_port = {smtp.port}
        username = "{SMTP_USER}"
        password_file = "smtp-password"
        from_addr = "maintd@example.test"
        to = ["ops@example.test"]
        ca_file = "{pki.ca_file}"

        [[alerts]]
        kind = "log"
        """)


def run_cli(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(maintd_cmd("--config", str(config_path), "alerts", "test"), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_maintd_alerts_test_reaches_every_channel(config: ConfigFactory, http_capture: CaptureServer,
                                                  smtp_server: SmtpCapture, pki: Pki, results_db: str) -> None:
    (config.path.parent / "smtp-password").write_text(SMTP_PASSWORD + "\n")
    path = config.write(channels(http_capture, smtp_server, pki))
    proc = run_cli(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4
    for name, kind in (("ops-slack", "slack"), ("pager", "webhook"), ("ops-mail", "email"), ("log", "log")):
        assert any(line.startswith(f"{name} ({kind})") and line.endswith("delivered") for line in lines), lines
    # every channel got it, whatever its minimum severity
    assert "[maintd] TEST: maintd.alerts.test" in http_capture.at(SLACK_PATH)[0].json()["text"]
    assert http_capture.at("/pager")[0].json()["kind"] == "test"
    assert http_capture.at("/pager")[0].headers["x-maintd-signature"].startswith("sha256=")
    assert smtp_server.messages[0]["Subject"] == "[maintd] TEST: maintd.alerts.test"
    assert "[maintd] TEST: maintd.alerts.test" in proc.stderr  # the log channel, visible at the CLI's level
    for secret in ("e2eSlackTokenValue987", HMAC_KEY_E2E, SMTP_PASSWORD):
        assert secret not in proc.stdout + proc.stderr
    with psycopg2.connect(results_db, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT channel, delivered FROM maintd_alert_deliveries WHERE task = 'maintd.alerts.test'"
                    " AND reason = 'test' ORDER BY id DESC LIMIT 4")
        assert sorted(cur.fetchall()) == [("log", True), ("ops-mail", True), ("ops-slack", True), ("pager", True)]
    conn.close()


def test_maintd_alerts_test_names_the_broken_channel(tmp_path: Path, http_capture: CaptureServer,
                                                     smtp_server: SmtpCapture, pki: Pki) -> None:
    """No broker and no results database are needed: both point at closed ports here."""
    (tmp_path / "smtp-password").write_text(SMTP_PASSWORD)
    dead = free_port()
    path = tmp_path / "maintd.toml"
    path.write_text(textwrap.dedent(f"""\
        [broker]
        url = "redis://{LOOPBACK}:{dead}/0"
        [results]
        url = "postgresql://maintd:pw@{LOOPBACK}:{dead}/maintd"
        [alerting]
        delivery_attempts = 2
        backoff_s = 0.05

        [[alerts]]
        kind = "webhook"
        name = "broken-hook"
        url = "http://{LOOPBACK}:{dead}/hook/secret-path-5150"
        """) + channels(http_capture, smtp_server, pki))
    proc = run_cli(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [broken] = [line for line in proc.stdout.splitlines() if "FAILED" in line]
    assert broken.startswith("broken-hook (webhook)") and "after 2 attempt(s)" in broken
    assert f"http://{LOOPBACK}:{dead}/…" in broken and "secret-path-5150" not in proc.stdout + proc.stderr
    assert sum(line.endswith("delivered") for line in proc.stdout.splitlines()) == 4
    assert "not recorded" in proc.stderr
    assert len(smtp_server.messages) == 1 and len(http_capture.at("/pager")) == 1


def test_no_channels_is_an_error(config: ConfigFactory) -> None:
    proc = run_cli(config.write(""))
    assert proc.returncode == 1 and "no alert channels configured" in proc.stderr


# -- a real worker: alert delivery fails, the maintenance task still returns its outcome -----------
def deliveries(results_db: str, task: str, target: str) -> list[tuple[str, str, str, bool]]:
    with psycopg2.connect(results_db, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT channel, reason, severity, delivered FROM maintd_alert_deliveries"
                    " WHERE task = %s AND target = %s ORDER BY id", (task, target))
        rows = [tuple(r) for r in cur.fetchall()]
    conn.close()
    return rows  # type: ignore[return-value]


@pytest.mark.slow
def test_worker_task_outcome_survives_failed_alert_delivery(config: ConfigFactory, pg_server: PgServer,
                                                            http_capture: CaptureServer, results_db: str,
                                                            start_worker: Any) -> None:
    missing = f"maintd_target_alerts_{uuid.uuid4().hex[:8]}"  # created half-way: down, then back
    dead = free_port()
    config.write(textwrap.dedent(f"""\
        [alerting]
        delivery_attempts = 2
        backoff_s = 0.05
        delivery_deadline_s = 5

        [[alerts]]
        kind = "webhook"
        name = "good"
        url = "{http_capture.url('/good')}"
        min_severity = "critical"

        [[alerts]]
        kind = "webhook"
        name = "broken"
        url = "http://{LOOPBACK}:{dead}/hook/tok-broken-77"

        [[postgres]]
        name = "flaky"
        dsn = "{pg_server.dsn(missing)}"
        connect_timeout_s = 3
        """))
    worker = start_worker(role="db")
    from tasks.health import postgres
    from tasks.maintd import noop

    # 1. the target is down: health.postgres is critical (an outcome, SUCCESS) ...
    outcome = postgres.delay("flaky").get(timeout=60)
    assert outcome["status"] == "critical" and outcome["target"] == "flaky"
    # ... and a task that cannot do its job FAILS with a clean message; neither is changed by the alerts
    result = noop.delay("flaky")
    with pytest.raises(Exception) as failed:
        result.get(timeout=60)
    assert result.state == "FAILURE" and missing in str(failed.value) and "Traceback" not in str(failed.value)
    wait_until(lambda: len(deliveries(results_db, "maintd.noop", "flaky")) == 2, 20, "noop alert deliveries")
    for task in ("health.postgres", "maintd.noop"):
        assert sorted(deliveries(results_db, task, "flaky")) == [
            ("broken", "problem", "critical", False), ("good", "problem", "critical", True)]
    assert len(http_capture.at("/good")) == 2

    # 2. the target comes back: ok outcome, and the recovery goes to both channels (the broken one fails again)
    admin = pg_server.admin()
    try:
        admin.cursor().execute(f'CREATE DATABASE "{missing}"')
    finally:
        admin.close()
    pg_server.created.append(missing)
    outcome = postgres.delay("flaky").get(timeout=60)
    assert outcome["status"] == "ok", outcome
    rows = deliveries(results_db, "health.postgres", "flaky")
    assert sorted(rows[2:]) == [("broken", "recovery", "ok", False), ("good", "recovery", "ok", True)]
    assert [r.json()["kind"] for r in http_capture.at("/good")] == ["problem", "problem", "recovery"]

    # the worker is unharmed: it still answers and runs tasks
    assert worker.proc.poll() is None
    wait_for_workers(["db-fast@testhost"], timeout_s=10)
    assert noop.delay("flaky").get(timeout=30)["status"] == "ok"
    log = worker.log.read_text(errors="replace")
    assert "NOT delivered to channel broken" in log and "tok-broken-77" not in log


@pytest.mark.slow
def test_hanging_alert_endpoint_cannot_push_a_task_past_its_limits(config: ConfigFactory, pg_server: PgServer,
                                                                   http_capture: CaptureServer, results_db: str,
                                                                   start_worker: Any) -> None:
    """Delivery blocks on an endpoint that never answers, with a deadline far beyond the task's
    soft time limit: the soft limit interrupts the delivery, the task still ends as it should."""
    missing = f"maintd_target_alerts_{uuid.uuid4().hex[:8]}"
    with socket.socket() as sink:  # accepts connections (backlog) and never answers
        sink.bind((LOOPBACK, 0))
        sink.listen(16)
        config.write(textwrap.dedent(f"""\
            [alerting]
            delivery_attempts = 1
            delivery_deadline_s = 120

            [tasks."maintd.noop"]
            soft_time_limit = 3
            time_limit = 30

            [[alerts]]
            kind = "webhook"
            name = "good"
            url = "{http_capture.url('/good')}"

            [[alerts]]
            kind = "webhook"
            name = "hang"
            url = "http://{LOOPBACK}:{sink.getsockname()[1]}/hook"
            timeout_s = 120

            [[postgres]]
            name = "slowalerts"
            dsn = "{pg_server.dsn(missing)}"
            """))
        start_worker(role="db")
        from tasks.maintd import noop

        started = time.monotonic()
        result = noop.delay("slowalerts")
        with pytest.raises(Exception, match=missing):
            result.get(timeout=60)
        assert result.state == "FAILURE" and time.monotonic() - started < 20

        admin = pg_server.admin()
        try:
            admin.cursor().execute(f'CREATE DATABASE "{missing}"')
        finally:
            admin.close()
        pg_server.created.append(missing)
        started = time.monotonic()
        outcome = noop.delay("slowalerts").get(timeout=60)
        elapsed = time.monotonic() - started
    assert outcome["status"] == "ok" and 2.5 < elapsed < 20, (outcome, elapsed)
    rows = deliveries(results_db, "maintd.noop", "slowalerts")
    assert [r[:2] for r in rows] == [("good", "problem"), ("hang", "problem"), ("good", "recovery"),
                                     ("hang", "recovery")]
    assert [r[3] for r in rows] == [True, False, True, False]
    with psycopg2.connect(results_db, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT error FROM maintd_alert_deliveries WHERE task = 'maintd.noop'"
                    " AND target = 'slowalerts' AND channel = 'hang'")
        assert cur.fetchall() == [("interrupted: the task reached its soft time limit",)]
    conn.close()
