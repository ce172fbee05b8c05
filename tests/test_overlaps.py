"""Overlapping maintenance waits (issue 8, item 4): a *scheduled* run that meets a held target
lock is deferred and offered again when the lock is let go (within its expiry); an ad hoc run
is still ``skipped`` naming the holder; N scheduled firings in a row that did not run raise a
warning; the default night is staggered; `maintd schedule` flags overlaps on one target."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2

from tests.conftest import ROOT, ConfigFactory, maintd_cmd, wait_until
from tests.test_alerts_support import start_capture
from workers.config import parse_config
from workers.gates.locks import advisory_key

SCHEDULED_NOOP = '[schedule]\n"maintd.noop" = "0 0 1 1 *"\n'  # an entry (never due in a test): its options


def pg_target(dsn: str, name: str = "local") -> str:
    return f'[[postgres]]\nname = "{name}"\ndsn = "{dsn}"\n'


def fire(entry: str, **override: Any) -> Any:
    """Send a beat entry's message exactly as beat does: its task, args and options (expiry and
    the schedule header)."""
    from workers.app import app, celery_beat_schedule
    from workers.config import get_config

    e = celery_beat_schedule(get_config())[entry]
    return app.tasks[e["task"]].apply_async(e["args"], {}, **{**e["options"], **override})


def rows_of(task: str, target: str = "local") -> list[dict[str, Any]]:
    from workers.records import records

    return sorted(records().runs.find(task=task, target=target, limit=200), key=lambda r: r["id"])


def release() -> dict[str, Any]:
    """One release; its actions about this module's diagnostics only (the session's results
    database may hold other tests' deferrals, released or dropped by the same run)."""
    from tasks.maintd import release_deferred

    out: dict[str, Any] = release_deferred.delay().get(timeout=30)
    out["actions"] = [a for a in out["actions"] if "maintd.noop[" in a or "maintd.hold[" in a]
    return out


def test_scheduled_run_waits_for_the_lock_then_runs(config: ConfigFactory, target_db: str,
                                                    start_worker: Any) -> None:
    config.write(pg_target(target_db) + SCHEDULED_NOOP)
    start_worker(role="db")
    from tasks.maintd import hold, noop
    from workers.records import records

    holder = hold.delay("local", seconds=6)  # ad hoc, high impact: the slow lane
    wait_until(lambda: any(r["status"] == "running" for r in rows_of("maintd.hold")), 30, "the holder to start")
    waiting = fire("maintd.noop[local]").get(timeout=30)
    assert waiting["status"] == "deferred"
    assert waiting["summary"].startswith("waiting for the lock: lock on target 'local' is held by maintd:maintd.hold@")
    pending = [d for d in records().deferred.pending() if d["task"] == "maintd.noop"]  # others' are not ours
    assert [(d["task"], d["waiting_for"], d["entry"], d["origin"]) for d in pending] == [
        ("maintd.noop", "lock", "maintd.noop[local]", waiting["task_id"])]
    assert pending[0]["expires_at"] is not None  # the entry's expiry goes with it
    ad_hoc = noop.delay("local").get(timeout=30)  # an ad hoc run still says who holds it, and stops
    assert ad_hoc["status"] == "skipped" and "maintd:maintd.hold@" in ad_hoc["summary"]
    assert holder.get(timeout=60)["status"] == "ok"
    # the holder let go: the wait is due now, not at its 5-minute re-check
    assert [d for d in records().deferred.pending() if d["task"] == "maintd.noop"][0]["not_before"] <= datetime.now(UTC)
    assert release()["actions"] == ["maintd.noop[local]"]
    ran = wait_until(lambda: [r for r in rows_of("maintd.noop") if r["origin"] == waiting["task_id"]], 30,
                     "the released run")
    assert isinstance(ran, list)
    assert [(r["status"], r["entry"]) for r in ran] == [("ok", "maintd.noop[local]")]


def test_a_wait_ends_at_the_scheduled_runs_expiry(config: ConfigFactory, target_db: str, start_worker: Any) -> None:
    config.write(pg_target(target_db) + SCHEDULED_NOOP)
    start_worker(role="db")
    from workers.records import records

    k1, k2 = advisory_key()
    holder = psycopg2.connect(target_db, application_name="pytest: a long dump")
    try:
        holder.cursor().execute("SELECT pg_advisory_lock(%s, %s)", (k1, k2))
        waiting = fire("maintd.noop[local]", expires=6).get(timeout=30)
        assert waiting["status"] == "deferred" and "pytest: a long dump" in waiting["summary"]
        time.sleep(7)
        assert release()["actions"] == ["dropped maintd.noop[local]: expired waiting for the lock"]
    finally:
        holder.close()
    assert [r for r in records().deferred.pending() if r["task"] == "maintd.noop"] == []
    last = rows_of("maintd.noop")[-1]
    assert last["status"] == "skipped" and last["summary"].startswith("gave up waiting for the lock")
    assert last["origin"] == waiting["task_id"]
    chain = [r for r in rows_of("maintd.noop") if waiting["task_id"] in (r["task_id"], r["origin"])]
    assert [r["status"] for r in chain] == ["deferred", "skipped"]  # it never ran


def test_three_scheduled_firings_that_did_not_run_raise_a_warning(config: ConfigFactory, target_db: str,
                                                                  start_worker: Any) -> None:
    capture = start_capture()
    try:
        config.write(f'[alerting]\nbackoff_s = 0.05\n[[alerts]]\nkind = "webhook"\nurl = "{capture.url("/hook")}"\n'
                     + pg_target(target_db, "streaky") + SCHEDULED_NOOP)
        start_worker(role="db")
        k1, k2 = advisory_key()
        holder = psycopg2.connect(target_db, application_name="pytest: stuck session")
        try:
            holder.cursor().execute("SELECT pg_advisory_lock(%s, %s)", (k1, k2))
            first = fire("maintd.noop[streaky]").get(timeout=30)
            # re-offers of one waiting firing count once
            from workers.records import records

            records().execute(lambda cur: cur.execute("UPDATE maintd_deferred SET not_before = now()"))
            assert release()["actions"] == ["maintd.noop[streaky]"]
            wait_until(lambda: len(rows_of("maintd.noop", "streaky")) >= 2, 30, "the re-offer")
            assert records().runs.not_run_streak("maintd.noop", "streaky")[0] == 1
            assert capture.at("/hook") == []
            for _ in range(2):
                assert fire("maintd.noop[streaky]").get(timeout=30)["status"] == "deferred"
            alerts = wait_until(lambda: [c.json() for c in capture.at("/hook")], 20, "the warning")
            assert isinstance(alerts, list)
            assert [(a["kind"], a["severity"], a["target"]) for a in alerts] == [("problem", "warning", "streaky")]
            assert alerts[0]["summary"].startswith("3 scheduled runs in a row did not run")
            assert "pytest: stuck session" in alerts[0]["summary"]
            assert first["status"] == "deferred"
        finally:
            holder.close()
        records().execute(lambda cur: cur.execute("DELETE FROM maintd_deferred"))
        assert fire("maintd.noop[streaky]").get(timeout=30)["status"] == "ok"
        alerts = wait_until(lambda: [c.json() for c in capture.at("/hook")][1:], 20, "the recovery")
        assert isinstance(alerts, list) and alerts[0]["kind"] == "recovery"
    finally:
        capture.server.shutdown()


DEFAULT_NIGHT = """
[[postgres]]
name = "main"
dsn = "postgresql://u@db1/clo"
window = "Sun 01:00-05:00"
[[sqlite]]
name = "assets"
path = "/opt/clo/assets.db"
host = "app1"
[[redis]]
name = "cache"
url = "redis://redis:6379/1"
[[files]]
name = "etc"
paths = ["/etc/clo"]
host = "app1"
[store]
kind = "local"
path = "/var/backups/maintd"
"""


def test_the_default_night_does_not_overlap_on_any_target() -> None:
    from workers.schedule import expand, overlaps

    config = parse_config(DEFAULT_NIGHT)
    entries = expand(config)
    assert overlaps(config, entries) == []
    # the order the runbooks ask for, on one database: backup, rewrite (Sunday), trim, vacuum, analyze
    crons = {e.task: e.cron for e in entries if e.target == "main"}
    assert [crons[t] for t in ("backup.postgres", "postgres.vacuum_full", "postgres.retention",
                               "postgres.vacuum_bloated", "postgres.analyze", "postgres.reindex",
                               "backup.restore_test", "backup.prune")] == [
        "15 0 * * *", "30 1 * * 0", "30 2 * * *", "0 3 * * *", "30 3 * * *", "0 4 * * 0", "15 5 * * 0", "30 6 * * *"]


def test_overlaps_are_found_at_typical_and_seen_durations() -> None:
    from workers.schedule import expand, overlaps

    config = parse_config(DEFAULT_NIGHT + '[schedule]\n"postgres.analyze" = "30 0 * * *"\n')
    entries = expand(config)
    found = overlaps(config, entries)
    assert [(o.first, o.second, o.scope) for o in found] == [
        ("backup.postgres[main]", "postgres.analyze[main]", "postgres:db1:5432/clo")]
    assert found[0].second_at.strftime("%H:%M") == "00:30"
    # a dump seen to take 3 hours runs into the whole nightly block
    config = parse_config(DEFAULT_NIGHT)
    entries = expand(config)
    seen = {("backup.postgres", "main"): 3 * 3600.0}
    second = {o.second for o in overlaps(config, entries, seen)}
    assert {"postgres.vacuum_full[main]", "postgres.retention[main]", "postgres.vacuum_bloated[main]"} <= second
    # two names for one database share its lock
    config = parse_config(DEFAULT_NIGHT + '[[postgres]]\nname = "main-again"\ndsn = "postgresql://v@DB1:5432/clo"\n')
    found = overlaps(config, expand(config))
    assert any({o.first, o.second} == {"backup.postgres[main]", "backup.postgres[main-again]"} for o in found)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    assert all(start <= o.second_at < start + timedelta(days=7) for o in overlaps(config, expand(config),
                                                                                  start=start))


def test_schedule_command_flags_overlaps(config: ConfigFactory, target_db: str) -> None:
    path = config.write(pg_target(target_db, "main") + '[schedule]\n"postgres.vacuum_bloated" = "15 0 * * *"\n')
    proc = subprocess.run(maintd_cmd("--config", str(path), "schedule"), capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("postgres.vacuum_bloated[main]"))
    assert line.endswith("*overlap")
    assert "1 overlap(s) on one target" in proc.stdout
    assert "postgres.vacuum_bloated[main] at " in proc.stdout and "overlaps backup.postgres[main]" in proc.stdout


def test_not_run_streak_counts_firings_not_re_offers(config: ConfigFactory, target_db: str) -> None:
    config.write(pg_target(target_db))
    from workers.records import records

    book = records()
    now = datetime.now(UTC)
    task = f"maintd.noop.streak{time.time_ns()}"

    def row(i: int, status: str, origin: str | None, entry: str | None = "e") -> None:
        at = now + timedelta(seconds=i)
        book.runs.record(task_id=f"{task}-{i}", task=task, target="local", status=status, summary=f"s{i}",
                         impact="low", host="h", worker="w/1", attempt=1, dry_run=False, started_at=at,
                         finished_at=at, entry=entry, origin=origin)

    row(0, "deferred", None)
    assert book.runs.not_run_streak(task, "local") == (1, "s0")
    row(1, "deferred", f"{task}-0")  # the same firing, offered again
    row(2, "skipped", f"{task}-0")  # ... and given up
    assert book.runs.not_run_streak(task, "local") == (1, "s2")
    row(3, "skipped", None, entry=None)  # an ad hoc run is not the entry's
    row(4, "deferred", None)
    row(5, "skipped", None)
    assert book.runs.not_run_streak(task, "local") == (3, "s5")
    row(6, "ok", f"{task}-5")
    assert book.runs.not_run_streak(task, "local") == (0, "")


def test_a_wait_that_outlasts_the_window_is_not_carried_to_the_next_one(config: ConfigFactory, target_db: str,
                                                                        start_worker: Any) -> None:
    """A scheduled high-impact run re-offered after waiting for a lock, when its window has closed
    meanwhile and its message expires before it opens again, ends skipped (the next firing does
    the work) instead of becoming a deferral to next week's window; a fresh firing outside the
    window is deferred to the opening as before."""
    from workers.app import ENTRY_HEADER, ORIGIN_HEADER

    opens = (datetime.now(UTC) + timedelta(hours=3)).strftime("%H")
    closes = (datetime.now(UTC) + timedelta(hours=4)).strftime("%H")
    config.write(pg_target(target_db, "win") + f'window = "daily {opens}:00-{closes}:00"\n'
                 + '[schedule]\n"maintd.hold" = "0 0 1 1 *"\n')
    start_worker(role="db")
    from workers.records import records

    reoffer = fire("maintd.hold[win]", expires=600,
                   headers={ENTRY_HEADER: "maintd.hold[win]", ORIGIN_HEADER: "first-firing"}).get(timeout=30)
    assert reoffer["status"] == "skipped" and "closed while this scheduled run waited" in reoffer["summary"]
    assert [r for r in records().deferred.pending() if r["target"] == "win"] == []
    fresh = fire("maintd.hold[win]").get(timeout=30)
    assert fresh["status"] == "deferred" and "outside maintenance window" in fresh["summary"]
    records().execute(lambda cur: cur.execute("DELETE FROM maintd_deferred"))
