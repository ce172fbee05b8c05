"""Pure rules of PostgreSQL maintenance, as tables of cases: bloat selection and
estimates, admission verdicts, batch sizing, termination eligibility, config checks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from tasks.core.postgres import admission, bloat, disk, long_queries, retention
from tasks.core.postgres.relations import _candidates
from workers.config import AdmissionLimits, PostgresTarget, RetentionPolicy, parse_age

DT = bloat.DeadTuples


@pytest.mark.parametrize(("live", "dead", "expected"), [
    (10000, 1001, True),    # 1001 dead, 10.01%: just over both
    (10000, 1000, False),   # 1000 dead is not "> 1000"
    (20000, 2000, False),   # 10% is not "> 10%"
    (10000, 1500, True),    # 15%, 1500 dead
    (100000, 5000, False),  # 5000 dead but only 5%
    (0, 1001, True),        # no live rows: ratio against max(live, 1)
    (0, 0, False),
    (9000, 1001, True),     # 11.1%
])
def test_runbook_dead_tuple_rule(live: int, dead: int, expected: bool) -> None:
    assert bloat.needs_vacuum(DT("s", "t", live, dead), 1000, 0.10) is expected


def test_most_bloated_first_ties_by_dead_then_name() -> None:
    tables = [DT("s", "b", 1000, 2000), DT("s", "a", 1000, 5000), DT("s", "c", 2000, 4000),
              DT("s", "d", 100000, 2000), DT("s", "e", 500, 2500)]
    chosen = bloat.select_for_vacuum(tables, 1000, 0.10)
    # ratios 5 (5000 dead), 5 (2500 dead), 2 (4000 dead), 2 (2000 dead); d is only 2%
    assert [t.name for t in chosen] == ["a", "e", "c", "b"]


@pytest.mark.parametrize(("size", "tuples", "width", "ff", "est", "ratio"), [
    (8192 * 89, 10000, 40, 100, True, 0.0),            # 10000 * 72 B / 8168 B -> 89 pages: dense
    (8192 * 100, 10000, 40, 100, True, 0.11),          # 11 pages spare
    (8192 * 1000, 10000, 40, 100, True, 0.911),        # 1000 pages for 89: ~91% bloat
    (8192 * 100, 10000, 40, 50, True, 0.0),            # fillfactor 50 needs ~178 pages: none
    (8192 * 10, 0, 40, 100, True, 1.0),                # empty table, 10 pages: all bloat
    (8192 * 100, -1, None, 100, False, 0.0),           # never analyzed, no dead: no guess
])
def test_table_space_estimate(size: int, tuples: float, width: float | None, ff: int, est: bool, ratio: float) -> None:
    space = bloat.table_space(size, tuples, width, ff)
    assert space.estimated is est
    assert space.ratio == pytest.approx(ratio, abs=0.01)


def test_table_space_falls_back_to_dead_share_without_stats() -> None:
    space = bloat.table_space(1000, -1, None, live=300, dead=700)
    assert not space.estimated and space.bloat_bytes == 700


@pytest.mark.parametrize(("size", "tuples", "width", "ff", "bloated"), [
    (8192 * 280, 100000, 4, 90, False),   # int4 key: ~7336/20 = 366 per leaf -> ~277 pages
    (8192 * 2800, 100000, 4, 90, True),   # ten times that
    (8192 * 2800, 100000, None, 90, False),  # expression index: never estimated
])
def test_btree_estimate(size: int, tuples: float, width: float | None, ff: int, bloated: bool) -> None:
    space = bloat.btree_space(size, tuples, width, ff)
    assert bloat.over(space, 0.5, 0) is bloated


def test_over_needs_both_size_and_ratio() -> None:
    space = bloat.Space(10 * 1048576, 6 * 1048576, True)
    assert bloat.over(space, 0.5, 1048576)
    assert not bloat.over(space, 0.7, 1048576)
    assert not bloat.over(space, 0.5, 100 * 1048576)


LIMITS = AdmissionLimits(max_active_sessions=10, max_lock_waits=2, max_transaction_age_s=600, max_replication_lag_s=60)


@pytest.mark.parametrize(("signals", "reason"), [
    (admission.LoadSignals(3, 0, 10.0, None), None),
    (admission.LoadSignals(10, 2, 600.0, 60.0), None),  # at the limits is fine
    (admission.LoadSignals(11, 0, None, None), "11 active sessions > limit 10"),
    (admission.LoadSignals(0, 3, None, None), "3 sessions waiting on locks > limit 2"),
    (admission.LoadSignals(0, 0, 900.0, None), "a transaction open 900s > limit 600s"),
    (admission.LoadSignals(0, 0, None, 61.0), "replication lag 61s > limit 60s"),
    (admission.LoadSignals(20, 5, None, None), "20 active sessions > limit 10; 5 sessions waiting on locks > limit 2"),
])
def test_admission_verdict(signals: admission.LoadSignals, reason: str | None) -> None:
    assert admission.verdict(signals, LIMITS) == reason


@pytest.mark.parametrize(("current", "seconds", "target", "expected"), [
    (1000, 0.25, 0.5, 2000),    # twice as fast as wanted: double (the cap)
    (1000, 0.01, 0.5, 2000),    # never more than 2x per step
    (1000, 1.0, 0.5, 500),      # twice too slow: halve
    (1000, 10.0, 0.5, 500),     # never less than half per step
    (1000, 0.4, 0.5, 1250),
    (150, 10.0, 0.5, 100),      # floor
    (40000, 0.1, 0.5, 50000),   # ceiling
    (1000, 0.0, 0.5, 2000),     # instant batch
])
def test_next_batch_size(current: int, seconds: float, target: float, expected: int) -> None:
    assert retention.next_batch_size(current, seconds, target, 100, 50000) == expected


def _session(**kw: object) -> long_queries.LongSession:
    base: dict[str, object] = dict(pid=1, user="app", application="web", state="active", age_s=4000.0,
                                   superuser=False, backend_start=datetime.now(UTC), xact_start=None, query="")
    base.update(kw)
    return long_queries.LongSession(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "why"), [
    ({}, None),
    ({"age_s": 100.0}, "below the critical age"),
    ({"superuser": True}, "superuser sessions are never terminated"),
    ({"application": "maintd:postgres.vacuum_full"}, "maintd's own session"),
    ({"user": "other", "application": "other"}, "not in terminate_users / terminate_applications"),
    ({"user": "other"}, None),  # allowed by application
    ({"application": "batch"}, None),  # allowed by user
])
def test_may_terminate(kw: dict[str, object], why: str | None) -> None:
    assert long_queries.may_terminate(_session(**kw), 1800, ["app"], ["web"]) == why


@pytest.mark.parametrize(("query", "masked"), [
    ("ALTER ROLE x PASSWORD 'hunter2'", "ALTER ROLE x PASSWORD '?'"),
    ("SELECT 'it''s', E'a\\'b', $$x$$, $t$y$t$", "SELECT '?', '?', '?', '?'"),
    ("SELECT 'cut off", "SELECT '?'"),
    ("SELECT 1", "SELECT 1"),
])
def test_query_literals_are_masked(query: str, masked: str) -> None:
    assert long_queries.masked(query) == masked


def test_rewrite_needs_free_disk_with_margin() -> None:
    assert disk.rewrite_refusal(100, disk.FreeSpace(120, "statvfs /x")) is None
    assert "not enough free disk" in (disk.rewrite_refusal(100 * 1048576, disk.FreeSpace(110 * 1048576, "x")) or "")
    assert "set free_disk_floor_mb" in (disk.rewrite_refusal(1, disk.FreeSpace(None, "unknown (...; set"
                                                                                " free_disk_floor_mb)")) or "")


def test_remote_server_is_not_statvfsd() -> None:
    remote = PostgresTarget(name="r", dsn="postgresql://u@db1.internal/x")  # type: ignore[arg-type]
    local = PostgresTarget(name="l", dsn="postgresql://u@127.0.0.1/x")  # type: ignore[arg-type]
    socket = PostgresTarget(name="s", dsn="host=/var/run/postgresql dbname=x")  # type: ignore[arg-type]
    assert not disk._is_local(remote) and disk._is_local(local) and disk._is_local(socket)


def test_name_candidates_try_whole_then_each_dot() -> None:
    assert _candidates("a.b.c") == [(None, "a.b.c"), ("a", "b.c"), ("a.b", "c")]
    assert _candidates("plain") == [(None, "plain")]
    assert _candidates(".x") == [(None, ".x")]


@pytest.mark.parametrize(("text", "delta"), [("365d", timedelta(days=365)), ("12h", timedelta(hours=12)),
                                             ("30m", timedelta(minutes=30)), ("2w", timedelta(weeks=2)),
                                             ("90s", timedelta(seconds=90))])
def test_parse_age(text: str, delta: timedelta) -> None:
    assert parse_age(text) == delta


@pytest.mark.parametrize(("fields", "problem"), [
    ({"older_than": "1 year"}, "expected a positive number and a unit"),
    ({"older_than": "0d"}, "expected a positive number"),
    ({"where": "a = 1; DROP TABLE x"}, "';' is not allowed"),
    ({"where": "true) OR (true"}, "unbalanced ')'"),
    ({"where": "(a = 1"}, "unbalanced quotes or parentheses"),
    ({"where": "a = 1 -- x"}, "comments are not allowed"),
    ({"where": "a = 1 /* x */"}, "comments are not allowed"),
    ({"where": "a = $$x$$"}, "dollar quoting is not allowed"),
    ({"where": "a = E'\\''"}, "backslashes are not allowed"),
    ({"batch_size": 10, "min_batch_size": 100}, "min_batch_size <= batch_size"),
])
def test_retention_policy_validation(fields: dict[str, object], problem: str) -> None:
    base: dict[str, object] = {"table": "t", "column": "ts", "older_than": "30d", **fields}
    with pytest.raises(ValidationError, match=re.escape(problem)):
        RetentionPolicy(**base)  # type: ignore[arg-type]


def test_where_with_quoted_punctuation_is_accepted() -> None:
    policy = RetentionPolicy(table="t", column="ts", older_than="30d", where="kind = 'a;b(' AND \"Col)\" > 1")
    assert policy.max_age == timedelta(days=30)


@pytest.mark.parametrize(("window", "now", "left"), [
    ([], "2026-01-05 12:00", None),                         # no window: no limit
    (["daily 11:00-13:00"], "2026-01-05 12:00", 3600.0),    # closes in an hour
    (["Mon 23:00-01:00"], "2026-01-06 00:30", 1800.0),      # past midnight
    (["daily 01:00-02:00"], "2026-01-05 12:00", 0.0),       # closed: nothing starts
])
def test_vacuum_full_stops_at_window_close(window: list[str], now: str, left: float | None) -> None:
    from tasks.core.postgres.vacuum_full import window_left_s

    target = PostgresTarget(name="w", dsn="postgresql://u@h/d", window=window)  # type: ignore[arg-type]
    assert window_left_s(target, datetime.fromisoformat(now).replace(tzinfo=UTC)) == left


@pytest.mark.parametrize(("requested", "partitioned", "version", "indexed", "fraction", "expected"), [
    ("auto", False, 150000, True, 0.5, "sweep"),
    ("auto", False, 150000, True, 0.01, "limit"),
    ("auto", False, 150000, False, 0.01, "sweep"),   # no index: a LIMIT batch would rescan the table
    ("limit", False, 150000, True, 0.9, "limit"),    # as configured
    ("sweep", False, 150000, True, 0.01, "sweep"),
    ("sweep", True, 150000, True, 0.9, "limit"),     # partitioned: block numbers are per partition
    ("sweep", False, 130000, True, 0.9, "limit"),    # no TID range scans before 14
])
def test_retention_strategy(requested: str, partitioned: bool, version: int, indexed: bool, fraction: float,
                            expected: str) -> None:
    from tasks.core.postgres.batches import choose

    assert choose(requested, partitioned, version, indexed, fraction) == expected
