"""The watchdog core on the real results database, with generated history and a clock the
tests control: missed (beat stopped), late, stuck, failing repeatedly, too short; each
finding alerted once per occurrence (a loopback webhook counts them) and once cleared; the
dead-man ping received by an HTTP server on loopback."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from typing import Any

from tasks.core.watchdog import watch
from tests.conftest import ConfigFactory
from tests.test_alerts_support import CaptureServer, free_port
from tests.watchdog_support import T0, Run, every, insert, only, unique
from workers.config import get_config
from workers.records import Records, records

pytest_plugins = ["tests.test_alerts_support"]

FIVE = timedelta(minutes=5)
DAY = timedelta(days=1)


def target(name: str) -> str:
    return f'[[postgres]]\nname = "{name}"\ndsn = "postgresql://maintd@127.0.0.1:1/never_connected"\n'


def setup(config: ConfigFactory, keep: tuple[str, ...], extra: str = "") -> tuple[str, Records]:
    name = unique()
    config.write(target(name) + extra + only(*keep))
    book = records(get_config())
    book.execute(lambda cur: cur.execute("SELECT 1"))  # migrated
    return name, book


def findings(book: Records, now: datetime, *names: str) -> dict[str, Any]:
    """The findings at ``now`` about this test's targets (the session's results database
    also holds other tests' runs)."""
    found, _ = watch.watch(get_config(), book, now)
    return {f.key: f for f in found if any(f"[{n}]" in f.key for n in names)}


def hook(http: CaptureServer, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        [[alerts]]
        kind = "webhook"
        name = "ops"
        url = "{http.url('/hook')}"
        """) + extra


def alerts_at(http: CaptureServer, name: str) -> list[tuple[str, str]]:
    return [(r.json()["kind"], r.json()["target"]) for r in http.at("/hook") if f"[{name}]" in r.json()["target"]]


def test_missed_when_beat_stops_and_the_clock_moves_on(config: ConfigFactory, results_db: str) -> None:
    name, book = setup(config, ("health.postgres",))
    entry = f"health.postgres[{name}]"
    insert(results_db, every("health.postgres", name, T0 - 14 * DAY, T0, FIVE))  # two weeks, every 5 minutes
    assert findings(book, T0, name) == {}  # beat ran on time until now
    assert findings(book, T0 + FIVE, name) == {}  # the T0+5m slot is not due yet (its message may wait 4 min, grace 5)
    # beat stopped at T0: nothing more is recorded while the clock moves on
    found = findings(book, T0 + 15 * timedelta(minutes=1), name)
    assert list(found) == [f"missed:{entry}"]
    missed = found[f"missed:{entry}"]
    assert missed.severity == "critical" and missed.task == "health.postgres" and missed.target == name
    assert entry in missed.summary and "2025-03-03 00:05:00Z" in missed.summary
    assert "last good run 2025-03-03 00:00:02Z" in missed.summary and missed.last_good is not None
    later = findings(book, T0 + timedelta(hours=2), name)[f"missed:{entry}"]
    assert "missed its 2025-03-03 01:50:00Z run" in later.summary and "22 slots in a row" in later.summary
    # beat is back: a run for the latest slot clears it
    insert(results_db, [Run("health.postgres", name, "ok", T0 + timedelta(hours=2, seconds=1))])
    assert findings(book, T0 + timedelta(hours=2, minutes=1), name) == {}


def test_entry_first_seen_today_is_not_missed_for_yesterday(config: ConfigFactory, results_db: str) -> None:
    name, book = setup(config, ("backup.postgres",))
    # no run ever: the slot before the watchdog first saw the entry does not count ...
    assert findings(book, T0 + timedelta(hours=5), name) == {}
    # ... the next one does
    found = findings(book, T0 + DAY + timedelta(hours=5), name)
    assert list(found) == [f"missed:backup.postgres[{name}]"]
    assert "no run on record" in found[f"missed:backup.postgres[{name}]"].summary


def test_late_run_is_flagged_on_time_one_is_not(config: ConfigFactory, results_db: str) -> None:
    name, book = setup(config, ("backup.postgres",))
    entry = f"backup.postgres[{name}]"
    insert(results_db, every("backup.postgres", name, T0 - 14 * DAY + timedelta(hours=1), T0 - DAY + timedelta(hours=1),
                             DAY, duration_s=20.0))
    assert findings(book, T0, name) == {}  # first sight
    slot = T0 + timedelta(hours=1)
    insert(results_db, [Run("backup.postgres", name, "ok", slot + timedelta(minutes=14), 21.0)])
    assert findings(book, slot + timedelta(minutes=20), name) == {}  # 14 min: within the 15 min allowed for a daily entry
    insert(results_db, [Run("backup.postgres", name, "ok", slot + DAY + timedelta(minutes=40), 19.5)])
    found = findings(book, slot + DAY + timedelta(minutes=45), name)
    assert list(found) == [f"late:{entry}"]
    assert "started 40m after its 2025-03-04 01:00:00Z slot" in found[f"late:{entry}"].summary
    assert found[f"late:{entry}"].severity == "warning"


def test_too_short_backup_is_flagged(config: ConfigFactory, results_db: str) -> None:
    name, book = setup(config, ("backup.postgres", "health.postgres"))
    entry = f"backup.postgres[{name}]"
    history = every("backup.postgres", name, T0 - 20 * DAY + timedelta(hours=1), T0 - DAY + timedelta(hours=1), DAY)
    for i, run in enumerate(history):
        run.duration_s = 20.0 + (i % 5)  # a 1 GB database: 20-24 s every night
    insert(results_db, history)
    # health checks are quick by nature: never "too short", however quick
    insert(results_db, every("health.postgres", name, T0 - DAY, T0 + timedelta(hours=1), FIVE, duration_s=0.05)
           + [Run("health.postgres", name, "ok", T0 + timedelta(seconds=3), 0.001)])
    assert findings(book, T0 + timedelta(minutes=1), name) == {}
    insert(results_db, [Run("backup.postgres", name, "ok", T0 + timedelta(hours=1, seconds=3), 2.0)])
    found = findings(book, T0 + timedelta(hours=1, minutes=1), name)
    assert list(found) == [f"too_short:{entry}"]
    text = found[f"too_short:{entry}"].summary
    assert "finished in 2.0s" in text and "usual 22.0s" in text and "last good run 2025-03-02 01:00:02Z" in text
    # configurable: at a 0.05 ratio, 2 s of 22 s is within bounds
    config.write(target(name) + "[watchdog]\ntoo_short_ratio = 0.05\n" + only("backup.postgres", "health.postgres"))
    assert findings(book, T0 + timedelta(hours=1, minutes=1), name) == {}


def test_failing_repeatedly(config: ConfigFactory, results_db: str) -> None:
    name, book = setup(config, ("postgres.analyze",))
    entry = f"postgres.analyze[{name}]"
    start = T0 - 10 * DAY + timedelta(hours=2)
    insert(results_db, every("postgres.analyze", name, start, T0 - 3 * DAY + timedelta(hours=2), DAY))
    boom = "connect postgresql://maintd@127.0.0.1:1/x: connection refused"
    insert(results_db, [Run("postgres.analyze", name, "failed", T0 - 2 * DAY + timedelta(hours=2), 0.1, boom),
                        Run("postgres.analyze", name, "skipped", T0 - DAY + timedelta(hours=2, seconds=30), 0.1),
                        Run("postgres.analyze", name, "failed", T0 - DAY + timedelta(hours=2), 0.1, boom)])
    assert findings(book, T0, name) == {}  # two failures (a skipped run says nothing): not yet "repeatedly"
    insert(results_db, [Run("postgres.analyze", name, "failed", T0 + timedelta(hours=2), 0.1, boom)])
    found = findings(book, T0 + timedelta(hours=3), name)
    assert list(found) == [f"failing:{entry}"]
    text = found[f"failing:{entry}"].summary
    assert "failed 3 times in a row since 2025-03-01 02:00:00Z" in text and "connection refused" in text
    assert "last good run 2025-02-28 02:00:02Z" in text


def test_stuck_running_row_and_run_killed_at_its_hard_limit(config: ConfigFactory, results_db: str) -> None:
    name, book = setup(config, ("backup.postgres",))
    entry = f"backup.postgres[{name}]"
    limit = 3 * 3600 + 300  # backup.postgres's hard limit
    insert(results_db, every("backup.postgres", name, T0 - 7 * DAY + timedelta(hours=1), T0 - DAY + timedelta(hours=1),
                             DAY, duration_s=20.0))
    started = T0 + timedelta(hours=1, seconds=2)
    insert(results_db, [Run("backup.postgres", name, "running", started, None)])
    assert findings(book, started + timedelta(seconds=limit), name) == {}  # at the limit, within the grace
    found = findings(book, started + timedelta(seconds=limit + 301), name)
    assert list(found) == [f"stuck:{entry}"]
    assert "still 'running'" in found[f"stuck:{entry}"].summary and "db-fast@testhost/4242" in found[f"stuck:{entry}"].summary
    # an ad hoc task killed at its hard limit by Celery (the row closed by the worker's main process)
    other = unique("hold")
    config.write(target(name) + target(other) + only("backup.postgres"))
    insert(results_db, [Run("maintd.hold", other, "failed", T0 + timedelta(hours=2), 4.0,
                            "hard time limit (4s) exceeded: the process was killed")])
    found = findings(book, started + timedelta(seconds=limit + 400), name, other)
    assert set(found) == {f"stuck:{entry}", f"stuck:maintd.hold[{other}]"}
    assert "killed at its hard time limit" in found[f"stuck:maintd.hold[{other}]"].summary
    # a newer run supersedes both
    insert(results_db, [Run("maintd.hold", other, "ok", T0 + timedelta(hours=3), 1.0),
                        Run("backup.postgres", name, "ok", T0 + DAY + timedelta(hours=1), 20.0)])
    assert findings(book, T0 + DAY + timedelta(hours=2), name, other) == {}


def test_each_finding_alerts_once_per_occurrence_and_once_when_cleared(
        config: ConfigFactory, results_db: str, http_capture: CaptureServer) -> None:
    name, book = setup(config, ("health.postgres",), hook(http_capture))
    entry = f"health.postgres[{name}]"
    insert(results_db, every("health.postgres", name, T0 - DAY, T0, FIVE))
    cfg = get_config()
    assert watch.run(cfg, book, T0, "testhost").status == "ok"  # the watchdog was watching when beat stopped
    clock = T0 + timedelta(minutes=15)
    for _ in range(6):  # six watchdog runs, ten minutes apart, beat still down
        result = watch.run(cfg, book, clock, "testhost")
        assert result.status == "critical" and f"missed {entry}" in result.summary
        clock += timedelta(minutes=10)
    assert alerts_at(http_capture, name) == [("problem", f"missed:{entry}")]
    body = http_capture.at("/hook")[0].json()
    assert body["task"] == "watchdog.schedule" and entry in body["summary"] and "last good run" in body["summary"]
    # beat is back at T0+75m: on-time runs again
    insert(results_db, every("health.postgres", name, T0 + timedelta(minutes=75), T0 + timedelta(hours=2), FIVE))
    clock = T0 + timedelta(minutes=80)
    for _ in range(3):
        assert watch.run(cfg, book, clock, "testhost").status == "ok"
        clock += timedelta(minutes=10)
    assert alerts_at(http_capture, name) == [("problem", f"missed:{entry}"), ("recovery", f"missed:{entry}")]


def test_ping_success_and_fail_received_on_loopback(config: ConfigFactory, results_db: str,
                                                   http_capture: CaptureServer) -> None:
    uuid_path = "/ping/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
    name, book = setup(config, ("health.postgres",),
                       f'[watchdog]\nping_url = "{http_capture.url(uuid_path)}"\n')
    insert(results_db, every("health.postgres", name, T0 - DAY, T0, FIVE))
    ok = watch.run(get_config(), book, T0, "testhost")
    assert ok.status == "ok" and ok.metrics["ping"] == f"success ping sent to http://127.0.0.1:{http_capture.port}/…"
    assert [r.path for r in http_capture.requests] == [uuid_path]
    assert b"no missed, late, stuck" in http_capture.requests[0].body
    bad = watch.run(get_config(), book, T0 + timedelta(minutes=20), "testhost")
    assert bad.status == "critical" and bad.metrics["ping"].startswith("fail ping sent")
    assert [r.path for r in http_capture.requests] == [uuid_path, uuid_path + "/fail"]
    assert f"missed health.postgres[{name}]".encode() in http_capture.requests[1].body
    assert "5bf66975" not in bad.summary  # the check's UUID is the credential: never shown


def test_unreachable_ping_is_reported_not_raised(config: ConfigFactory, results_db: str) -> None:
    dead = free_port()
    name, book = setup(config, ("health.postgres",),
                       f'[watchdog]\nping_url = "http://127.0.0.1:{dead}/ping/secret-uuid-77"\nping_timeout_s = 2\n')
    result = watch.run(get_config(), book, T0, "testhost")
    assert result.status == "ok" and result.metrics["ping"].startswith("success ping FAILED")
    assert "secret-uuid-77" not in result.metrics["ping"] and "secret-uuid-77" not in result.summary


def test_ignored_entries_are_not_watched(config: ConfigFactory, results_db: str) -> None:
    name, book = setup(config, ("health.postgres", "backup.postgres"), '[watchdog]\nignore = ["health.*"]\n')
    assert findings(book, T0, name) == {}
    found = findings(book, T0 + 2 * DAY, name)
    assert list(found) == [f"missed:backup.postgres[{name}]"]
