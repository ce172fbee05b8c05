"""The Redis part of a snapshot: ``INFO``, a summary of ``CLIENT LIST`` and the slowlog.

Through the Redis door (timeouts, ``client_name``). Slowlog entries keep the command
name, its argument count, duration and client, never the arguments (keys and values can
be tokens or personal data).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import redis

from workers.config import RedisTarget
from workers.doors.redis import classify, target_client

CLIENT_NAME = "maintd:incident.capture"
SLOWLOG_ENTRIES = 25
TOP = 10


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def clients_summary(clients: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by name, source address and current command; blocked, pub/sub and idle
    clients; the biggest output buffers (pure)."""
    def num(c: dict[str, Any], key: str) -> int:
        try:
            return int(c.get(key) or 0)
        except (TypeError, ValueError):
            return 0

    names = Counter(_text(c.get("name") or "") or "(unnamed)" for c in clients)
    ips = Counter(_text(c.get("addr", "")).rsplit(":", 1)[0] for c in clients)
    cmds = Counter(_text(c.get("cmd", "")) for c in clients)
    heavy = sorted(clients, key=lambda c: -num(c, "omem"))[:5]
    return {
        "total": len(clients),
        "by_name": names.most_common(TOP), "by_address": ips.most_common(TOP), "by_command": cmds.most_common(TOP),
        "blocked": sum("b" in _text(c.get("flags", "")) for c in clients),
        "pubsub": sum(num(c, "sub") + num(c, "psub") > 0 for c in clients),
        "idle_over_5m": sum(num(c, "idle") > 300 for c in clients),
        "max_idle_s": max((num(c, "idle") for c in clients), default=0),
        "max_qbuf": max((num(c, "qbuf") for c in clients), default=0),
        "largest_output_buffers": [{"addr": _text(c.get("addr", "")), "name": _text(c.get("name", "")),
                                    "cmd": _text(c.get("cmd", "")), "omem": num(c, "omem")}
                                   for c in heavy if num(c, "omem") > 0],
    }


def slowlog_entries(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in raw:
        command = e.get("command") or b""
        words = command if isinstance(command, list) else _text(command).split()
        out.append({"id": e.get("id"),
                    "at": datetime.fromtimestamp(int(e.get("start_time") or 0), UTC).isoformat(),
                    "duration_ms": round(int(e.get("duration") or 0) / 1000, 2),
                    "command": _text(words[0]).upper() if words else "", "args": max(0, len(words) - 1),
                    "client_name": _text(e.get("client_name") or ""),
                    "client_address": _text(e.get("client_address") or "")})
    return out


def snapshot(target: RedisTarget, timeout_s: float) -> dict[str, Any]:
    """Raises (classified, secret-free) when the server cannot be reached."""
    client = target_client(target, client_name=CLIENT_NAME, timeout_s=timeout_s)
    where = f"redis {target.url.masked}"
    try:
        info = client.info()
        errors: dict[str, str] = {}
        try:
            clients = clients_summary(client.client_list())
        except redis.RedisError as exc:
            clients, errors["clients"] = {}, str(classify(exc, where, "CLIENT LIST"))
        try:
            slow = slowlog_entries(client.slowlog_get(SLOWLOG_ENTRIES))
            slow_len = int(client.slowlog_len())
        except redis.RedisError as exc:
            slow, slow_len, errors["slowlog"] = [], 0, str(classify(exc, where, "SLOWLOG"))
    except redis.RedisError as exc:
        raise classify(exc, where) from None
    finally:
        client.close()
    return {"url": target.url.masked, "info": {k: v for k, v in info.items() if not isinstance(v, dict)},
            "keyspace": {k: v for k, v in info.items() if isinstance(v, dict)},
            "clients": clients, "slowlog": slow, "slowlog_length": slow_len, "errors": errors}
