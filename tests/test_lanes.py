"""Lanes: a running high-impact task never delays a health check on the same role."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import ConfigFactory, wait_until

pytestmark = pytest.mark.slow  # worker/broker mechanics: run once, against the machine's services


def test_health_check_is_fast_while_slow_lane_is_busy(config: ConfigFactory, target_db: str, start_worker: Any) -> None:
    config.write(f'[[postgres]]\nname = "local"\ndsn = "{target_db}"\n'
                 f'[[postgres]]\nname = "other"\ndsn = "{target_db}"\n')
    start_worker(role="db")
    from tasks.health import postgres
    from tasks.maintd import hold
    from workers.records import records

    busy = hold.delay("local", seconds=30)
    wait_until(lambda: any(r["status"] == "running" for r in records().runs.find(task_id=busy.id)), 30,
               "the high-impact task to start")
    queued = hold.delay("other", seconds=0)  # slow lane has one slot: this one waits its turn

    for _ in range(3):
        started = time.monotonic()
        outcome = postgres.delay("local").get(timeout=10, interval=0.05)
        elapsed = time.monotonic() - started
        assert outcome["status"] in ("ok", "warning"), outcome
        assert elapsed < 3.0, f"health check took {elapsed:.2f}s while the slow lane was busy"

    assert not busy.ready(), "the high-impact task should still be holding the slow lane"
    assert not queued.ready(), "the slow lane runs one task at a time"
    assert busy.get(timeout=60)["status"] == "ok"
    assert queued.get(timeout=30)["status"] == "ok"
