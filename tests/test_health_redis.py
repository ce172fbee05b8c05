"""health.redis's check against real Redis servers (the fixture's and a private one with
a password and maxmemory), a closed port and a silent server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis as redis_py

from tasks.core.health import redis as rc
from tests.test_health_support import SilentServer, closed_port
from workers.config import RedisTarget, Thresholds
from workers.processes.embedded import EmbeddedRedis

PASSWORD = "pw-Redis-Sekrit-31"


def target(url: str, **kw: object) -> RedisTarget:
    return RedisTarget.model_validate({"name": "t", "url": url, **kw})


def calm(**changes: object) -> Thresholds:
    """Default thresholds, but ping latency graded loosely: these tests are about memory,
    policy and auth, and a CI machine running tests in parallel can take 200 ms to connect."""
    return Thresholds(**{"redis_latency_ms": (2000, 5000), **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A Redis of our own: its memory settings are ours to change."""
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("health-redis")), password=PASSWORD).start()
    yield server
    server.stop()


def admin(server: EmbeddedRedis) -> redis_py.Redis:
    return redis_py.Redis.from_url(server.url, socket_timeout=5)


def test_fixture_redis_is_ok(redis_server) -> None:  # type: ignore[no-untyped-def]
    result = rc.check(target(redis_server.url, broker=True), calm())
    assert result.status == "ok", result.summary
    m = result.metrics
    assert m["reachable"] is True and m["version"][0].isdigit() and m["connected_clients"] >= 1
    assert m["maxmemory_policy"] == "noeviction" and m["broker"] is True
    assert result.summary.startswith(f"Redis {m['version']} (")
    assert "ping" in result.summary and "policy noeviction" in result.summary
    json.dumps(m)


def test_broker_not_noeviction_warns_and_memory_is_graded(private_redis: EmbeddedRedis) -> None:
    client = admin(private_redis)
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("maxmemory", "64mb")
    try:
        broker = rc.check(target(private_redis.url, broker=True), calm())
        cache = rc.check(target(private_redis.url, broker=False), calm())
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", str(int(used / 0.85)))  # ~85% used: between 80 and 90
        warm = rc.check(target(private_redis.url), calm(redis_memory_percent=(80, 99)))
        hot = rc.check(target(private_redis.url), calm(redis_memory_percent=(10, 20)))
    finally:
        client.config_set("maxmemory", "0")
        client.config_set("maxmemory-policy", "noeviction")
        client.close()
    assert broker.status == "warning", broker.summary
    assert "maxmemory-policy allkeys-lru on a broker" in broker.summary
    assert cache.status == "ok", cache.summary  # a cache may evict
    assert cache.metrics["maxmemory"] == 64 * 1024 * 1024 and cache.metrics["memory_percent"] < 80
    assert warm.status == "warning" and "memory" in warm.metrics["problems"][0], warm.summary
    assert hot.status == "critical"
    for result in (broker, cache, warm, hot):
        assert PASSWORD not in result.summary + json.dumps(result.metrics)
    assert ":***@" in broker.metrics["url"]


def test_password_from_its_own_field(private_redis: EmbeddedRedis) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0"
    assert rc.check(target(url, password=PASSWORD), calm()).status == "ok"
    denied = rc.check(target(url, password="wrong-password-1"), calm())
    assert denied.status == "critical" and "unreachable" in denied.summary
    assert "wrong-password-1" not in denied.summary + json.dumps(denied.metrics)


def test_closed_port_is_critical_at_once() -> None:
    started = time.monotonic()
    result = rc.check(target(f"redis://:{PASSWORD}@127.0.0.1:{closed_port()}/0"), calm())
    assert time.monotonic() - started < 3
    assert result.status == "critical" and "refused" in result.summary
    assert PASSWORD not in result.summary + json.dumps(result.metrics)


def test_silent_server_is_critical_within_timeout() -> None:
    with SilentServer() as server:
        started = time.monotonic()
        result = rc.check(target(f"redis://127.0.0.1:{server.port}/0", timeout_s=1), calm())
        elapsed = time.monotonic() - started
    assert result.status == "critical" and "Timeout" in result.summary, result.summary
    assert 0.9 <= elapsed < 3, elapsed  # one attempt, no retries


BASE = rc.RedisSnapshot(ping_ms=1.0, version="7.2.4", used_memory=10 * 2**20, connected_clients=5)


@pytest.mark.parametrize(("changes", "status", "reason"), [
    ({}, "ok", None),
    ({"ping_ms": 50.0}, "warning", "ping 50 ms >= 50 ms"),
    ({"ping_ms": 300.0}, "critical", "ping 300 ms >= 250 ms"),
    ({"maxmemory": 100 * 2**20}, "ok", None),  # 10%
    ({"maxmemory": 12 * 2**20}, "warning", "memory 83.3% of maxmemory >= 80%"),
    ({"maxmemory": 11 * 2**20}, "critical", "memory 90.9% of maxmemory >= 90%"),
    ({"maxmemory": 0, "used_memory": 10 * 2**30}, "ok", None),  # no maxmemory: nothing to compare
    ({"maxmemory_policy": "allkeys-lru"}, "ok", None),  # a cache may evict
    ({"maxmemory_policy": "allkeys-lru", "broker": True}, "warning", "allkeys-lru on a broker"),
    ({"broker": True, "evicted_keys": 3}, "warning", "3 keys evicted"),
    ({"evicted_keys": 3}, "ok", None),
    ({"keyspace_hits": 950, "keyspace_misses": 50}, "ok", None),
    ({"keyspace_hits": 850, "keyspace_misses": 150}, "warning", "hit rate 0.85 < 0.9"),
    ({"keyspace_hits": 700, "keyspace_misses": 300}, "critical", "hit rate 0.7 < 0.8"),
    ({"keyspace_hits": 7, "keyspace_misses": 3}, "ok", None),  # too few lookups
    ({"keyspace_hits": 700, "keyspace_misses": 300, "broker": True}, "ok", None),  # queue polls
    ({"connected_clients": 1000}, "warning", "clients 1000 >= 1000"),
    ({"connected_clients": 6000}, "critical", "clients 6000 >= 5000"),
])
def test_assess_grades_each_signal(changes: dict[str, object], status: str, reason: str | None) -> None:
    result = rc.assess(replace(BASE, **changes), Thresholds())  # type: ignore[arg-type]
    assert result.status == status, result.summary
    if reason is None:
        assert result.metrics["problems"] == []
    else:
        assert reason in result.metrics["problems"][0] and reason in result.summary


def test_assess_summary() -> None:
    snap = replace(BASE, maxmemory=100 * 2**20, keyspace_hits=980, keyspace_misses=20)
    assert rc.assess(snap, Thresholds()).summary == (
        "Redis 7.2.4 (master): ping 1.0 ms, memory 10.0 MB of 100.0 MB (10%), policy noeviction, "
        "hit rate 98.0%, 5 clients, 0 evicted")
