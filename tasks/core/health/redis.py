"""``health.redis``: ping latency, memory vs maxmemory, eviction policy (a broker must be
``noeviction``), keyspace hit rate, clients and evictions — graded against ``Thresholds``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from tasks.core.findings import Findings, unreachable
from tasks.core.health.common import wait_s
from tasks.core.units import human_bytes, percent
from workers.config import RedisTarget, Thresholds
from workers.config.secrets import mask_secrets
from workers.doors import redis as redis_door
from workers.errors import first_line
from workers.records.outcome import Result

logger = logging.getLogger(__name__)

CLIENT_NAME = "maintd:health.redis"
# Below this many lookups since the last stats reset, a hit rate says nothing.
MIN_KEYSPACE_SAMPLE = 1_000


@dataclass(frozen=True)
class RedisSnapshot:
    """What one visit to a Redis server saw."""

    ping_ms: float
    version: str
    role: str = "master"
    used_memory: int = 0
    maxmemory: int = 0
    maxmemory_policy: str = "noeviction"
    keyspace_hits: int = 0
    keyspace_misses: int = 0
    connected_clients: int = 0
    evicted_keys: int = 0
    broker: bool = False

    @property
    def memory_percent(self) -> float | None:
        return percent(self.used_memory, self.maxmemory) if self.maxmemory else None

    @property
    def hit_rate(self) -> float | None:
        total = self.keyspace_hits + self.keyspace_misses
        return round(self.keyspace_hits / total, 4) if total else None

    @property
    def hit_rate_graded(self) -> bool:
        # A broker's lookups are queue polls, mostly of empty lists: its hit rate means nothing.
        return not self.broker and self.keyspace_hits + self.keyspace_misses >= MIN_KEYSPACE_SAMPLE


def client_for(target: RedisTarget) -> redis.Redis:
    """A client that fails within the target's timeout (capped for the check): one attempt."""
    return redis_door.target_client(target, client_name=CLIENT_NAME, timeout_s=wait_s(target.timeout_s))


def collect(client: redis.Redis, broker: bool) -> RedisSnapshot:
    started = time.monotonic()
    client.ping()
    ping_ms = (time.monotonic() - started) * 1000
    info: dict[str, Any] = client.info()
    return RedisSnapshot(
        ping_ms=round(ping_ms, 2), version=str(info.get("redis_version", "?")), role=str(info.get("role", "?")),
        used_memory=int(info.get("used_memory", 0)), maxmemory=int(info.get("maxmemory", 0)),
        maxmemory_policy=str(info.get("maxmemory_policy", "?")),
        keyspace_hits=int(info.get("keyspace_hits", 0)), keyspace_misses=int(info.get("keyspace_misses", 0)),
        connected_clients=int(info.get("connected_clients", 0)), evicted_keys=int(info.get("evicted_keys", 0)),
        broker=broker,
    )


def assess(snap: RedisSnapshot, thresholds: Thresholds) -> Result:
    """Grade a snapshot: pure, so the thresholds are tested with tables of cases."""
    found = Findings()
    found.grade("ping", snap.ping_ms, thresholds.redis_latency_ms, unit=" ms")
    found.grade("memory", snap.memory_percent, thresholds.redis_memory_percent, unit="% of maxmemory")
    if snap.broker and snap.maxmemory_policy != "noeviction":
        found.add("warning", f"maxmemory-policy {snap.maxmemory_policy} on a broker: Redis may evict queued "
                             "tasks under memory pressure (set noeviction)")
    if snap.broker and snap.evicted_keys:
        found.add("warning", f"{snap.evicted_keys} keys evicted since start on a broker (messages may be lost)")
    if snap.hit_rate_graded:
        found.grade("hit rate", snap.hit_rate, thresholds.redis_hit_rate, lower_is_worse=True)
    found.grade("clients", snap.connected_clients, thresholds.redis_clients)

    memory = human_bytes(snap.used_memory)
    memory += (f" of {human_bytes(snap.maxmemory)} ({snap.memory_percent:.0f}%)" if snap.maxmemory
               else " (no maxmemory)")
    rate = snap.hit_rate
    hits = "hit rate n/a" if rate is None else f"hit rate {rate * 100:.1f}%"
    if rate is not None and not snap.hit_rate_graded:
        hits += " (not graded)"
    parts = [f"ping {snap.ping_ms:.1f} ms", f"memory {memory}", f"policy {snap.maxmemory_policy}", hits,
             f"{snap.connected_clients} clients", f"{snap.evicted_keys} evicted"]
    headline = f"Redis {snap.version} ({snap.role}{', broker' if snap.broker else ''}): " + ", ".join(parts)
    metrics: dict[str, Any] = {**asdict(snap), "memory_percent": snap.memory_percent, "hit_rate": rate,
                               "reachable": True}
    return found.result(headline, metrics)


def check(target: RedisTarget, thresholds: Thresholds) -> Result:
    """Visit ``target`` once and grade what it shows; unreachable is critical."""
    where = {"url": target.url.masked}
    client = client_for(target)
    try:
        snap = collect(client, target.broker)
    except (redis.RedisError, OSError) as exc:
        reason = mask_secrets(f"{type(exc).__name__}: {first_line(exc)}", target)
        logger.warning("health.redis[%s]: %s", target.name, reason)
        return unreachable("Redis", reason, where)
    finally:
        client.close()
    result = assess(snap, thresholds)
    return Result(result.status, result.summary, {**result.metrics, **where})
