"""redis.stats against real servers: the machine's Redis read-only (own keys under a unique
prefix), and an own redis-server for everything that changes server config or state
(maxmemory, policy, slowlog threshold, SLOWLOG RESET, evictions)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks.core.redis import stats as redis_stats
from workers.config import RedisTarget, Thresholds
from workers.processes.embedded import EmbeddedRedis

from .conftest import RedisServer


def target(url: str, **kw: object) -> RedisTarget:
    return RedisTarget(name="cache", url=url, **kw)  # type: ignore[arg-type]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, redis.Redis]]:
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = redis.Redis(port=server.port, socket_timeout=5)
    try:
        yield server.url, client
    finally:
        client.close()
        server.stop()


def test_shared_redis_read_only_stats_and_big_keys(redis_server: RedisServer) -> None:
    prefix = f"maintd-test:{uuid.uuid4().hex}:"
    client = redis_server.client()
    try:
        client.set(prefix + "big", "x" * 300_000)
        for i in range(50):
            client.set(f"{prefix}small:{i}", "y")
        result = redis_stats.stats(target(redis_server.url, bigkeys_sample=100_000, bigkeys_budget_s=5),
                                   Thresholds(), None)
        m = result.metrics
        assert m["used_memory"] > 0 and m["redis_version"] and m["run_id"]
        assert m["rdb_last_bgsave_status"] in ("ok", "err") and "aof_rewrite_in_progress" in m
        assert m["bigkeys"][0]["key"] == prefix + "big" and m["bigkeys"][0]["bytes"] > 300_000
        assert m["bigkeys_sampled"] >= 51
        assert not m["slowlog_reset"] and result.actions == []
        assert "redis://" in m["url"] and result.summary.startswith("Redis ")
    finally:
        client.delete(*client.keys(prefix + "*"))


def test_policy_against_declared_use() -> None:
    assert redis_stats.policy_finding("cache", "allkeys-lru") is None
    assert redis_stats.policy_finding("cache", "noeviction")[0] == "warning"  # type: ignore[index]
    assert redis_stats.policy_finding("store", "noeviction") is None
    assert redis_stats.policy_finding("store", "allkeys-lru")[0] == "warning"  # type: ignore[index]
    assert redis_stats.policy_finding("broker", "volatile-lru")[0] == "critical"  # type: ignore[index]
    assert redis_stats.policy_finding(None, "allkeys-random") is None


def test_hit_rate_per_interval_and_policy_on_own_server(own_redis: tuple[str, redis.Redis]) -> None:
    url, client = own_redis
    client.config_set("maxmemory", 50 * 1024 * 1024)
    t = target(url, use="cache")
    client.set("k", "v")
    for _ in range(3000):
        client.get("k")  # all hits: the cumulative rate is ~100%
    first = redis_stats.stats(t, Thresholds(), None)
    assert first.metrics["hit_rate_scope"] == "since start" and first.metrics["hit_rate"] > 0.99
    assert "noeviction on a cache" in first.summary and first.status == "warning"
    for i in range(2000):
        client.get("k" if i % 2 else f"missing-{i}")  # 50% in this interval
    second = redis_stats.stats(t, Thresholds(), first.metrics)
    assert second.metrics["hit_rate_scope"] == "interval"
    assert 0.45 < second.metrics["hit_rate"] < 0.55
    assert second.status == "critical" and "hit rate" in second.summary  # < 80% (seed threshold 90% warns)
    assert second.metrics["memory_percent"] is not None


def test_slowlog_since_last_run_and_reset_only_when_configured(own_redis: tuple[str, redis.Redis]) -> None:
    url, client = own_redis
    client.config_set("slowlog-log-slower-than", 0)  # every command is "slow"
    client.slowlog_reset()
    for i in range(5):
        client.set(f"s{i}", "v")
    first = redis_stats.stats(target(url, bigkeys_sample=0), Thresholds(), None)
    assert first.metrics["slowlog_new"] >= 5
    assert all(set(e) == {"id", "start_time", "duration_us", "command"} for e in first.metrics["slowlog_top"])
    client.set("after", "v")
    second = redis_stats.stats(target(url, bigkeys_sample=0), Thresholds(), first.metrics)
    assert 1 <= second.metrics["slowlog_new"] < first.metrics["slowlog_new"] + 3
    assert client.slowlog_len() > 0  # not reset without reset_slowlog
    length = client.slowlog_len()
    planned = redis_stats.stats(target(url, bigkeys_sample=0, reset_slowlog=True), Thresholds(), second.metrics,
                                dry_run=True)
    assert planned.actions == ["SLOWLOG RESET"] and not planned.metrics["slowlog_reset"]
    assert client.slowlog_len() >= length  # a dry run plans the reset, never does it
    third = redis_stats.stats(target(url, bigkeys_sample=0, reset_slowlog=True, latency_doctor=True),
                              Thresholds(), second.metrics)
    assert third.actions == ["SLOWLOG RESET"] and third.metrics["slowlog_reset"]
    assert client.slowlog_len() <= 2  # only what came after the reset (the stats client's own commands)
    assert "latency_doctor" in third.metrics and len(third.metrics["latency_doctor"]) > 0


def test_evictions_on_a_store_are_critical(own_redis: tuple[str, redis.Redis]) -> None:
    url, client = own_redis
    client.config_set("maxmemory", 4 * 1024 * 1024)
    client.config_set("maxmemory-policy", "allkeys-lru")
    t = target(url, use="store", bigkeys_sample=0)
    first = redis_stats.stats(t, Thresholds(), None)
    for i in range(400):
        client.set(f"fill:{i}", "z" * 20_000)
    second = redis_stats.stats(t, Thresholds(), first.metrics)
    assert second.metrics["evicted_keys_interval"] > 0
    assert second.status == "critical" and "evicted since the last run on a store" in second.summary
    assert "allkeys-lru on a store" in second.summary


def test_big_key_sample_is_bounded_by_budget(own_redis: tuple[str, redis.Redis]) -> None:
    url, client = own_redis
    pipe = client.pipeline(transaction=False)
    for i in range(30_000):
        pipe.set(f"key:{i}", "v")
    pipe.execute()
    started = time.monotonic()
    bounded = redis_stats.stats(target(url, bigkeys_sample=100_000, bigkeys_budget_s=0.01), Thresholds(), None)
    assert not bounded.metrics["bigkeys_complete"] and bounded.metrics["bigkeys_sampled"] < 30_000
    assert time.monotonic() - started < 5
    capped = redis_stats.stats(target(url, bigkeys_sample=500), Thresholds(), None)
    assert capped.metrics["bigkeys_sampled"] == 500


def test_unreachable_is_critical_without_secrets() -> None:
    result = redis_stats.stats(target("redis://:hunter2@127.0.0.1:1/0", timeout_s=1), Thresholds(), None)
    assert result.status == "critical" and "hunter2" not in str(result)
