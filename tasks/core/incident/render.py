"""An incident as text for a person at a terminal (``maintd incidents show ID``): the
trigger, then each part of the snapshot in the order an engineer reads it — blocking
chains and lock waits, longest transactions, replication, Redis, the host, the logs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tasks.core.units import human_seconds


def _age(v: Any) -> str:
    return human_seconds(float(v)) if isinstance(v, int | float) else "-"


def _when(v: Any) -> str:
    return f"{v:%Y-%m-%d %H:%M:%S}Z" if isinstance(v, datetime) else str(v or "-")


def _chain(node: dict[str, Any], depth: int, out: list[str]) -> None:
    pad = "    " + "  " * depth + ("└ " if depth else "")
    out.append(f"{pad}pid {node['pid']} {node.get('state') or '?'} app {node.get('application_name') or '-'!r}"
               f" user {node.get('user_name') or '-'} tx {_age(node.get('xact_age_s'))}"
               f"{' wait ' + node['wait_event'] if node.get('wait_event') else ''}: {(node.get('query') or '')[:120]}")
    for kid in node.get("blocks", []):
        _chain(kid, depth + 1, out)


def _postgres(name: str, pg: dict[str, Any], out: list[str]) -> None:
    out.append(f"\n== PostgreSQL {name} {pg.get('dsn', '')}")
    if not pg.get("ok", True):
        out.append(f"  UNAVAILABLE: {pg.get('error')}")
        return
    s = pg.get("server", {})
    out.append(f"  {s.get('version', '?')} ({pg.get('replication', {}).get('role', '?')}), up {_age(s.get('uptime_s'))},"
               f" {s.get('client_connections', '?')}/{s.get('max_connections', '?')} client connections: "
               + ", ".join(f"{r['state']} {r['n']}" for r in pg.get("connections_by_state", [])))
    chains = pg.get("blocking_chains", [])
    out.append(f"  blocking chains: {len(chains) or 'none'}")
    for tree in chains[:10]:
        out.append(f"   root pid {tree['pid']} blocks {tree['waiting']} session(s):")
        _chain(tree, 0, out)
    waits = pg.get("lock_waits", [])
    out.append(f"  lock waits: {len(waits) or 'none'}")
    for w in waits[:20]:
        out.append(f"    pid {w['pid']} wants {w['mode']} on {w['locktype']} {w.get('object') or ''}"
                   f" for {_age(w.get('waiting_s'))}, blocked by {w.get('blocked_by')}")
    out.append("  longest transactions:")
    for t in pg.get("longest_transactions", [])[:10]:
        out.append(f"    {_age(t.get('xact_age_s')):>6} pid {t['pid']} {t.get('datname') or '-'} {t.get('user_name') or '-'}"
                   f" {t.get('state') or '-'} app {t.get('application_name') or '-'!r}: {(t.get('query') or '')[:100]}")
    rep = pg.get("replication", {})
    if rep.get("role") == "replica":
        r = rep.get("replica", {})
        out.append(f"  replica: replay lag {_age(r.get('replay_lag_s'))}, backlog {r.get('replay_backlog_bytes')} bytes,"
                   f" receiver {r.get('receiver_status')}")
    for sb in rep.get("standbys", []):
        out.append(f"  standby {sb.get('application_name')} {sb.get('client_addr')} {sb.get('state')}"
                   f" replay lag {_age(sb.get('replay_lag_s'))} ({sb.get('replay_lag_bytes')} bytes)")
    for slot in rep.get("slots", []):
        out.append(f"  slot {slot['slot_name']} ({slot['slot_type']}, {'active' if slot['active'] else 'INACTIVE'})"
                   f" retains {slot.get('retained_bytes')} bytes of WAL")
    for what, err in pg.get("errors", {}).items():
        out.append(f"  ({what} not read: {err})")


def _redis(name: str, r: dict[str, Any], out: list[str]) -> None:
    out.append(f"\n== Redis {name} {r.get('url', '')}")
    if not r.get("ok", True):
        out.append(f"  UNAVAILABLE: {r.get('error')}")
        return
    i = r.get("info", {})
    out.append(f"  {i.get('redis_version', '?')} {i.get('role', '?')}, memory {i.get('used_memory_human', '?')}"
               f" (max {i.get('maxmemory_human', '?')}, policy {i.get('maxmemory_policy', '?')}),"
               f" ops/s {i.get('instantaneous_ops_per_sec', '?')}, evicted {i.get('evicted_keys', '?')},"
               f" rejected connections {i.get('rejected_connections', '?')}")
    c = r.get("clients", {})
    if c:
        out.append(f"  clients {c.get('total')} (blocked {c.get('blocked')}, pub/sub {c.get('pubsub')},"
                   f" idle > 5m {c.get('idle_over_5m')}); by name: "
                   + ", ".join(f"{n} {k}" for n, k in c.get("by_name", [])[:5])
                   + "; by address: " + ", ".join(f"{n} {k}" for n, k in c.get("by_address", [])[:5]))
    out.append(f"  slowlog ({r.get('slowlog_length', 0)} entries):")
    for e in r.get("slowlog", [])[:10]:
        out.append(f"    {e['at']} {e['duration_ms']:.1f} ms {e['command']} ({e['args']} args)"
                   f" {e.get('client_name') or ''} {e.get('client_address') or ''}".rstrip())


def _host(h: dict[str, Any], out: list[str]) -> None:
    out.append(f"\n== Host {h.get('hostname', '?')}")
    if not h.get("ok", True):
        out.append(f"  UNAVAILABLE: {h.get('error')}")
        return
    out.append(f"  cpu {h.get('cpu_percent')}% of {h.get('cpus')}, load {h.get('load')}, memory {h.get('memory_percent')}%"
               f" ({h.get('memory_available_mb')} MB available), swap {h.get('swap_percent')}%, {h.get('processes')} processes")
    for d in h.get("disks", []):
        out.append(f"  disk {d['mount']}: " + (d["error"] if "error" in d else
                                                f"{d['percent']}% used, {d['free_gb']} GB free, inodes {d['inodes_percent']}%"))
    for title, key in (("top CPU", "top_cpu"), ("top memory", "top_memory")):
        out.append(f"  {title}:")
        for p in h.get(key, [])[:10]:
            out.append(f"    {p['pid']:>7} {p['cpu_percent']:>5}% {p['rss_mb'] or 0:>8} MB {p.get('user') or '-':10}"
                       f" {p['cmdline'][:100]}")


def render(incident: dict[str, Any]) -> str:
    snap = incident.get("snapshot") or {}
    out = [f"incident {incident['id']}: {incident['state']}",
           f"  opened    {_when(incident['opened_at'])}",
           f"  trigger   {incident.get('trigger_task') or 'ad hoc'}"
           f"{'[' + incident['trigger_target'] + ']' if incident.get('trigger_target') else ''}"
           f"{' ' + incident['trigger_status'] if incident.get('trigger_status') else ''}:"
           f" {incident.get('trigger_summary') or ''}",
           f"  captured  {_when(incident.get('captured_at'))} on {incident.get('captured_on') or '-'}"]
    if incident.get("error"):
        out.append(f"  error     {incident['error']}")
    if incident.get("summary"):
        out.append(f"  summary   {incident['summary']}")
    for name, probe in snap.get("probes", {}).items():
        out.append(f"  probe {name:24} {'ok' if probe['ok'] else 'FAILED'} in {probe.get('elapsed_s', 0):.2f}s"
                   + ("" if probe["ok"] else f": {probe.get('error')}"))
    for name, pg in snap.get("postgres", {}).items():
        _postgres(name, pg, out)
    for name, r in snap.get("redis", {}).items():
        _redis(name, r, out)
    if "host" in snap:
        _host(snap["host"], out)
    for path, f in (snap.get("logs") or {}).get("files", {}).items():
        out.append(f"\n== Log {path}" + (f": {f['error']}" if "error" in f else f" (last {len(f['lines'])} lines)"))
        out.extend(f"  {line}" for line in f.get("lines", []))
    return "\n".join(out)
