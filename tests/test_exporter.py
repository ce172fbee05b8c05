"""`maintd exporter`: scraped over HTTP and parsed with prometheus-client's own parser; the values
match the history rows, deferred runs, queue contents and liveness marks put in place here.
Also: `maintd status` names a queue holding messages that no live worker consumes."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, ConfigFactory, maintd_cmd
from workers.cli.exporter import build_server
from workers.config import get_config
from workers.errors import ConfigError

pytestmark = pytest.mark.timeout(120)


def scrape(url: str, auth: tuple[str, str] | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def status_code(url: str, auth: tuple[str, str] | None = None) -> int:
    try:
        scrape(url, auth)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


@pytest.fixture
def serve() -> Iterator[object]:
    servers = []

    def start(address: str = "127.0.0.1", no_auth: bool = False) -> str:
        server = build_server(get_config(), address, 0, no_auth)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/metrics"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_scrape_reports_entries_health_deferred_and_queues(config: ConfigFactory, serve) -> None:  # type: ignore[no-untyped-def]
    pg, cache = f"pg{uuid.uuid4().hex[:6]}", f"cache{uuid.uuid4().hex[:6]}"
    config.write(f"""
        [[postgres]]
        name = "{pg}"
        dsn = "postgresql://u@db.invalid/x"

        [[redis]]
        name = "{cache}"
        url = "redis://r.invalid:6379/0"
        """)
    from workers.dispatch import dispatch
    from workers.doors.redis import alive_client, forget_alive, mark_alive
    from workers.records import records

    book = records(get_config())
    now = datetime.now(UTC).replace(microsecond=0)
    entry = f"health.postgres[{pg}]"
    common = {"impact": "none", "host": "h", "worker": "w/1", "attempt": 1, "dry_run": False}
    # An older success, then the entry's latest scheduled run: critical, 2.5 s.
    book.runs.record(task_id=str(uuid.uuid4()), task="health.postgres", target=pg, status="ok", summary="fine",
                     started_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=2) + timedelta(seconds=1),
                     entry=entry, **common)
    book.runs.record(task_id=str(uuid.uuid4()), task="health.postgres", target=pg, status="critical",
                     summary="down", started_at=now - timedelta(minutes=1),
                     finished_at=now - timedelta(minutes=1) + timedelta(seconds=2.5), entry=entry, **common)
    # An ad hoc run of the Redis check: counts for health (ok), not as the entry's scheduled run.
    book.runs.record(task_id=str(uuid.uuid4()), task="health.redis", target=cache, status="ok", summary="fine",
                     started_at=now - timedelta(minutes=2), finished_at=now - timedelta(minutes=2), **common)
    book.deferred.defer("postgres.vacuum_bloated", pg, {}, now + timedelta(hours=3), "outside its window")
    sent = dispatch("health.redis", cache, {}, expires_s=600)
    client = alive_client(get_config())
    mark_alive(client, f"node-{uuid.uuid4().hex[:6]}", 30, {"queues": ["db.low"]})
    try:
        url = serve()
        m = scrape(url)
    finally:
        for node in [k.decode()[len("maintd:alive:"):] for k in client.scan_iter(match="maintd:alive:node-*")]:
            forget_alive(client, node)
        sent.forget()

    def labels(**kw: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(kw.items()))

    e = {"entry": entry, "task": "health.postgres", "target": pg}
    assert m[("maintd_entry_last_run_status", labels(**e, status="critical"))] == 1
    assert ("maintd_entry_last_run_status", labels(**e, status="ok")) not in m
    assert m[("maintd_entry_last_run_start_timestamp_seconds", labels(**e))] == (now - timedelta(minutes=1)).timestamp()
    assert m[("maintd_entry_last_run_duration_seconds", labels(**e))] == pytest.approx(2.5)
    assert m[("maintd_entry_last_success_timestamp_seconds", labels(**e))] == (
        now - timedelta(hours=2) + timedelta(seconds=1)).timestamp()
    redis_entry = {"entry": f"health.redis[{cache}]", "task": "health.redis", "target": cache}
    assert ("maintd_entry_last_run_start_timestamp_seconds", labels(**redis_entry)) not in m  # ad hoc only
    assert m[("maintd_entry_last_success_timestamp_seconds", labels(**redis_entry))] == (
        now - timedelta(minutes=2)).timestamp()

    assert m[("maintd_target_health_status", labels(task="health.postgres", target=pg, status="unhealthy"))] == 1
    assert m[("maintd_target_health_score", labels(task="health.postgres", target=pg))] == 0
    assert m[("maintd_target_health_status", labels(task="health.redis", target=cache, status="healthy"))] == 1
    assert m[("maintd_target_health_score", labels(task="health.redis", target=cache))] == 100
    assert m[("maintd_health_score", ())] == 50
    assert m[("maintd_deferred_runs", labels(task="postgres.vacuum_bloated", waiting_for="time"))] == 1

    assert m[("maintd_queue_messages", labels(queue="db.none"))] == 1  # the dispatched health.redis
    assert m[("maintd_queue_consumers", labels(queue="db.none"))] == 0
    assert m[("maintd_queue_consumers", labels(queue="db.low"))] == 1
    assert m[("maintd_workers_alive", ())] == 1
    assert m[("maintd_exporter_source_up", labels(source="records"))] == 1
    assert m[("maintd_exporter_source_up", labels(source="broker"))] == 1
    # The example dashboard asks only for metrics the exporter serves.
    dashboard = json.loads((ROOT / "ops" / "grafana" / "maintd-dashboard.json").read_text())
    asked = {name for p in dashboard["panels"] for t in p["targets"] for name in re.findall(r"maintd_\w+", t["expr"])}
    served = {name for name, _ in m}
    assert asked and asked <= served, asked - served


def test_basic_auth_with_flower_credentials(config: ConfigFactory, serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "flower.pw"
    secret.write_text("s3cret-pw\n")
    config.write(f"""
        [flower]
        user = "ops"
        password_file = "{secret}"
        """)
    url = serve()
    assert status_code(url) == 401
    assert status_code(url, ("ops", "wrong")) == 401
    assert status_code(url, ("admin", "s3cret-pw")) == 401
    m = scrape(url, ("ops", "s3cret-pw"))
    assert m[("maintd_exporter_source_up", (("source", "records"),))] == 1
    # --no-auth: loopback only
    assert status_code(serve(no_auth=True)) == 200
    with pytest.raises(ConfigError, match="loopback"):
        build_server(get_config(), "0.0.0.0", 0, no_auth=True)


def test_without_credentials_only_loopback(config: ConfigFactory) -> None:
    config.write()
    with pytest.raises(ConfigError, match=r"needs basic auth: set \[flower\] password"):
        build_server(get_config(), "0.0.0.0", 0)


def test_exporter_process_serves_and_a_dead_broker_is_a_metric(config: ConfigFactory, tmp_path: Path) -> None:
    """The real `maintd exporter` process; its broker unreachable: the scrape still answers."""
    path = config.write()
    text = path.read_text().replace(config.broker_url, "redis://127.0.0.1:1/0")
    path.write_text(text)
    proc = subprocess.Popen(maintd_cmd("--config", str(path), "exporter", "--port", "0"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "maintd exporter at http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() else "")
        url = line.split()[3]
        m = scrape(url)
        assert m[("maintd_exporter_source_up", (("source", "broker"),))] == 0
        assert m[("maintd_exporter_source_up", (("source", "records"),))] == 1
        assert not any(name == "maintd_queue_messages" for name, _ in m)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_status_lists_queues_with_messages_and_no_consumer(config: ConfigFactory, start_worker) -> None:  # type: ignore[no-untyped-def]
    """A real worker for db host h1 publishes the queues it consumes; a message for an app host's
    health check (no worker there) is reported; one for the db worker's shared queue is not."""
    config.write(f"""
        [[hosts]]
        name = "app{uuid.uuid4().hex[:6]}"
        """)
    worker = start_worker(role="db", host="h1")
    from workers.catalog import load_catalog
    from workers.routing import queue_for

    host = get_config().hosts[0].name
    target_queue = queue_for(load_catalog()["health.host"], host, get_config())
    assert target_queue == f"app.none.{host}"
    sent = subprocess.run(maintd_cmd("run", "health.host", host), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    try:
        out = subprocess.run(maintd_cmd("status", "--json"), cwd=ROOT, capture_output=True, text=True, timeout=60)
        doc = json.loads(out.stdout)
        consumed = {q["queue"]: q["consumers"] for q in doc["queues"]}
        assert consumed["db.none"] == ["db-fast@h1"]
        assert consumed["db.high.h1"] == ["db-slow@h1"]
        assert [q["queue"] for q in doc["unconsumed"]] == [target_queue]
        assert doc["unconsumed"][0]["messages"] == 1
        text = subprocess.run(maintd_cmd("status"), cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
        assert "queues with messages and no consumer" in text and f"  {target_queue}: 1 message(s)" in text
    finally:
        worker.stop()
