"""The routing table: the single source of truth for queues (pure: the Celery router and
the kombu declarations built from it are in ``workers.app``).

Queues are ``<role>.<impact>`` for network-reachable targets and
``<role>.<impact>.<host>`` for targets that live in a host's files. Workers serve a
*fast lane* (none+low) and a *slow lane* (medium+high, concurrency 1) as separate
processes, so a running high-impact task never delays a health check.
"""

from __future__ import annotations

import os

from workers.catalog import TaskSpec, effective_impact, resolve_target
from workers.config import IMPACTS, ROLES, Config

LANES: dict[str, tuple[str, ...]] = {"fast": ("none", "low"), "slow": ("medium", "high")}
EXCHANGE = "maintd"  # every queue is bound here (routing key: its name) and to its own exchange


def queue_name(role: str, impact: str, host: str | None = None) -> str:
    return f"{role}.{impact}.{host}" if host else f"{role}.{impact}"


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


def lane_queues(role: str, lane: str, host: str | None) -> list[str]:
    """Queues one lane of a worker consumes: shared ones plus its own host's."""
    out = [queue_name(role, i) for i in LANES[lane]]
    if host:
        out += [queue_name(role, i, host) for i in LANES[lane]]
    return out


def queue_for(spec: TaskSpec, target_name: str | None, config: Config, role: str = "db") -> str:
    """The queue a dispatch of ``spec`` for ``target_name`` goes to."""
    impact = effective_impact(spec, config)
    target = resolve_target(spec, target_name, config)
    if target is None:
        return queue_name(role, impact)
    return queue_name(target.role, impact, target.pinned_host)
