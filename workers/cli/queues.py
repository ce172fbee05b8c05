"""Queues as the broker holds them: messages waiting in each configured queue and the live
workers consuming it (from the liveness marks each worker publishes with its queue list), so
`maintd status` and the exporter can name a queue that fills with nobody to drain it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.config import Config
from workers.doors.redis import alive_client, alive_nodes, queue_depths
from workers.routing import all_queue_names


@dataclass(frozen=True)
class QueueState:
    name: str
    messages: int
    consumers: tuple[str, ...]  # live nodes consuming it

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.name, "messages": self.messages, "consumers": list(self.consumers)}


def queue_states(config: Config, nodes: dict[str, dict[str, Any]] | None = None) -> list[QueueState]:
    """Every configured queue (and any a live worker consumes besides), with its depth and consumers."""
    conn = alive_client(config)
    if nodes is None:
        nodes = alive_nodes(conn)
    consumers: dict[str, list[str]] = {}
    for node, info in nodes.items():
        for queue in info.get("queues") or []:
            consumers.setdefault(str(queue), []).append(node)
    names = sorted(set(all_queue_names(config)) | set(consumers))
    depths = queue_depths(conn, names)
    return [QueueState(n, depths[n], tuple(sorted(consumers.get(n, ())))) for n in names]


def unconsumed(states: list[QueueState]) -> list[QueueState]:
    """Queues holding messages that no live worker consumes: they only grow until one does."""
    return [s for s in states if s.messages and not s.consumers]
