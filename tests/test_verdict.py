"""The pieces of the Flower verdict that need no running system (workers/verdict.py,
workers/processes/flowerconfig.py); the whole path runs in tests/test_flower_verdict.py."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest
from celery.events.state import State
from celery.utils.saferepr import saferepr

from workers.catalog import load_catalog
from workers.processes import flowerconfig
from workers.records.outcome import STATUSES, Outcome, Result, RunContext
from workers.verdict import (
    FLOWER_STATE,
    MAX_TEXT,
    event_type,
    headline,
    readable,
    status_of_repr,
    target_repr,
)


def _outcome(status: str, target: str | None = "main", summary: str = "it's \"fine\"\nsecond line",
             **metrics: object) -> dict:
    load_catalog()
    started = datetime(2026, 1, 1, tzinfo=timezone.utc)
    run = RunContext(task="health.postgres" if target else "health.overview", task_id="t-1", target=target,
                     impact="none", host="db1", worker="db-fast@db1/1", attempt=1, dry_run=False,
                     config=None, started_at=started, soft_deadline_s=60)  # type: ignore[arg-type]
    not_before = started + timedelta(hours=1) if status == "deferred" else None
    return Outcome.of(run, Result(status, summary, dict(metrics), not_before=not_before),
                      started + timedelta(seconds=2)).as_dict()


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("target", ["main", "web-1.db_2", None])
def test_status_read_from_celerys_repr_of_an_outcome(status: str, target: str | None) -> None:
    # The worker's main process only sees saferepr(retval, resultrepr_maxsize): the real thing.
    big = {f"m{i}": "x" * 50 for i in range(100)}  # truncated at 1024 characters
    text = saferepr(_outcome(status, target, **big), 1024)
    assert len(text) <= 1100
    assert status_of_repr(text) == status


@pytest.mark.parametrize("text", [None, 42, "", "{'status': 'critical'}", "{'task': 'other.task', 'target': 'main', "
                                  "'status': 'critical'", "{'task': 'health.postgres', 'target': 'main', 'status': 'bogus'"])
def test_not_an_outcome_repr_is_left_alone(text: object) -> None:
    load_catalog()
    assert status_of_repr(text) is None


def test_event_types_become_flower_states() -> None:
    """Celery's event state turns task-<x> into state X; SUCCESS outranks every custom state,
    so ok keeps task-succeeded and the others end with their own event."""
    state = State()
    for status in STATUSES:
        uuid = f"id-{status}"
        state.event({"type": "task-received", "uuid": uuid, "name": "health.postgres", "args": "main",
                     "hostname": "db-fast@db1", "timestamp": 1.0, "clock": 1, "local_received": 1.0})
        state.event({"type": "task-started", "uuid": uuid, "hostname": "db-fast@db1", "timestamp": 2.0,
                     "clock": 2, "local_received": 2.0})
        final = "task-succeeded" if status == "ok" else event_type(status)
        # the run's own event (readable result) first, then the worker's terminal one
        state.event({"type": event_type(status), "uuid": uuid, "result": "readable", "hostname": "db-fast@db1",
                     "timestamp": 3.0, "clock": 3, "local_received": 3.0})
        state.event({"type": final, "uuid": uuid, "runtime": 1.5, "hostname": "db-fast@db1",
                     "timestamp": 3.1, "clock": 4, "local_received": 3.1})
        task = state.tasks[uuid]
        assert task.state == FLOWER_STATE[status]
        assert task.result == "readable" and task.runtime == 1.5 and task.args == "main"
    # A progress event (a later issue) before the verdict does not stick.
    state.event({"type": "task-progress", "uuid": "id-p", "hostname": "h", "timestamp": 1.0, "clock": 9,
                 "local_received": 1.0})
    state.event({"type": "task-critical", "uuid": "id-p", "hostname": "h", "timestamp": 2.0, "clock": 10,
                 "local_received": 2.0})
    assert state.tasks["id-p"].state == "CRITICAL"


def test_readable_result_headline_pretty_outcome_masked() -> None:
    outcome = _outcome("critical", summary="db down: postgresql://u:hunter2secret@db1/x\nmore")
    text = readable(outcome, "hunter2secret")
    first, blank, *rest = text.splitlines()
    assert first == "db down: postgresql://u:***@db1/x" and blank == ""
    assert json.loads("\n".join(rest))["status"] == "critical"
    assert "hunter2secret" not in text
    assert headline({**outcome, "dry_run": True}).startswith("[dry run] ")


def test_readable_result_is_bounded() -> None:
    text = readable(_outcome("warning", rows=["y" * 100] * 1000))
    assert MAX_TEXT < len(text) < MAX_TEXT + 300
    assert "AsyncResult('t-1').get()" in text.splitlines()[-1]


def test_target_name_as_argsrepr() -> None:
    load_catalog()
    assert target_repr("health.postgres", ("main",)) == "main"
    assert target_repr("health.overview", ()) == ""
    assert target_repr("health.postgres", ("main", "extra")) is None  # not a shape we name: Celery's repr
    assert target_repr("some.other_task", ("main",)) is None


def test_flower_list_shows_headline_page_shows_all() -> None:
    state = State()
    state.event({"type": "task-critical", "uuid": "u1", "hostname": "h", "timestamp": 1.0, "clock": 1,
                 "local_received": 1.0, "result": "headline\n\n{\n  \"a\": 1\n}"})
    state.event({"type": "task-failed", "uuid": "u2", "hostname": "h", "timestamp": 1.0, "clock": 2,
                 "local_received": 1.0, "exception": "PermanentError('boom')"})
    listed = flowerconfig.format_task(copy.copy(state.tasks["u1"]))
    assert listed.as_dict()["result"] == "headline"  # what the list serialises
    assert listed.result.startswith("headline\n\n{")  # what the task's page reads
    assert state.tasks["u1"].as_dict()["result"].startswith("headline\n\n")  # the original is untouched
    failed = flowerconfig.format_task(copy.copy(state.tasks["u2"]))
    assert failed.as_dict()["result"] == "PermanentError('boom')"
    assert failed.result is None
