"""The routing table: the single source of truth for queues.

Queues are ``<role>.<impact>`` for network-reachable targets and
``<role>.<impact>.<host>`` for targets that live in a host's files. Workers serve a
*fast lane* (none+low) and a *slow lane* (medium+high, concurrency 1) as separate
processes, so a running high-impact task never delays a health check.
"""

from __future__ import annotations

import os
from typing import Any

from kombu import Exchange, Queue

from workers.catalog import SPECS, TaskSpec
from workers.config_model import IMPACTS, ROLES, Config, Target
from workers.errors import UnknownTargetError

LANES: dict[str, tuple[str, ...]] = {"fast": ("none", "low"), "slow": ("medium", "high")}
EXCHANGE = Exchange("maintd", type="direct")


def queue_name(role: str, impact: str, host: str | None = None) -> str:
    return f"{role}.{impact}.{host}" if host else f"{role}.{impact}"


def effective_impact(spec: TaskSpec, config: Config) -> str:
    override = config.tasks.get(spec.name)
    return override.impact if override and override.impact else spec.impact


def all_queue_names(config: Config) -> list[str]:
    """Shared queues, every configured host's queues, and this worker's own host's
    (``MAINTD_HOST``, set by ``maintd worker``) even before any target is pinned to it."""
    names = [queue_name(r, i) for r in ROLES for i in IMPACTS]
    own = os.environ.get("MAINTD_HOST")
    for role in ROLES:
        hosts = config.hosts_of(role)
        for host in hosts + ([own] if own and own not in hosts else []):
            names.extend(queue_name(role, i, host) for i in IMPACTS)
    return names


def declare_queues(config: Config) -> tuple[Queue, ...]:
    return tuple(Queue(n, EXCHANGE, routing_key=n) for n in all_queue_names(config))


def lane_queues(role: str, lane: str, host: str | None) -> list[str]:
    """Queues one lane of a worker consumes: shared ones plus its own host's."""
    out = [queue_name(role, i) for i in LANES[lane]]
    if host:
        out += [queue_name(role, i, host) for i in LANES[lane]]
    return out


def resolve_target(spec: TaskSpec, name: str | None, config: Config) -> Target | None:
    if spec.target_kind is None:
        return None
    if not name:
        raise UnknownTargetError(f"{spec.name} needs a {spec.target_kind} target name")
    target = config.target(spec.target_kind, name)
    if target is None:
        known = ", ".join(t.name for t in getattr(config, spec.target_kind)) or "none configured"
        raise UnknownTargetError(f"unknown {spec.target_kind} target {name!r} for {spec.name} (known: {known})")
    return target


def queue_for(spec: TaskSpec, target_name: str | None, config: Config, role: str = "db") -> str:
    """The queue a dispatch of ``spec`` for ``target_name`` goes to."""
    impact = effective_impact(spec, config)
    target = resolve_target(spec, target_name, config)
    if target is None:
        return queue_name(role, impact)
    return queue_name(target.role, impact, target.pinned_host)


def route_task(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any],
               task: Any = None, **_: Any) -> dict[str, Any] | None:
    """Celery router: every maintd task is routed here; unknown targets fail at send."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    from workers.settings import get_config

    target_name = args[0] if args else kwargs.get("target")
    queue = queue_for(spec, target_name, get_config())
    return {"queue": queue, "routing_key": queue, "exchange": EXCHANGE.name}
