"""Gates on real services: locks, windows (deferral), dry-run, failure classification, history."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import pytest
import redis

from tests.conftest import ROOT, ConfigFactory, RedisServer, maintd_cmd, wait_until
from workers.errors import SkippedError
from workers.gates.locks import LockHeld, advisory_key, redis_lock
from workers.records import records


def pg_target(dsn: str, name: str = "local", extra: str = "") -> str:
    return f'[[postgres]]\nname = "{name}"\ndsn = "{dsn}"\n{extra}\n'


def hold_deferrals() -> list[dict[str, Any]]:
    """The pending deferrals of maintd.hold (the session's results database may hold other
    tests' deferrals of other tasks)."""
    return [r for r in records().deferred.pending() if r["task"] == "maintd.hold"]


def history_rows(task_id: str) -> list[dict[str, Any]]:

    return records().runs.find(task_id=task_id)


def test_redis_lock_names_holder_and_heartbeat_outlives_ttl(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    name = f"t-{time.time_ns()}"
    with redis_lock(client, "sqlite", name, "maintd:sqlite.optimize@app1 pid 1", ttl_s=1, heartbeat_s=0.3):
        time.sleep(2.0)  # twice the TTL: only the heartbeat keeps it
        with pytest.raises(LockHeld) as held:
            with redis_lock(client, "sqlite", name, "other", ttl_s=1):
                pass
        assert "maintd:sqlite.optimize@app1 pid 1" in str(held.value)
        assert isinstance(held.value, SkippedError)
    # released: free again at once
    with redis_lock(client, "sqlite", name, "third", ttl_s=1):
        pass
    assert client.get(f"maintd:lock:sqlite:{name}") is None


def test_held_advisory_lock_yields_skipped_naming_holder(config: ConfigFactory, target_db: str, start_worker: Any) -> None:
    config.write(pg_target(target_db))
    start_worker(role="db")
    from tasks.maintd import noop

    k1, k2 = advisory_key()
    holder = psycopg2.connect(target_db, application_name="maintd:postgres.vacuum_full@db9 pid 4242")
    try:
        holder.cursor().execute("SELECT pg_advisory_lock(%s, %s)", (k1, k2))
        outcome = noop.delay("local").get(timeout=30)
        assert outcome["status"] == "skipped"
        assert "maintd:postgres.vacuum_full@db9 pid 4242" in outcome["summary"]
    finally:
        holder.close()
    outcome = noop.delay("local").get(timeout=30)
    assert outcome["status"] == "ok"
    assert [r["status"] for r in history_rows(outcome["task_id"])] == ["ok"]


@pytest.mark.slow
def test_two_dispatches_on_one_target_one_runs_one_skipped(config: ConfigFactory, target_db: str,
                                                           start_worker: Any) -> None:
    """Two slow lanes (two hosts) take one message each; the per-target lock lets one run."""
    config.write(pg_target(target_db))
    start_worker(role="db", host="db-a")
    start_worker(role="db", host="db-b")
    from tasks.maintd import hold

    first = hold.delay("local", seconds=6)
    time.sleep(0.5)
    second = hold.delay("local", seconds=6)
    outcomes = sorted((first.get(timeout=60), second.get(timeout=60)), key=lambda o: o["status"])
    assert [o["status"] for o in outcomes] == ["ok", "skipped"]
    ok, skipped = outcomes
    assert f"run {ok['task_id'][:8]}" in skipped["summary"]  # names the holder's run
    assert "maintd:maintd.hold@db-" in skipped["summary"]
    assert ok["host"] != skipped["host"]


def test_dry_run_takes_no_lock_and_is_recorded(config: ConfigFactory, target_db: str, inprocess_worker: Any) -> None:
    config.write(pg_target(target_db))
    inprocess_worker(role="db")
    from tasks.maintd import hold

    started = time.monotonic()
    outcome = hold.delay("local", seconds=20, dry_run=True).get(timeout=30)
    assert time.monotonic() - started < 10
    assert outcome["dry_run"] is True and outcome["status"] == "ok"
    assert history_rows(outcome["task_id"])[0]["dry_run"] is True


def test_dry_run_plans_outside_the_window(config: ConfigFactory, target_db: str, start_worker: Any) -> None:
    now = datetime.now(timezone.utc)
    start = now + timedelta(hours=3)
    config.write(pg_target(target_db, extra=f'window = "daily {start:%H}:00-{(start + timedelta(hours=1)):%H}:00"'))
    start_worker(role="db")
    from tasks.maintd import hold

    outcome = hold.delay("local", seconds=0, dry_run=True).get(timeout=30)
    assert outcome["status"] == "ok" and "window closed: a real run would be deferred to" in outcome["summary"]
    assert outcome["metrics"]["window_open"] is False
    assert hold_deferrals() == []
    real = hold.delay("local", seconds=0).get(timeout=30)
    assert real["status"] == "deferred"

    records().execute(lambda cur: cur.execute("DELETE FROM maintd_deferred WHERE task = 'maintd.hold'"))


@pytest.mark.slow
def test_outside_window_defers_then_released_when_window_opens(config: ConfigFactory, target_db: str,
                                                               inprocess_worker: Any) -> None:
    now = datetime.now(timezone.utc)
    if now.second > 45:  # keep the wait for the next minute boundary short and predictable
        time.sleep(61 - now.second)
        now = datetime.now(timezone.utc)
    opens = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    closes = opens + timedelta(minutes=30)
    window = f'window = "daily {opens:%H:%M}-{closes:%H:%M}"'
    config.write(pg_target(target_db, extra=window))
    inprocess_worker(role="db")
    from tasks.maintd import hold

    outcome = hold.delay("local", seconds=0).get(timeout=30)
    assert outcome["status"] == "deferred"
    assert f"{opens:%Y-%m-%d %H:%M}" in outcome["summary"]
    rows = hold_deferrals()
    assert [(r["task"], r["target"], r["not_before"]) for r in rows] == [("maintd.hold", "local", opens)]
    assert rows[0]["kwargs"] == {"dry_run": False, "seconds": 0}

    # Before the window opens, a release sends nothing.

    assert records().deferred.release_due(lambda *a: None) == []
    wait_until(lambda: datetime.now(timezone.utc) >= opens, 75, "the window to open", interval_s=0.5)
    from workers.app import app

    released = app.tasks["maintd.release_deferred"].delay().get(timeout=30)
    assert [a for a in released["actions"] if "maintd.hold[" in a] == ["maintd.hold[local]"]
    assert hold_deferrals() == []
    ran = wait_until(lambda: [r for r in records().runs.find(task="maintd.hold", target="local") if r["status"] == "ok"],
                     30, "the released run")
    assert ran  # the released run went through the window gate and ran


def test_unreachable_target_fails_cleanly_without_secret(config: ConfigFactory, inprocess_worker: Any) -> None:
    config.write(pg_target("postgresql://maintd:Sup3rSecretPw@127.0.0.1:1/nope",
                           extra="connect_timeout_s = 2"))
    inprocess_worker(role="db")
    from celery.result import AsyncResult

    from tasks.maintd import noop

    result: AsyncResult = noop.delay("local")
    with pytest.raises(Exception) as err:
        result.get(timeout=30)
    assert result.state == "FAILURE"
    assert "Sup3rSecretPw" not in str(err.value)
    assert "127.0.0.1:1" in str(err.value)
    rows = history_rows(result.id)
    assert rows[0]["status"] == "failed"
    assert "Sup3rSecretPw" not in (rows[0]["error"] or "") + rows[0]["summary"]
    meta = AsyncResult(result.id).backend.get_task_meta(result.id)
    assert "Sup3rSecretPw" not in repr(meta)


def test_bad_arguments_and_unknown_target_refused_before_sending(config: ConfigFactory, target_db: str) -> None:
    config.write(pg_target(target_db))
    from tasks.maintd import hold
    from workers.errors import PermanentError, UnknownTargetError

    with pytest.raises(UnknownTargetError, match="unknown postgres target 'nope'.*known: local"):
        hold.delay("nope")
    with pytest.raises(PermanentError, match="bad arguments"):
        hold.delay("local", sekonds=3)
    with pytest.raises(PermanentError, match="credentials"):
        hold.delay("local", seconds="postgresql://u:pw@h/db")


def test_cli_run_wait_prints_outcome_and_exit_codes(config: ConfigFactory, target_db: str, inprocess_worker: Any) -> None:
    path = config.write(pg_target(target_db))
    inprocess_worker(role="db")
    proc = subprocess.run(maintd_cmd("--config", str(path), "run", "maintd.noop", "local", "--wait", "--timeout", "30"),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert '"status": "ok"' in proc.stdout and '"task": "maintd.noop"' in proc.stdout
    proc = subprocess.run(maintd_cmd("--config", str(path), "run", "maintd.noop", "nope"),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "maintd: error: unknown postgres target 'nope' for maintd.noop (known: local)"]
    proc = subprocess.run(maintd_cmd("--config", str(path), "run", "no.such", "local"),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 1 and "unknown task 'no.such'" in proc.stderr


def test_concurrent_history_writers(config: ConfigFactory, target_db: str) -> None:
    """The history store is shared by a worker's threads: concurrent writes stay consistent."""
    config.write(pg_target(target_db))

    store = records()
    now = datetime.now(timezone.utc)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            rid = store.runs.start(task_id=f"conc-{i}", task="maintd.noop", target="local", impact="low", host="h",
                                  worker="w", attempt=1, dry_run=False, started_at=now)
            store.runs.finish(rid, status="ok", summary=str(i), metrics={"i": i}, actions=[], error=None,
                             finished_at=now, duration_s=0.0)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(store.runs.find(task_id=f"conc-{i}")[0]["metrics"] == {"i": i} for i in range(20))


def test_limits_from_config_apply_to_messages_from_any_sender(config: ConfigFactory, target_db: str,
                                                             start_worker: Any) -> None:
    """[tasks."..."] limits hold for .delay, for send_task from a process that imported the
    tasks (beat), and for a message from a foreign app that carries no limits at all."""
    config.write(pg_target(target_db) + '[tasks."maintd.hold"]\nsoft_time_limit = 2\ntime_limit = 4\n')
    start_worker(role="db")
    from celery import Celery

    from tasks.maintd import hold
    from workers.app import app

    for result in (hold.delay("local", seconds=20),
                   app.send_task("maintd.hold", args=("local",), kwargs={"seconds": 20})):
        with pytest.raises(Exception, match="soft time limit exceeded after 2s"):
            result.get(timeout=30)
        assert history_rows(result.id)[0]["status"] == "failed"
    foreign = Celery("foreign", broker=config.broker_url)  # knows nothing of maintd: no limits in its message
    sent = foreign.send_task("maintd.hold", args=("local",), kwargs={"seconds": 20}, queue="db.high",
                             routing_key="db.high", exchange="maintd")
    rows = wait_until(lambda: [r for r in history_rows(sent.id) if r["status"] != "running"], 30, "the foreign run")
    assert rows[0]["status"] == "failed" and "soft time limit exceeded after 2s" in rows[0]["error"]


def test_hard_time_limit_closes_the_running_row(config: ConfigFactory, target_db: str) -> None:
    """The worker's main process closes the row of a run killed at its hard limit."""
    from billiard.exceptions import WorkerLostError
    from celery.exceptions import TimeLimitExceeded

    from workers.app import app
    from workers.taskdef import _lost_worker

    config.write(pg_target(target_db))
    now = datetime.now(timezone.utc)
    task = app.tasks["maintd.hold"]
    records().runs.start(task_id="hard-1", task="maintd.hold", target="local", impact="high", host="h",
                         worker="w/1", attempt=1, dry_run=False, started_at=now)
    task.on_failure(TimeLimitExceeded(3660), "hard-1", ("local",), {}, None)
    row = history_rows("hard-1")[0]
    assert row["status"] == "failed" and "hard time limit (3660s)" in row["error"] and row["finished_at"] is not None
    # a pool process lost and not run again (Celery's task_failure signal in the main process): lost
    records().runs.start(task_id="lost-1", task="maintd.hold", target="local", impact="high", host="h",
                         worker="w/1", attempt=1, dry_run=False, started_at=now)
    _lost_worker(sender=task, task_id="lost-1", exception=WorkerLostError("killed"))
    row = history_rows("lost-1")[0]
    assert row["status"] == "lost" and "worker process lost" in row["error"] and row["finished_at"] is not None
    # a run that recorded its own end is left alone
    task.on_failure(TimeLimitExceeded(1), "hard-1", ("local",), {}, None)
    assert history_rows("hard-1")[0]["error"].startswith("hard time limit (3660s)")
