"""``redis.stats`` (impact none): what a Redis server is doing, graded, with the counters the
next run needs to report *per interval* (hits and misses, evicted and expired keys, the
newest slowlog id). The previous run's metrics come in as ``previous``; a restart (new
``run_id``) or a counter going backwards starts the interval over.

Never blocks the server: INFO, SLOWLOG GET, ``SCAN`` with ``COUNT`` ≤ 1000 and ``MEMORY
USAGE`` on a bounded sample within a time budget. Changes nothing unless configured:
``SLOWLOG RESET`` only with ``reset_slowlog = true``.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from tasks.core.findings import Findings, unreachable
from tasks.core.units import human_bytes, percent
from workers.config import RedisTarget, Thresholds
from workers.config.secrets import mask_secrets
from workers.doors import redis as redis_door
from workers.errors import first_line
from workers.records.outcome import Result

CLIENT_NAME = "maintd:redis.stats"
MIN_LOOKUPS = 1000  # fewer lookups in an interval: the hit rate says nothing
FRAGMENTATION = (1.5, 2.0)  # mem_fragmentation_ratio (warning, critical) ...
FRAGMENTATION_MIN_BYTES = 100 * 1024 * 1024  # ... graded only above this much memory (small heaps are noisy)
EVICTING = ("allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu")
TOP_KEYS = 10


def declared_use(target: RedisTarget) -> str | None:
    return target.use or ("broker" if target.broker else None)


def policy_finding(use: str | None, policy: str) -> tuple[str, str] | None:
    if use == "cache" and policy not in EVICTING:
        return "warning", (f"maxmemory-policy {policy} on a cache: expected an LRU/LFU policy (e.g. allkeys-lru)"
                           + (" — with noeviction writes fail once maxmemory is reached" if policy == "noeviction" else ""))
    if use in ("store", "broker") and policy != "noeviction":
        return "critical" if use == "broker" else "warning", (
            f"maxmemory-policy {policy} on a {use}: Redis may evict data it must keep (set noeviction)")
    return None


def _delta(now: dict[str, Any], prev: dict[str, Any] | None, key: str) -> int | None:
    if not prev or prev.get("run_id") != now.get("run_id") or key not in prev:
        return None
    d = int(now[key]) - int(prev[key])
    return d if d >= 0 else None


def collect(client: redis.Redis, target: RedisTarget, previous: dict[str, Any] | None,
            dry_run: bool = False) -> dict[str, Any]:
    info: dict[str, Any] = client.info("everything")
    m: dict[str, Any] = {k: info.get(k) for k in (
        "redis_version", "run_id", "role", "used_memory", "used_memory_rss", "maxmemory", "maxmemory_policy",
        "mem_fragmentation_ratio", "keyspace_hits", "keyspace_misses", "evicted_keys", "expired_keys",
        "connected_clients", "rdb_last_bgsave_status", "rdb_changes_since_last_save", "rdb_last_save_time",
        "rdb_bgsave_in_progress", "aof_enabled", "aof_rewrite_in_progress", "aof_last_bgrewrite_status",
        "aof_last_write_status", "loading")}
    m["at"] = time.time()
    m["use"] = declared_use(target)
    interval = m["at"] - float(previous["at"]) if previous and "at" in previous else None
    m["interval_s"] = round(interval, 1) if interval and _delta(m, previous, "keyspace_hits") is not None else None
    hits, misses = _delta(m, previous, "keyspace_hits"), _delta(m, previous, "keyspace_misses")
    if hits is None or misses is None:  # first run or restart: since the server started
        hits, misses, m["hit_rate_scope"] = int(m["keyspace_hits"] or 0), int(m["keyspace_misses"] or 0), "since start"
    else:
        m["hit_rate_scope"] = "interval"
    m["lookups"] = hits + misses
    m["hit_rate"] = round(hits / (hits + misses), 4) if hits + misses else None
    for key in ("evicted_keys", "expired_keys"):
        m[f"{key}_interval"] = _delta(m, previous, key)
    # Slowlog since the last run: ids grow until a restart or reset.
    entries = redis_door.slowlog_entries(client)
    last = int(previous.get("slowlog_last_id", -1)) if previous and previous.get("run_id") == m["run_id"] else -1
    if entries and last > max(e["id"] for e in entries):
        last = -1  # reset by someone else
    new = [e for e in entries if e["id"] > last]
    m["slowlog_new"] = len(new)
    m["slowlog_top"] = sorted(new, key=lambda e: -e["duration_us"])[:5]
    m["slowlog_last_id"] = max((e["id"] for e in entries), default=last)
    m["slowlog_reset"] = False
    if target.reset_slowlog and entries and not dry_run:
        redis_door.slowlog_reset(client)
        m["slowlog_reset"], m["slowlog_last_id"] = True, -1
    if target.latency_doctor:
        m["latency_doctor"] = redis_door.latency_doctor(client)[:4000]
    if target.bigkeys_sample:
        started = time.monotonic()
        sizes, sampled, complete = redis_door.sample_key_sizes(client, sample=target.bigkeys_sample,
                                                               budget_s=target.bigkeys_budget_s)
        m["bigkeys"] = [{"key": k[:200], "bytes": b} for k, b in sorted(sizes, key=lambda kb: -kb[1])[:TOP_KEYS]]
        m["bigkeys_sampled"], m["bigkeys_complete"] = sampled, complete
        m["bigkeys_s"] = round(time.monotonic() - started, 3)
    return m


def assess(m: dict[str, Any], thresholds: Thresholds) -> Result:
    found = Findings()
    used, maxmem = int(m["used_memory"] or 0), int(m["maxmemory"] or 0)
    mem_pct = percent(used, maxmem) if maxmem else None
    m["memory_percent"] = mem_pct
    found.grade("memory", mem_pct, thresholds.redis_memory_percent, unit="% of maxmemory")
    frag = float(m["mem_fragmentation_ratio"] or 0)
    if used >= FRAGMENTATION_MIN_BYTES:
        found.grade("fragmentation ratio", frag, FRAGMENTATION, detail="consider activedefrag yes")
    finding = policy_finding(m["use"], str(m["maxmemory_policy"]))
    if finding:
        found.add(*finding)
    if m["hit_rate"] is not None and m["lookups"] >= MIN_LOOKUPS and m["use"] != "broker":
        found.grade("hit rate", m["hit_rate"], thresholds.redis_hit_rate, lower_is_worse=True, detail=m["hit_rate_scope"])
    evicted = m["evicted_keys_interval"]
    if evicted and m["use"] in ("store", "broker"):
        found.add("critical", f"{evicted} keys evicted since the last run on a {m['use']} (data lost)")
    if m["rdb_last_bgsave_status"] not in (None, "ok"):
        found.add("critical", f"last BGSAVE failed ({m['rdb_last_bgsave_status']}): the RDB on disk is stale")
    if m["aof_enabled"] and m["aof_last_write_status"] not in (None, "ok"):
        found.add("critical", f"AOF write status {m['aof_last_write_status']}: writes may not be durable")
    if m["aof_enabled"] and m["aof_last_bgrewrite_status"] not in (None, "ok"):
        found.add("warning", f"last AOF rewrite failed ({m['aof_last_bgrewrite_status']})")
    memory = human_bytes(used) + (f"/{human_bytes(maxmem)} ({mem_pct:.0f}%)" if maxmem else " (no maxmemory)")
    rate = "n/a" if m["hit_rate"] is None else f"{m['hit_rate'] * 100:.1f}% ({m['hit_rate_scope']})"
    ev = m["evicted_keys_interval"]
    ex = m["expired_keys_interval"]
    persist = ("AOF rewrite in progress, " if m["aof_rewrite_in_progress"] else "") + (
        f"last bgsave {m['rdb_last_bgsave_status']}")
    big = (f", biggest key {m['bigkeys'][0]['key']!r} {human_bytes(m['bigkeys'][0]['bytes'])}"
           if m.get("bigkeys") else "")
    headline = (f"Redis {m['redis_version']} ({m['use'] or 'use not declared'}): memory {memory}, frag {frag:.2f},"
                f" policy {m['maxmemory_policy']}, hit rate {rate}, evicted {'-' if ev is None else ev},"
                f" expired {'-' if ex is None else ex} since last run, {m['slowlog_new']} new slowlog entries,"
                f" {persist}{big}")
    return found.result(headline, m)


def stats(target: RedisTarget, thresholds: Thresholds, previous: dict[str, Any] | None,
          dry_run: bool = False) -> Result:
    """One visit; ``dry_run`` changes nothing (the slowlog reset is only planned)."""
    client = redis_door.target_client(target, client_name=CLIENT_NAME)
    try:
        m = collect(client, target, previous, dry_run)
    except (redis.RedisError, OSError) as exc:
        reason = mask_secrets(f"{type(exc).__name__}: {first_line(exc)}", target)
        return unreachable("Redis", reason, {"url": target.url.masked})
    finally:
        client.close()
    result = assess(m, thresholds)
    planned = dry_run and target.reset_slowlog and m["slowlog_new"] > 0
    return Result(result.status, result.summary, {**result.metrics, "url": target.url.masked},
                  ["SLOWLOG RESET"] if m["slowlog_reset"] or planned else [])
