"""The alert state machine: decisions, routing, reminders, exactly-once, retries, failures.

Real PostgreSQL (state and deliveries) and a real HTTP server on loopback as the
channel endpoints; the pure ``decide`` is tested with a table.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from tests.test_alerts_support import LOOPBACK, CaptureServer, free_port, unique_task
from workers.alerts import observe_safely
from workers.alerts.state import decide, observe, severity_of
from workers.config import Config, get_config
from workers.records import Records

pytest_plugins = ["tests.test_alerts_support"]  # http_capture, https_capture, smtp_server, pki

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
FOUR_H = timedelta(hours=4)


# -- the pure decision ---------------------------------------------------------------------------
@pytest.mark.parametrize(("previous", "severity", "now", "expected"), [
    # first sight
    (None, "ok", T0, None),
    (None, "warning", T0, "problem"),
    (None, "critical", T0, "problem"),
    # a change of status
    (("ok", None, None), "warning", T0, "problem"),
    (("warning", "warning", T0), "critical", T0 + timedelta(minutes=5), "problem"),
    (("critical", "critical", T0), "warning", T0 + timedelta(minutes=5), "problem"),
    # the same status: nothing within the reminder interval, a reminder after it
    (("critical", "critical", T0), "critical", T0 + timedelta(minutes=5), None),
    (("critical", "critical", T0), "critical", T0 + FOUR_H - timedelta(seconds=1), None),
    (("critical", "critical", T0), "critical", T0 + FOUR_H, "reminder"),
    (("warning", "warning", T0), "warning", T0 + FOUR_H + timedelta(hours=1), "reminder"),
    (("ok", None, None), "ok", T0 + FOUR_H * 10, None),
    # recovery only when a problem was notified
    (("critical", "critical", T0), "ok", T0 + timedelta(minutes=5), "recovery"),
    (("warning", "warning", T0), "ok", T0 + timedelta(minutes=5), "recovery"),
    (("ok", "ok", T0), "ok", T0 + timedelta(minutes=5), None),
    (("warning", None, None), "ok", T0, None),  # a problem nobody was told about (delivery failed)
    # a problem whose alert could not be delivered is tried again at the next observation
    (("critical", None, None), "critical", T0, "problem"),
    (("ok", "critical", T0), "ok", T0 + timedelta(minutes=5), "recovery"),  # recovery delivery failed
    # back to a problem after a recovery
    (("ok", "ok", T0), "critical", T0 + timedelta(minutes=5), "problem"),
])
def test_decide(previous: Any, severity: str, now: datetime, expected: str | None) -> None:
    assert decide(previous, severity, now, FOUR_H) == expected


def test_severity_of_run_statuses() -> None:
    assert [severity_of(s) for s in ("ok", "warning", "critical", "failed", "skipped", "deferred")] == [
        "ok", "warning", "critical", "critical", None, None]


# -- helpers ---------------------------------------------------------------------------------------
def write_config(config: Any, channels: str, alerting: str = "") -> Config:
    config.write(f"[alerting]\n{alerting}\n\n{channels}")
    return get_config()


def webhook(name: str, url: str, min_severity: str = "warning", extra: str = "") -> str:
    return (f'[[alerts]]\nkind = "webhook"\nname = "{name}"\nurl = "{url}"\n'
            f'min_severity = "{min_severity}"\ntimeout_s = 3\n{extra}\n')


def deliveries(results_db: str, task: str) -> list[dict[str, Any]]:
    with psycopg2.connect(results_db, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT channel, kind, severity, reason, delivered, attempts, error"
                    " FROM maintd_alert_deliveries WHERE task = %s ORDER BY id", (task,))
        cols = [c[0] for c in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    conn.close()
    return rows


def kinds(server: CaptureServer, path: str) -> list[tuple[str, str]]:
    return [(r.json()["kind"], r.json()["severity"]) for r in server.at(path)]


# -- routing: per-channel minimum severity; recovery to those that got the problem ---------------
def test_min_severity_routing_and_recovery(config: Any, http_capture: CaptureServer, results_db: str) -> None:
    cfg = write_config(config, webhook("warn", http_capture.url("/warn"), "warning")
                       + webhook("crit", http_capture.url("/crit"), "critical"))
    task = unique_task()
    steps = [("warning", "problem"), ("critical", "problem"), ("warning", "problem"), ("ok", "recovery")]
    for status, kind in steps:
        alert = observe(cfg, task, "db1", status, f"it is {status}", "testhost")
        assert alert is not None and alert.kind == kind
    assert kinds(http_capture, "/warn") == [("problem", "warning"), ("problem", "critical"),
                                            ("problem", "warning"), ("recovery", "ok")]
    # the critical-only channel never saw a warning, yet hears the recovery from its critical
    assert kinds(http_capture, "/crit") == [("problem", "critical"), ("recovery", "ok")]
    rows = deliveries(results_db, task)
    assert [(r["channel"], r["reason"], r["delivered"]) for r in rows] == [
        ("warn", "problem", True), ("warn", "problem", True), ("crit", "problem", True),
        ("warn", "problem", True), ("warn", "recovery", True), ("crit", "recovery", True)]

    # a warning that never reached the critical channel: its recovery does not go there either
    task2 = unique_task()
    observe(cfg, task2, "db1", "warning", "slow", "testhost")
    observe(cfg, task2, "db1", "ok", "fine", "testhost")
    assert [r for r in http_capture.at("/crit") if r.json()["task"] == task2] == []
    assert [r.json()["kind"] for r in http_capture.at("/warn") if r.json()["task"] == task2] == ["problem", "recovery"]


def test_first_sight_ok_and_unchanged_status_send_nothing(config: Any, http_capture: CaptureServer,
                                                          results_db: str) -> None:
    cfg = write_config(config, webhook("hook", http_capture.url("/h")))
    task = unique_task()
    assert observe(cfg, task, "db1", "ok", "fine", "testhost") is None
    assert observe(cfg, task, "db1", "ok", "fine", "testhost") is None
    assert observe(cfg, task, "db1", "skipped", "lock held", "testhost") is None
    assert observe(cfg, task, "db1", "failed", "pg_dump failed", "testhost").kind == "problem"  # type: ignore[union-attr]
    assert observe(cfg, task, "db1", "critical", "still down", "testhost") is None  # failed == critical
    assert [r.json()["status"] for r in http_capture.at("/h")] == ["failed"]
    assert len(deliveries(results_db, task)) == 1


# -- reminders -------------------------------------------------------------------------------------
def test_reminder_after_interval_only(config: Any, http_capture: CaptureServer) -> None:
    cfg = write_config(config, webhook("hook", http_capture.url("/r")), "remind_every_hours = 0.0001")  # 0.36 s
    task = unique_task()
    assert observe(cfg, task, "db1", "critical", "down", "testhost").kind == "problem"  # type: ignore[union-attr]
    time.sleep(0.5)
    again = observe(cfg, task, "db1", "critical", "still down", "testhost")
    assert again is not None and again.kind == "reminder" and again.title.startswith("[maintd] STILL CRITICAL")
    assert [r.json()["kind"] for r in http_capture.at("/r")] == ["problem", "reminder"]

    cfg = write_config(config, webhook("hook", http_capture.url("/d")))  # default: every 4 hours
    task = unique_task()
    observe(cfg, task, "db1", "critical", "down", "testhost")
    time.sleep(0.5)
    assert observe(cfg, task, "db1", "critical", "still down", "testhost") is None
    assert [r.json()["kind"] for r in http_capture.at("/d")] == ["problem"]


# -- exactly one alert when several workers see the same change ------------------------------------
@pytest.mark.parametrize("first", [None, "ok"], ids=["first-sight", "change"])
def test_concurrent_observers_send_exactly_one_alert(config: Any, http_capture: CaptureServer, results_db: str,
                                                     first: str | None) -> None:
    cfg = write_config(config, webhook("hook", http_capture.url("/race")))
    task = unique_task()
    n = 6
    stores = [Records(results_db) for _ in range(n)]  # one connection each: a real race in PostgreSQL
    if first:
        observe(cfg, task, "db1", first, "fine", "testhost", book=stores[0])
    for s in stores:  # connect (and create the schema) before the race starts
        s.execute(lambda cur: cur.execute("SELECT 1"))
    barrier = threading.Barrier(n)
    alerts: list[Any] = []
    errors: list[BaseException] = []

    def worker(store: Records) -> None:
        try:
            barrier.wait(timeout=10)
            alerts.append(observe(cfg, task, "db1", "critical", "down", "testhost", book=store))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in stores:
        s.close()
    assert errors == []
    assert len(alerts) == n and sum(a is not None for a in alerts) == 1
    assert len(http_capture.at("/race")) == 1
    assert [(r["reason"], r["delivered"]) for r in deliveries(results_db, task)] == [("problem", True)]


# -- retries, failures, deadline -------------------------------------------------------------------
def test_http_500_then_success_is_retried_with_backoff(config: Any, http_capture: CaptureServer,
                                                       results_db: str) -> None:
    http_capture.respond("/flaky", 500, 500)
    cfg = write_config(config, webhook("flaky", http_capture.url("/flaky")),
                       "delivery_attempts = 3\nbackoff_s = 0.2")
    task = unique_task()
    started = time.monotonic()
    observe(cfg, task, "db1", "critical", "down", "testhost")
    elapsed = time.monotonic() - started
    assert len(http_capture.at("/flaky")) == 3
    assert elapsed >= 0.2 + 0.4 - 0.05  # two pauses, doubling
    [row] = deliveries(results_db, task)
    assert (row["delivered"], row["attempts"], row["error"]) == (True, 3, None)


def test_failing_channel_is_recorded_and_never_raises(config: Any, http_capture: CaptureServer, results_db: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://{LOOPBACK}:{free_port()}/hook/secret-path-token-123"
    cfg = write_config(config, webhook("dead", dead, extra='secret = "hmac-key-never-shown"')
                       + webhook("good", http_capture.url("/good")),
                       "delivery_attempts = 3\nbackoff_s = 0.05")
    task = unique_task()
    with caplog.at_level(logging.DEBUG):
        observe_safely(cfg, task, "db1", "critical", "down", "testhost")
    rows = {r["channel"]: r for r in deliveries(results_db, task)}
    assert rows["good"]["delivered"] is True and rows["good"]["attempts"] == 1
    assert rows["dead"]["delivered"] is False and rows["dead"]["attempts"] == 3
    assert "unreachable" in rows["dead"]["error"] and "refused" in rows["dead"]["error"].lower()
    assert f"http://{LOOPBACK}:" in rows["dead"]["error"]
    for text in (rows["dead"]["error"], caplog.text):
        assert "secret-path-token-123" not in text and "hmac-key-never-shown" not in text
    assert "NOT delivered to channel dead" in caplog.text


def test_all_channels_failing_rolls_back_so_next_observation_retries(config: Any, results_db: str) -> None:
    dead = f"http://{LOOPBACK}:{free_port()}/x"
    cfg = write_config(config, webhook("dead", dead), "delivery_attempts = 2\nbackoff_s = 0.01")
    task = unique_task()
    assert observe(cfg, task, "db1", "critical", "down", "testhost") is not None
    # nobody heard it: the next observation tries again instead of waiting 4 hours for a reminder
    assert observe(cfg, task, "db1", "critical", "down", "testhost").kind == "problem"  # type: ignore[union-attr]
    rows = deliveries(results_db, task)
    assert [(r["reason"], r["delivered"], r["attempts"]) for r in rows] == [("problem", False, 2)] * 2
    # and nobody is told of a recovery from a problem nobody heard about
    assert observe(cfg, task, "db1", "ok", "fine", "testhost") is None


def test_hanging_endpoint_is_bounded_by_the_delivery_deadline(config: Any, results_db: str) -> None:
    with socket.socket() as sink:  # accepts connections (backlog), never answers
        sink.bind((LOOPBACK, 0))
        sink.listen(8)
        url = f"http://{LOOPBACK}:{sink.getsockname()[1]}/hang"
        cfg = write_config(config, webhook("hang", url).replace("timeout_s = 3", "timeout_s = 30"),
                           "delivery_attempts = 5\nbackoff_s = 0.1\ndelivery_deadline_s = 1.5")
        task = unique_task()
        started = time.monotonic()
        observe_safely(cfg, task, "db1", "critical", "down", "testhost")
        elapsed = time.monotonic() - started
    assert elapsed < 4.0
    [row] = deliveries(results_db, task)
    assert row["delivered"] is False and "timed out" in row["error"] and "deadline" in row["error"]


def test_observe_safely_survives_an_unreachable_results_database(caplog: pytest.LogCaptureFixture) -> None:
    cfg = Config.model_validate({
        "results": {"url": f"postgresql://maintd:pg-pass-never-shown@{LOOPBACK}:{free_port()}/maintd"},
        "alerts": [{"kind": "log"}],
    })
    with caplog.at_level(logging.DEBUG):
        observe_safely(cfg, unique_task(), "db1", "critical", "down", "testhost")  # must not raise
    assert "alert evaluation for" in caplog.text and "failed" in caplog.text
    assert "pg-pass-never-shown" not in caplog.text


def test_no_channels_no_state(config: Any, results_db: str) -> None:
    cfg = write_config(config, "")
    task = unique_task()
    assert observe(cfg, task, "db1", "critical", "down", "testhost") is None
    with psycopg2.connect(results_db, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM maintd_alert_state WHERE task = %s", (task,))
        assert cur.fetchone() == (0,)
    conn.close()
