"""incident.capture's core on real services: a real blocking chain in PostgreSQL, a real
Redis (its own server, so its slowlog can be turned up), real log files with secrets in
them, this host's processes; a dead and a hung target give a partial snapshot within the
probe deadline; the alert state machine opens incidents for opted-in checks only, and the
alert delivered to a loopback webhook carries the id. ``maintd incidents`` prints them."""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis as redis_py

from tasks.core.incident.capture import capture
from tests.conftest import ROOT, ConfigFactory, maintd_cmd, wait_until
from tests.test_alerts_support import CaptureServer, free_port
from tests.watchdog_support import unique
from workers.alerts import observe
from workers.config import get_config
from workers.processes.embedded import EmbeddedRedis
from workers.records import records

pytest_plugins = ["tests.test_alerts_support"]

REDIS_PASSWORD = "Redis-Pa55-incident-xyz"
LOG_SECRET = "tok-LOGSECRET-4242"
ROW_SECRET = "row-SECRET-literal-777"


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("incident-redis"), password=REDIS_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def blocked(target_db: str) -> Iterator[dict[str, int]]:
    """A lock chain: an idle-in-transaction holder → an ALTER waiting for it → a SELECT
    waiting for the ALTER."""
    setup = psycopg2.connect(target_db, connect_timeout=5)
    setup.autocommit = True
    setup.cursor().execute("CREATE TABLE accounts (id int PRIMARY KEY, note text);"
                           " INSERT INTO accounts VALUES (1, 'x')")
    holder = psycopg2.connect(target_db, application_name="billing-job", connect_timeout=5)
    cur = holder.cursor()
    cur.execute(f"UPDATE accounts SET note = '{ROW_SECRET}' WHERE id = 1")
    pids = {"holder": holder.get_backend_pid()}
    waiters = []

    def wait_on(sql: str, key: str) -> None:
        conn = psycopg2.connect(target_db, application_name=key, connect_timeout=5)
        conn.autocommit = True
        pids[key] = conn.get_backend_pid()
        waiters.append(conn)
        try:
            conn.cursor().execute(sql)
        except psycopg2.Error:
            pass

    threads = [threading.Thread(target=wait_on, args=("ALTER TABLE accounts ADD COLUMN extra int", "migration"),
                                daemon=True)]
    threads[0].start()
    wait_until(lambda: "migration" in pids, 10, "the ALTER session")
    time.sleep(0.5)
    threads.append(threading.Thread(target=wait_on, args=("SELECT count(*) FROM accounts", "report"), daemon=True))
    threads[1].start()
    wait_until(lambda: "report" in pids, 10, "the SELECT session")
    time.sleep(0.5)
    yield pids
    holder.rollback()
    holder.close()
    for t in threads:
        t.join(10)
    for conn in waiters:
        conn.close()
    setup.close()


def write_log(path: Path) -> None:
    lines = [f"2031-03-03 00:00:{i % 60:02d} INFO request {i} ok" for i in range(300)]
    lines[250] = f"2031-03-03 00:04:10 ERROR auth failed token={LOG_SECRET} user=bob"
    lines[260] = "2031-03-03 00:04:20 ERROR db postgresql://app:Db-Pa55word@db1/app refused"
    lines[270] = f"STATEMENT:  INSERT INTO cards VALUES ('{ROW_SECRET}')"
    path.write_text("\n".join(lines) + "\n")


def config_body(name: str, target_db: str, redis_url: str, log: Path, *, extra: str = "", incident: bool = True) -> str:
    return textwrap.dedent(f"""\
        [[postgres]]
        name = "{name}"
        dsn = "{target_db}"
        incident = {str(incident).lower()}

        [[redis]]
        name = "{name}-cache"
        url = "{redis_url}"

        [incidents]
        logs = ["{log}", "{log.parent}/missing-*.log"]
        probe_timeout_s = 3
        """) + extra


def test_capture_snapshots_blocking_chain_redis_host_and_logs_masked(
        config: ConfigFactory, target_db: str, own_redis: EmbeddedRedis, blocked: dict[str, int], tmp_path: Path) -> None:
    client = own_redis.url  # with the password in the URL: it must not reach the snapshot
    r = redis_py.Redis.from_url(client)
    r.config_set("slowlog-log-slower-than", 0)
    r.set("session:user-1", "hunter2-value-secret")
    log = tmp_path / "app.log"
    write_log(log)
    name = unique("inc")
    config.write(config_body(name, target_db, client, log))
    cfg = get_config()
    book = records(cfg)
    started = time.monotonic()
    result = capture(cfg, book, None, "drill: checking the snapshot", 20.0, "testhost")
    assert time.monotonic() - started < 15
    assert result.status == "ok", result.summary
    incident = book.incidents.get(result.metrics["incident"])
    assert incident is not None and incident["state"] == "captured" and incident["trigger_task"] is None
    snap = incident["snapshot"]
    assert set(snap["probes"]) == {"host", f"postgres:{name}", f"redis:{name}-cache", "logs"}
    pg = snap["postgres"][name]
    [chain] = [c for c in pg["blocking_chains"] if c["pid"] == blocked["holder"]]
    assert chain["state"] == "idle in transaction" and chain["application_name"] == "billing-job"
    assert chain["waiting"] == 2 and chain["blocks"][0]["pid"] == blocked["migration"]
    assert chain["blocks"][0]["blocks"][0]["pid"] == blocked["report"]
    assert {w["pid"] for w in pg["lock_waits"]} >= {blocked["migration"], blocked["report"]}
    # the oldest transaction of this database (the server may have others' older ones)
    assert [t["pid"] for t in pg["longest_transactions"] if t["datname"] == target_db.rsplit("/", 1)[1]][0] \
        == blocked["holder"]
    assert "'?'" in chain["query"] and pg["replication"]["role"] == "primary" and pg["errors"] == {}
    rd = snap["redis"][f"{name}-cache"]
    assert rd["ok"] and rd["info"]["redis_version"] and rd["clients"]["total"] >= 1
    assert any(e["command"] == "SET" and e["args"] == 2 for e in rd["slowlog"])
    host = snap["host"]
    assert host["top_cpu"] and host["top_memory"] and any(d["mount"] == "/" for d in host["disks"])
    files = snap["logs"]["files"]
    assert len(files[str(log)]["lines"]) == 200 and files[str(log)]["truncated"] is True
    assert files[f"{log.parent}/missing-*.log"] == {"error": "no file matches"}
    text = json.dumps(incident, default=str)
    for secret in (REDIS_PASSWORD, LOG_SECRET, ROW_SECRET, "Db-Pa55word", "hunter2-value-secret"):
        assert secret not in text, secret
    assert "token=***" in text and "postgresql://app:***@db1/app" in text

    # the CLI: list and show (results database only)
    listed = subprocess.run(maintd_cmd("incidents"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[0] == str(incident["id"]) and "captured" in line and "ad hoc" in line
               for line in listed.stdout.splitlines()[1:]), listed.stdout
    shown = subprocess.run(maintd_cmd("incidents", "show", str(incident["id"])), cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"incident {incident['id']}: captured" in out and f"root pid {blocked['holder']} blocks 2 session(s)" in out
    assert f"== Redis {name}-cache" in out and "== Host" in out and f"== Log {log} (last 200 lines)" in out
    assert all(s not in out for s in (REDIS_PASSWORD, LOG_SECRET, ROW_SECRET))
    missing = subprocess.run(maintd_cmd("incidents", "show", "999999999"), cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 1 and missing.stderr.strip() == \
        "maintd: error: no incident 999999999 (see `maintd incidents`)"


def test_dead_and_hung_targets_give_a_partial_snapshot_in_bounded_time(
        config: ConfigFactory, results_db: str, tmp_path: Path) -> None:
    dead = free_port()
    with socket.socket() as hung:  # accepts TCP connections (backlog) and never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        port = hung.getsockname()[1]
        name = unique("inc")
        config.write(textwrap.dedent(f"""\
            [[postgres]]
            name = "{name}-dead"
            dsn = "postgresql://app:Dead-Pa55@127.0.0.1:{dead}/app"
            [[postgres]]
            name = "{name}-hung"
            dsn = "postgresql://app@127.0.0.1:{port}/app"
            [[redis]]
            name = "{name}-hung-cache"
            url = "redis://127.0.0.1:{port}/0"
            [incidents]
            probe_timeout_s = 2
            """))
        cfg = get_config()
        book = records(cfg)
        incident_id = book.incidents.open(task="health.postgres", target=f"{name}-dead", status="critical",
                                          summary="PostgreSQL unreachable", host="testhost",
                                          at=datetime.now(UTC))
        started = time.monotonic()
        result = capture(cfg, book, incident_id, "", cfg.incidents.probe_deadline.total_seconds(), "testhost")
        elapsed = time.monotonic() - started
    assert elapsed < 12, elapsed  # 2 s probe timeouts; the deadline is 2 x 2 + 5 s
    assert result.status == "warning" and "1 of 4 probes answered" in result.summary
    row = book.incidents.get(incident_id)
    assert row is not None and row["state"] == "partial"
    probes = row["snapshot"]["probes"]
    assert list(row["snapshot"]["postgres"])[0] == f"{name}-dead"  # the trigger's target first
    assert probes["host"]["ok"] is True
    for key in (f"postgres:{name}-dead", f"postgres:{name}-hung", f"redis:{name}-hung-cache"):
        assert probes[key]["ok"] is False and probes[key]["elapsed_s"] < 9, (key, probes[key])
    assert "Dead-Pa55" not in json.dumps(row, default=str)
    assert "refused" in probes[f"postgres:{name}-dead"]["error"].lower()
    # a capture delivered twice does not redo it
    again = capture(cfg, book, incident_id, "", 10, "testhost")
    assert again.status == "ok" and "already captured" in again.summary


def _hook(http: CaptureServer) -> str:
    return f'[[alerts]]\nkind = "webhook"\nname = "pager"\nurl = "{http.url("/pager")}"\nmin_severity = "critical"\n'


def test_alert_state_opens_incident_for_opted_in_checks_only(config: ConfigFactory, target_db: str,
                                                            http_capture: CaptureServer, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write_log(log)
    name = unique("inc")
    other = unique("noinc")
    config.write(config_body(name, target_db, "redis://127.0.0.1:1/0", log, extra=_hook(http_capture)
                             + f'[[redis]]\nname = "{other}"\nurl = "redis://127.0.0.1:1/0"\n'))
    cfg = get_config()
    dispatched: list[int] = []
    ok = observe(cfg, "health.postgres", name, "ok", "fine", "testhost", on_incident=dispatched.append)
    assert ok is None and dispatched == []
    alert = observe(cfg, "health.postgres", name, "critical", "PostgreSQL unreachable: refused", "testhost",
                    on_incident=dispatched.append)
    assert alert is not None and alert.incident is not None and dispatched == [alert.incident]
    [sent] = [r.json() for r in http_capture.at("/pager")]
    assert sent["incident"] == alert.incident and f"(incident {alert.incident}: maintd incidents show" in sent["title"]
    row = records(cfg).incidents.get(alert.incident)
    assert row is not None and row["state"] == "pending" and row["trigger_target"] == name
    # still critical (no alert), a reminder later, a warning: no new incident
    assert observe(cfg, "health.postgres", name, "critical", "still", "testhost", on_incident=dispatched.append) is None
    observe(cfg, "health.postgres", name, "warning", "better", "testhost", on_incident=dispatched.append)
    assert dispatched == [alert.incident]
    # critical again after the warning: a new change to critical, a new incident
    again = observe(cfg, "health.postgres", name, "critical", "down again", "testhost", on_incident=dispatched.append)
    assert again is not None and again.incident not in (None, alert.incident) and dispatched == [alert.incident,
                                                                                                    again.incident]
    # a target that did not opt in: an alert, no incident
    plain = observe(cfg, "health.redis", other, "critical", "Redis unreachable", "testhost", on_incident=dispatched.append)
    assert plain is not None and plain.incident is None and len(dispatched) == 2
    # opting a whole check in with [incidents] checks; and no dispatcher: the incident says why
    config.write(config_body(name, target_db, "redis://127.0.0.1:1/0", log,
                             extra=_hook(http_capture) + f'[[redis]]\nname = "{other}"\nurl = "redis://127.0.0.1:1/0"\n')
                 .replace("[incidents]\n", '[incidents]\nchecks = ["health.redis"]\n'))
    cfg = get_config()
    observe(cfg, "health.redis", other, "ok", "back", "testhost")
    opened = observe(cfg, "health.redis", other, "critical", "Redis unreachable", "testhost")
    assert opened is not None and opened.incident is not None
    failed = records(cfg).incidents.get(opened.incident)
    assert failed is not None and failed["state"] == "failed" and "no capture dispatcher" in failed["error"]


def test_incident_without_alert_channels_is_still_opened(config: ConfigFactory, target_db: str, tmp_path: Path) -> None:
    name = unique("inc")
    config.write(config_body(name, target_db, "redis://127.0.0.1:1/0", tmp_path / "none.log"))
    dispatched: list[Any] = []
    alert = observe(get_config(), "health.postgres", name, "critical", "down", "testhost", on_incident=dispatched.append)
    assert alert is not None and alert.incident is not None and dispatched == [alert.incident]
