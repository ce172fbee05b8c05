"""Pure parts of the watchdog and of incident capture, as tables of cases: slots, the five
findings' edges, policy defaults, the ping URL, blocking chains, client summaries, masking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks.core.incident.mask import mask_query, mask_text
from tasks.core.incident.pg import blocking_chains
from tasks.core.incident.redis_state import clients_summary, slowlog_entries
from tasks.core.watchdog import detect
from workers.config import PingUrl, WatchdogSection

T = datetime(2031, 3, 3, 1, 0, tzinfo=UTC)
POLICY = WatchdogSection()


def run(i: int, status: str, at: datetime, duration: float | None = 1.0, error: str | None = None) -> dict[str, Any]:
    return {"id": i, "status": status, "started_at": at, "duration_s": duration, "error": error, "summary": "",
            "worker": "w/1"}


def daily(first_seen: datetime = T - timedelta(days=30)) -> detect.Watched:
    return detect.Watched("backup.postgres[main]", "backup.postgres", "main", "0 1 * * *", 3600, first_seen)


@pytest.mark.parametrize(("t", "slot"), [
    (T, T), (T + timedelta(seconds=1), T), (T - timedelta(seconds=1), T - timedelta(days=1)),
])
def test_slot_at_or_before(t: datetime, slot: datetime) -> None:
    assert detect.slot_at_or_before("0 1 * * *", t) == slot


@pytest.mark.parametrize(("runs", "now", "kind"), [
    ([run(1, "ok", T - timedelta(days=1))], T + timedelta(minutes=64), None),  # may still wait: expires 1 h + grace 5 min
    ([run(1, "ok", T - timedelta(days=1))], T + timedelta(minutes=66), "missed"),
    ([run(1, "ok", T - timedelta(seconds=30))], T + timedelta(hours=2), None),  # a host clock 30 s early
    ([run(1, "ok", T - timedelta(minutes=5))], T + timedelta(hours=2), "missed"),  # yesterday's slot's run
    ([run(1, "deferred", T + timedelta(seconds=1))], T + timedelta(hours=2), None),  # deferred is still a run
])
def test_missed_edges(runs: list[dict[str, Any]], now: datetime, kind: str | None) -> None:
    found = detect.missed(daily(), runs, now, POLICY)
    assert (found.kind if found else None) == kind


def test_missed_waits_for_first_sight() -> None:
    assert detect.missed(daily(first_seen=T + timedelta(seconds=1)), [], T + timedelta(hours=3), POLICY) is None


@pytest.mark.parametrize(("offsets_min", "late_after", "kind"), [
    ([0.1], None, None), ([14.9], None, None), ([16], None, "late"),
    ([16], "20m", None), ([2, 40], None, None),  # a second (ad hoc) run of the slot does not make it late
])
def test_late_edges(offsets_min: list[float], late_after: str | None, kind: str | None) -> None:
    runs = [run(i, "ok", T + timedelta(minutes=m)) for i, m in enumerate(offsets_min)][::-1]
    found = detect.late(daily(), runs, WatchdogSection(late_after=late_after))
    assert (found.kind if found else None) == kind


@pytest.mark.parametrize(("interval_s", "expected"), [(60, 60), (300, 60), (3600, 720), (86400, 900)])
def test_late_after_default_scales_with_interval(interval_s: float, expected: float) -> None:
    assert POLICY.late_after_s(interval_s) == expected


@pytest.mark.parametrize(("statuses", "kind"), [
    (["failed", "failed"], None),
    (["failed", "retrying", "failed", "lost"], "failing"),  # a retry in between is not a result
    (["failed", "skipped", "failed", "ok", "failed"], None),
    (["failed", "failed", "failed", "ok"], "failing"),
])
def test_failing_streaks(statuses: list[str], kind: str | None) -> None:
    runs = [run(i, s, T - timedelta(hours=i)) for i, s in enumerate(statuses)]
    found = detect.failing(daily(), runs, POLICY)
    assert (found.kind if found else None) == kind


@pytest.mark.parametrize(("durations", "task", "kind"), [
    ([1.9] + [20.0] * 5, "backup.postgres", "too_short"),
    ([1.9] + [20.0] * 4, "backup.postgres", None),  # too few earlier runs for a median
    ([0.2] + [3.0] * 10, "backup.postgres", None),  # the usual run is below the 5 s floor
    ([2.0] + [20.0] * 10, "postgres.vacuum_bloated", None),  # not a task whose length is stable
    ([2.5] + [20.0] * 10, "backup.postgres", None),  # 0.125 of the median
])
def test_too_short_edges(durations: list[float], task: str, kind: str | None) -> None:
    w = detect.Watched(f"{task}[main]", task, "main", "0 1 * * *", 3600, T - timedelta(days=60))
    runs = [run(i, "ok", T - timedelta(days=i), d) for i, d in enumerate(durations)]
    found = detect.too_short(w, runs, POLICY)
    assert (found.kind if found else None) == kind


@pytest.mark.parametrize(("row", "age_s", "kind"), [
    (run(1, "running", T, None), 100 + 300, None),
    (run(1, "running", T, None), 100 + 301, "stuck"),
    (run(1, "failed", T, 100, "hard time limit (100s) exceeded: the process was killed"), 100, "stuck"),
    (run(1, "failed", T, 90, "soft time limit exceeded after 90s"), 100, None),
    (run(1, "failed", T, 100.2, "soft time limit exceeded after 100s"), 100, "stuck"),  # recorded by the killed process
])
def test_stuck_edges(row: dict[str, Any], age_s: float, kind: str | None) -> None:
    row = {**row, "task": "maintd.hold", "target": "main"}
    found = detect.stuck(row, 100, T + timedelta(seconds=age_s), POLICY)
    assert (found.kind if found else None) == kind


def test_ping_url_masks_its_path_and_appends_fail() -> None:
    url = PingUrl("https://hc.example.com/ping/0f6c-uuid?rid=7")
    assert url.masked == "https://hc.example.com/…" and "0f6c" not in repr(url)
    assert url.with_suffix("fail").reveal() == "https://hc.example.com/ping/0f6c-uuid/fail?rid=7"


def test_blocking_chains_tree_and_cycle() -> None:
    sessions = [{"pid": 1, "state": "idle in transaction", "blocked_by": []},
                {"pid": 2, "state": "active", "blocked_by": [1]}, {"pid": 3, "state": "active", "blocked_by": [2]},
                {"pid": 4, "state": "active", "blocked_by": [1]}, {"pid": 9, "state": "active", "blocked_by": []}]
    [tree] = blocking_chains(sessions)
    assert tree["pid"] == 1 and tree["waiting"] == 3
    assert [k["pid"] for k in tree["blocks"]] == [2, 4] and tree["blocks"][0]["blocks"][0]["pid"] == 3
    cycle = blocking_chains([{"pid": 5, "blocked_by": [6]}, {"pid": 6, "blocked_by": [5]}])
    assert [t["pid"] for t in cycle] == [5] and cycle[0]["waiting"] == 1
    assert blocking_chains([{"pid": 1, "blocked_by": []}]) == []


def test_clients_summary_and_slowlog_keep_no_arguments() -> None:
    clients = [{"addr": "10.0.0.1:5000", "name": "api", "cmd": "get", "flags": "N", "idle": "1", "omem": "0"},
               {"addr": "10.0.0.1:5001", "name": "", "cmd": "blpop", "flags": "b", "idle": "900", "omem": "4096"}]
    s = clients_summary(clients)
    assert s["total"] == 2 and s["blocked"] == 1 and s["idle_over_5m"] == 1 and s["by_address"] == [("10.0.0.1", 2)]
    assert s["largest_output_buffers"] == [{"addr": "10.0.0.1:5001", "name": "", "cmd": "blpop", "omem": 4096}]
    [e] = slowlog_entries([{"id": 3, "start_time": 1900000000, "duration": 15000,
                            "command": b"SET session:tok-Secret99 hunter2", "client_name": b"api"}])
    assert e["command"] == "SET" and e["args"] == 2 and e["duration_ms"] == 15.0 and "Secret99" not in str(e)


@pytest.mark.parametrize(("text", "gone", "kept"), [
    ("connecting to postgresql://app:Sup3rSecret@db1/app", "Sup3rSecret", "postgresql://app:***@db1/app"),
    ('{"user": "bob", "api_key": "AKIA12345678"}', "AKIA12345678", '"user": "bob"'),
    ("worker --password hunter22 --queue x", "hunter22", "--queue x"),
    ("Authorization: Bearer eyJhbGciOiJI.x.y", "eyJhbGciOiJI", "Authorization: Bearer ***"),
    ("STATEMENT:  UPDATE users SET ssn = '123-45-6789' WHERE id = 4", "123-45-6789", "WHERE id = 4"),
    ("user 'bob' logged in, don't panic", "", "user 'bob' logged in, don't panic"),  # not SQL: left readable
])
def test_mask_text(text: str, gone: str, kept: str) -> None:
    out = mask_text(text)
    assert (gone not in out if gone else True) and kept in out, out


def test_mask_query_blanks_every_literal() -> None:
    q = "ALTER ROLE app PASSWORD 'pw-1234'; SELECT $$dollar secret$$, E'esc\\'d', 42"
    out = mask_query(q)
    assert "pw-1234" not in out and "dollar secret" not in out and "esc" not in out and "42" in out


@pytest.mark.parametrize(("pattern", "task", "entry", "ignored"), [
    ("health.*", "health.postgres", "health.postgres[main]", True),
    ("health.certificates[legacy-*]", "health.certificates", "health.certificates[legacy-api]", True),
    ("health.certificates[legacy-*]", "health.certificates", "health.certificates[l]", False),
    ("backup.postgres[main]", "backup.postgres", "backup.postgres[main2]", False),
])
def test_ignore_patterns_take_brackets_literally(pattern: str, task: str, entry: str, ignored: bool) -> None:
    assert WatchdogSection(ignore=[pattern]).ignored(task, entry) is ignored
