"""health.http's check against a real HTTP(S) server on loopback, a closed port and a
silent server."""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.core.health import http as hc
from tests.test_health_support import (
    JsonHttpServer,
    SilentServer,
    closed_port,
    server_context,
    slow,
    write_pair,
)
from workers.config import Config, HttpTarget, Thresholds

HEALTH_DOC = {
    "overall_status": "healthy",
    "uptime_seconds": 3456789,
    "services": [{"service_name": "PostgreSQL", "status": "healthy"},
                 {"service_name": "Redis", "status": "degraded"}],
    "cpu_usage_percent": 25.3,
}


@pytest.fixture(scope="module")
def api() -> Iterator[JsonHttpServer]:
    routes = {
        "/health": lambda: (200, HEALTH_DOC),
        "/down": lambda: (503, {"overall_status": "unhealthy"}),
        "/text": lambda: (200, b"hello, not json"),
        "/slow": slow(0.3, 200, {"overall_status": "healthy"}),
        "/big": lambda: (200, b"x" * (hc.MAX_BODY_BYTES + 10)),
    }
    with JsonHttpServer(routes) as server:
        yield server


def target(url: str, **kw: Any) -> HttpTarget:
    return HttpTarget.model_validate({"name": "api", "url": url, **kw})


def test_ok_with_expectations_from_toml(api: JsonHttpServer) -> None:
    # TOML turns the dotted key into nested tables; both mean the same path.
    config = Config.model_validate(tomllib.loads(f"""
        [[http]]
        name = "api"
        url = "{api.url('/health')}"
        expect = {{ overall_status = "healthy", services.0.status = "healthy", "services.1.service_name" = "Redis" }}
    """))
    result = hc.check(config.http[0], Thresholds())
    assert result.status == "ok", result.summary
    assert result.metrics["status_code"] == 200 and result.metrics["expectations_met"] == 3
    assert result.summary.startswith("HTTP 200 in ") and "3/3 expectations met" in result.summary


@pytest.mark.parametrize(("expect", "status", "reason"), [
    ({"services.1.status": "healthy"}, "critical", "services.1.status is 'degraded', expected 'healthy'"),
    ({"services.1.status": ["healthy", "degraded"]}, "ok", None),  # a list: any of them
    ({"services.5.status": "healthy"}, "critical", "field services.5.status missing"),
    ({"overall_status.deeper": "x"}, "critical", "field overall_status.deeper missing"),
    ({"uptime_seconds": 3456789}, "ok", None),
    ({"cpu_usage_percent": True}, "critical", "expected True"),  # bools are not numbers
])
def test_expectation_cases(api: JsonHttpServer, expect: dict[str, Any], status: str, reason: str | None) -> None:
    result = hc.check(target(api.url("/health"), expect=expect), Thresholds())
    assert result.status == status, result.summary
    if reason:
        assert reason in result.summary


def test_unexpected_status_is_critical_unless_allowed(api: JsonHttpServer) -> None:
    down = hc.check(target(api.url("/down")), Thresholds())
    assert down.status == "critical" and "HTTP 503 (expected 200)" in down.summary
    allowed = hc.check(target(api.url("/down"), expect_status=[200, 503]), Thresholds())
    assert allowed.status == "ok", allowed.summary
    missing = hc.check(target(api.url("/nowhere")), Thresholds())
    assert missing.status == "critical" and "HTTP 404" in missing.summary


def test_body_that_is_not_json_fails_expectations_only(api: JsonHttpServer) -> None:
    assert hc.check(target(api.url("/text")), Thresholds()).status == "ok"
    result = hc.check(target(api.url("/text"), expect={"overall_status": "healthy"}), Thresholds())
    assert result.status == "critical" and "body is not JSON" in result.summary


def test_big_body_is_not_read_whole(api: JsonHttpServer) -> None:
    result = hc.check(target(api.url("/big"), expect={"a": 1}), Thresholds())
    assert result.status == "critical" and "body larger than" in result.summary
    assert result.metrics["bytes"] == hc.MAX_BODY_BYTES


def test_latency_graded_against_max_latency(api: JsonHttpServer) -> None:
    fast = hc.check(target(api.url("/slow"), max_latency_ms=5000), Thresholds())
    warn = hc.check(target(api.url("/slow"), max_latency_ms=250), Thresholds())
    crit = hc.check(target(api.url("/slow"), max_latency_ms=100), Thresholds())
    assert fast.status == "ok" and fast.metrics["latency_ms"] >= 300
    assert warn.status == "warning" and "latency" in warn.summary and ">= 250 ms" in warn.summary, warn.summary
    assert crit.status == "critical" and ">= 200 ms" in crit.summary  # twice max_latency_ms


def test_closed_port_is_critical_at_once() -> None:
    started = time.monotonic()
    result = hc.check(target(f"http://ops:pw-Http-Sekrit-9@127.0.0.1:{closed_port()}/health"), Thresholds())
    assert time.monotonic() - started < 3
    assert result.status == "critical" and "connection failed: Connection refused" in result.summary
    text = result.summary + json.dumps(result.metrics)
    assert "pw-Http-Sekrit-9" not in text and "ops:***@" in text


def test_silent_server_is_critical_within_timeout() -> None:
    with SilentServer() as server:
        started = time.monotonic()
        result = hc.check(target(f"http://127.0.0.1:{server.port}/health", timeout_s=1), Thresholds())
        elapsed = time.monotonic() - started
    assert result.status == "critical" and "no response within 1s" in result.summary, result.summary
    assert 0.9 <= elapsed < 3, elapsed


def test_tls_verification_is_configurable(tmp_path: Path) -> None:
    cert, key = write_pair(tmp_path, "api", days=60)
    with JsonHttpServer({"/health": lambda: (200, HEALTH_DOC)}, tls=server_context(cert, key)) as server:
        strict = hc.check(target(server.url("/health")), Thresholds())
        relaxed = hc.check(target(server.url("/health"), verify_tls=False,
                                  expect={"overall_status": "healthy"}), Thresholds())
    assert strict.status == "critical" and "TLS error" in strict.summary, strict.summary
    assert "CERTIFICATE_VERIFY_FAILED" in strict.summary or "certificate" in strict.summary.lower()
    assert relaxed.status == "ok", relaxed.summary


@pytest.mark.parametrize(("expect", "flat"), [
    ({"a": 1}, {"a": 1}),
    ({"services": {"0": {"status": "ok"}}}, {"services.0.status": "ok"}),
    ({"x.y": [1, 2], "z": {"w": None}}, {"x.y": [1, 2], "z.w": None}),
])
def test_flatten(expect: dict[str, Any], flat: dict[str, Any]) -> None:
    assert hc.flatten(expect) == flat
