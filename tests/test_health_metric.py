"""health.metric (issue 10, item 2): a number from a read-only SQL query (PostgreSQL and
SQLite), a JSON field (GET and POST with a body) and a Redis INFO field, graded by
``>``/``<``/between/outside conditions; writes are refused, slow queries time out, a dead
source is critical; the value becomes a series; health.overview's score thresholds."""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tasks.core.health import metric as hm
from tasks.core.health import overview as ov
from tests.test_health_support import closed_port
from workers.config import Config
from workers.config.reporting import parse_condition


@pytest.mark.parametrize(("text", "value", "met"), [
    ("> 5", 5.1, True), ("> 5", 5, False), (">= 5", 5, True), ("< 0.95", 0.9, True), ("<= 1", 2, False),
    ("between 10 20", 10, True), ("between 10 and 20", 21, False), ("outside 10..20", 9.9, True),
    ("outside 10, 20", 15, False), ("> -1e3", -999, True),
])
def test_conditions(text: str, value: float, met: bool) -> None:
    assert parse_condition(text)(value) is met


@pytest.mark.parametrize("text", ["=> 5", "between 5", "outside 9 1", "5", "> five"])
def test_bad_conditions_fail_at_load(text: str) -> None:
    with pytest.raises(ValueError, match="condition"):
        parse_condition(text)


class AppServer:
    """An application's JSON endpoints on loopback: GET /stats, POST /query echoes a computed number."""

    def __init__(self) -> None:
        outer = self
        self.posted: list[Any] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, status: int, doc: Any) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/stats":
                    self._send(200, {"queue": {"depth": 42, "state": "busy"}, "workers": [{"busy": 3}]})
                else:
                    self._send(503, {"error": "down"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.posted.append(body)
                self._send(200, {"result": {"count": len(body.get("ids", []))}})

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def app() -> Iterator[AppServer]:
    server = AppServer()
    yield server
    server.close()


def make_config(target_db: str, broker_url: str, db_file: Path, app_url: str, metrics: list[dict[str, Any]]) -> Config:
    return Config.model_validate({
        "postgres": [{"name": "main", "dsn": target_db}],
        "sqlite": [{"name": "assets", "path": str(db_file), "host": "app1"}],
        "http": [{"name": "api", "url": app_url + "/stats"}, {"name": "down", "url": f"http://127.0.0.1:{closed_port()}/"}],
        "redis": [{"name": "cache", "url": broker_url}],
        "metrics": metrics,
    })


def test_every_kind_against_real_sources(target_db: str, broker_url: str, tmp_path: Path, app: AppServer) -> None:
    with psycopg2.connect(target_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE error_logs (at timestamptz, level text)")
        cur.execute("INSERT INTO error_logs SELECT now(), CASE WHEN i % 20 = 0 THEN 'error' ELSE 'info' END"
                    " FROM generate_series(1, 100) i")
    conn.close()
    db_file = tmp_path / "assets.db"
    with sqlite3.connect(db_file) as lite:
        lite.execute("CREATE TABLE prices (updated_at real)")
        lite.execute("INSERT INTO prices VALUES (strftime('%s','now') - 7200)")
    lite.close()
    rate = "SELECT 100.0 * count(*) FILTER (WHERE level = 'error') / count(*) FROM error_logs"
    config = make_config(target_db, broker_url, db_file, app.url, [
        {"name": "error_rate", "type": "sql", "source": "main", "query": rate, "warning": "> 2", "critical": "> 5", "unit": "%"},
        {"name": "freshness", "type": "sql", "source": "assets", "query":
         "SELECT strftime('%s','now') - max(updated_at) FROM prices", "warning": "> 3600", "critical": "> 86400"},
        {"name": "depth", "type": "json", "source": "api", "field": "queue.depth", "warning": "between 40 100"},
        {"name": "busy", "type": "json", "source": "api", "field": "workers.0.busy", "critical": "outside 1 2"},
        {"name": "posted", "type": "json", "source": "api", "path": "/query", "method": "POST",
         "body": {"ids": [1, 2, 3]}, "field": "result.count", "critical": "< 5"},
        {"name": "state", "type": "json", "source": "api", "field": "queue.state", "warning": "> 1"},
        {"name": "clients", "type": "redis_info", "source": "cache", "field": "connected_clients", "critical": "< 1"},
        {"name": "write", "type": "sql", "source": "main", "query": "INSERT INTO error_logs VALUES (now(), 'x')",
         "warning": "> 0"},
        {"name": "lite_write", "type": "sql", "source": "assets", "query": "DELETE FROM prices", "warning": "> 0"},
        {"name": "slow", "type": "sql", "source": "main", "query": "SELECT pg_sleep(5)::text::int", "warning": "> 0",
         "timeout_s": 0.5},
        {"name": "dead", "type": "json", "source": "down", "field": "x", "warning": "> 0", "timeout_s": 2},
    ])
    got = {m.name: hm.check(m, config) for m in config.metrics}
    assert got["error_rate"].status == "warning" and got["error_rate"].metrics["value"] == 5.0  # 5 is not > 5
    assert got["freshness"].status == "warning" and 7100 < got["freshness"].metrics["value"] < 7300
    assert got["depth"].status == "warning" and "between 40 and 100" in got["depth"].summary
    assert got["busy"].status == "critical" and got["busy"].metrics["value"] == 3
    assert got["posted"].status == "critical" and got["posted"].metrics["value"] == 3 and app.posted == [{"ids": [1, 2, 3]}]
    assert got["state"].status == "warning" and "not a number" in got["state"].summary
    assert got["clients"].status == "ok" and got["clients"].metrics["value"] >= 1
    assert got["write"].status == "critical" and "read-only transaction" in got["write"].summary
    assert got["lite_write"].status == "critical" and "readonly" in got["lite_write"].summary.replace(" ", "")
    assert got["slow"].status == "critical" and "statement timeout" in got["slow"].summary
    assert got["dead"].status == "critical" and "connection" in got["dead"].summary
    with psycopg2.connect(target_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM error_logs")
        assert cur.fetchone() == (100,)  # the INSERT was refused
    conn.close()


def test_score_thresholds_make_overview_alert() -> None:
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    base = {"postgres": [{"name": f"db{i}", "dsn": "postgresql://u@db/x"} for i in range(5)]}
    rows = [{"task": "health.postgres", "target": f"db{i}", "status": "warning" if i == 0 else "ok",
             "summary": "s", "metrics": {}, "started_at": now - timedelta(seconds=61),
             "finished_at": now - timedelta(seconds=60)} for i in range(5)]
    plain = ov.check(rows, Config.model_validate(base), now)
    assert plain.status == "warning" and plain.metrics["score"] == 90.0
    strict = ov.check(rows, Config.model_validate({**base, "health": {"score_warning": 95, "score_critical": 91}}), now)
    assert strict.status == "critical" and "below the critical threshold 91" in strict.summary
    loose = ov.check(rows, Config.model_validate({**base, "health": {"score_warning": 80}}), now)
    assert loose.status == "warning" and "threshold" not in loose.summary
    with pytest.raises(ValueError, match="score_critical 95 must not be above score_warning 90"):
        Config.model_validate({"health": {"score_warning": 90, "score_critical": 95}})


def test_metric_task_through_gated_run_writes_a_series(config: Any, target_db: str) -> None:
    """The task as a worker runs it (taskdef.execute in-process): the value is a series point."""
    config.write(f"""
        [[postgres]]
        name = "main"
        dsn = "{target_db}"
        [[metrics]]
        name = "answer"
        type = "sql"
        source = "main"
        query = "SELECT 42"
        warning = "> 40"
    """)
    from tasks.health import metric
    from workers.records import records

    outcome = metric.apply(args=("answer",)).get()
    assert outcome["status"] == "warning" and outcome["metrics"]["value"] == 42
    points = records().metrics.series("health.metric", "answer", "value", datetime.now(UTC) - timedelta(minutes=5))
    assert [p.value for p in points][-1] == 42.0
