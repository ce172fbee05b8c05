"""``incident.capture``: snapshot what the runbooks' incident procedures ask an engineer to
look at first, and store it as the incident's record.

Order (why the alert carries the id): when an opted-in check turns critical, the alert
state machine opens the incident row (its id) in the transaction that decides the alert,
dispatches this task, then delivers the alert with the id. This task claims the row,
runs every probe in parallel within one deadline, and stores the masked snapshot:
``captured`` when every probe answered, ``partial`` when some did not (a dead target is
the usual reason: its error is in the snapshot). Ad hoc, it opens its own row first.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

from tasks.core.incident import host, logs, pg, redis_state
from tasks.core.incident.mask import mask_tree
from tasks.core.incident.probes import Probe, run_probes
from workers.catalog import load_catalog
from workers.config import Config, PostgresTarget, RedisTarget
from workers.errors import PermanentError, first_line
from workers.records import Records
from workers.records.outcome import Result

logger = logging.getLogger(__name__)


def scope(config: Config, trigger_task: str | None, trigger_target: str | None) -> tuple[list[str], list[str]]:
    """(postgres, redis) target names to snapshot: ``[incidents]`` lists (absent: every
    configured target), with the triggering target first when it is one of them."""
    inc = config.incidents
    pg_names = [t.name for t in config.postgres] if inc.postgres is None else list(inc.postgres)
    redis_names = [t.name for t in config.redis] if inc.redis is None else list(inc.redis)
    spec = load_catalog().get(trigger_task or "")
    kind = spec.target_kind if spec else None
    if trigger_target and kind == "postgres" and config.target("postgres", trigger_target):
        pg_names = [trigger_target] + [n for n in pg_names if n != trigger_target]
    if trigger_target and kind == "redis" and config.target("redis", trigger_target):
        redis_names = [trigger_target] + [n for n in redis_names if n != trigger_target]
    return pg_names, redis_names


def probes_for(config: Config, pg_names: list[str], redis_names: list[str]) -> dict[str, Probe]:
    inc = config.incidents
    timeout = inc.probe_timeout_s
    out: dict[str, Probe] = {"host": partial(host.snapshot, inc.top_processes, config)}
    for name in pg_names:
        pg_target = config.target("postgres", name)
        if isinstance(pg_target, PostgresTarget):
            out[f"postgres:{name}"] = partial(pg.snapshot, pg_target, timeout)
    for name in redis_names:
        redis_target = config.target("redis", name)
        if isinstance(redis_target, RedisTarget):
            out[f"redis:{name}"] = partial(redis_state.snapshot, redis_target, timeout)
    if inc.logs:
        out["logs"] = partial(logs.snapshot, inc.logs, inc.log_lines, inc.log_files_per_pattern, config)
    return out


def arrange(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Probe results grouped as the snapshot shows them: host, postgres, redis, logs."""
    snap: dict[str, Any] = {"probes": {n: {k: r[k] for k in ("ok", "elapsed_s", "error") if k in r}
                                       for n, r in results.items()},
                            "postgres": {}, "redis": {}}
    for name, result in results.items():
        kind, _, target = name.partition(":")
        if target:
            snap[kind][target] = result
        else:
            snap[kind] = result
    return snap


def capture(config: Config, book: Records, incident_id: int | None, reason: str, deadline_s: float, on_host: str,
            dry_run: bool = False) -> Result:
    """Claim (or open) the incident, snapshot, store. Returns the run's Result."""
    now = datetime.now(UTC)
    if incident_id is None:
        trigger: dict[str, Any] = {"task": None, "target": None, "status": None,
                                   "summary": reason or "captured ad hoc", "host": on_host}
        if not dry_run:
            incident_id = book.incidents.open(task=None, target=None, status=None, summary=trigger["summary"],
                                              host=on_host, at=now)
            book.incidents.claim(incident_id, on_host)
    else:
        row = book.incidents.claim(incident_id, on_host) if not dry_run else book.incidents.get(incident_id)
        if row is None:
            raise PermanentError(f"no incident {incident_id} in the records")
        if row["state"] in ("captured", "partial") and not dry_run:
            return Result("ok", f"incident {incident_id} was already captured ({row['state']}): {row['summary']}",
                          {"incident": incident_id, "state": row["state"]})
        trigger = {"task": row["trigger_task"], "target": row["trigger_target"], "status": row["trigger_status"],
                   "summary": row["trigger_summary"], "host": row["trigger_host"]}
    pg_names, redis_names = scope(config, trigger["task"], trigger["target"])
    probes = probes_for(config, pg_names, redis_names)
    label = f"incident {incident_id}" if incident_id is not None else "incident snapshot"
    if dry_run:
        return Result("ok", f"{label}: would snapshot {', '.join(probes)} (deadline {deadline_s:.0f}s)",
                      {"incident": incident_id, "probes": list(probes)})
    assert incident_id is not None
    try:
        results = run_probes(probes, deadline_s)
        snap = mask_tree({"trigger": trigger, "captured_on": on_host, "started_at": now.isoformat(),
                          **arrange(results)}, config)
        finished = datetime.now(UTC)
        snap["finished_at"] = finished.isoformat()
        failed = {n: r.get("error", "") for n, r in snap["probes"].items() if not r["ok"]}
        state = "partial" if failed else "captured"
        what = f"{trigger['task']}[{trigger['target'] or ''}] {trigger['status']}" if trigger["task"] else trigger["summary"]
        summary = (f"{label} ({what}): {len(probes) - len(failed)} of {len(probes)} probes answered"
                   + ("" if not failed else "; " + "; ".join(f"{n}: {e}" for n, e in failed.items()))
                   + f" (maintd incidents show {incident_id})")[:1000]
        book.incidents.finish(incident_id, state=state, summary=summary, snapshot=snap, captured_at=finished)
    except BaseException as exc:
        _record_failure(book, incident_id, exc)
        raise
    logger.info("%s %s: %s", label, state, summary)
    return Result("warning" if failed else "ok", summary,
                  {"incident": incident_id, "state": state, "probes": snap["probes"],
                   "duration_s": round((finished - now).total_seconds(), 3)})


def _record_failure(book: Records, incident_id: int, exc: BaseException) -> None:
    try:
        book.incidents.fail(incident_id, f"capture failed: {type(exc).__name__}: {first_line(exc)}")
    except Exception as inner:  # noqa: BLE001 - the run's own failure is what matters
        logger.warning("could not record the failure of incident %d: %s", incident_id, first_line(inner))
