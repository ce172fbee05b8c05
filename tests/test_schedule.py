"""The maintenance matrix: expansion over targets, defaults, overrides, expiry; the CLI views."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from typing import Any

import pytest

import beat_schedule
from tests.conftest import ROOT, ConfigFactory, maintd_cmd
from workers.app import celery_beat_schedule
from workers.config import parse_config
from workers.schedule import expand, expires_for, interval_s

CONFIG = """
[maintd]
host = "db1"
[[postgres]]
name = "main"
dsn = "postgresql://u@db1/clo"
[[postgres]]
name = "reporting"
dsn = "postgresql://u@db2/rep"
[[redis]]
name = "cache"
url = "redis://redis:6379/1"
[[sqlite]]
name = "assets"
path = "/opt/clo/assets.db"
host = "app1"
[[http]]
name = "api"
url = "http://app1:8000/health"
[schedule]
"health.postgres" = "*/2 * * * *"
"health.postgres[reporting]" = "off"
"health.redis[cache]" = "0 * * * *"
"""


def entries() -> dict[str, Any]:
    return {e.name: e for e in expand(parse_config(CONFIG))}


def test_expands_task_by_target_with_defaults_and_overrides() -> None:
    got = entries()
    assert got["health.postgres[main]"].cron == "*/2 * * * *"  # task-wide override
    assert "health.postgres[reporting]" not in got  # turned off for one target
    assert got["health.redis[cache]"].cron == "0 * * * *"  # per-target override
    assert got["health.http[api]"].cron == beat_schedule.DEFAULT_CRON["health.http"]  # runbook default
    assert got["health.overview"].target is None  # target-less task: one entry
    assert got["maintd.release_deferred"].cron == "* * * * *"
    # ad-hoc and untargeted kinds never appear
    assert not any(name.startswith(("maintd.noop", "maintd.hold")) for name in got)
    assert not any(e.task == "health.certificates" for e in got.values())  # no certificate targets


def test_queues_follow_role_impact_and_host() -> None:
    got = entries()
    assert got["health.postgres[main]"].queue == "db.none"
    assert got["health.http[api]"].queue == "app.none"
    assert got["health.sqlite[assets]"].queue == "app.none.app1"  # host-pinned: lives in app1's files
    assert got["health.sqlite[assets]"].impact == "none"


@pytest.mark.parametrize(("cron", "expires"), [("*/5 * * * *", 240), ("* * * * *", 48), ("0 2 * * *", 3600)])
def test_expiry_is_a_fraction_of_the_interval(cron: str, expires: int) -> None:
    assert expires_for("health.postgres", cron) == expires


def test_interval_and_next_run() -> None:
    assert interval_s("*/5 * * * *") == 300
    e = entries()["health.postgres[main]"]
    assert e.next_run(datetime(2026, 11, 22, 10, 1, 30, tzinfo=timezone.utc)) == datetime(
        2026, 11, 22, 10, 2, tzinfo=timezone.utc)


def test_celery_beat_schedule_carries_args_and_expires() -> None:
    sched = celery_beat_schedule(parse_config(CONFIG))
    entry = sched["health.sqlite[assets]"]
    assert entry["task"] == "health.sqlite" and entry["args"] == ("assets",)
    assert entry["options"]["expires"] == 240
    assert "postgresql://" not in json.dumps({k: {"args": v["args"]} for k, v in sched.items()})


def test_every_default_names_a_contract_task_or_is_off() -> None:
    for task, cron in beat_schedule.DEFAULT_CRON.items():
        assert "." in task
        assert cron == "off" or len(cron.split()) == 5


def test_cli_tasks_schedule_status(config: ConfigFactory, target_db: str, start_worker: Any) -> None:
    path = config.write(f'[[postgres]]\nname = "main"\ndsn = "{target_db}"\n')

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(maintd_cmd("--config", str(path), *args), capture_output=True, text=True, cwd=ROOT,
                              timeout=120)

    tasks = cli("tasks")
    assert tasks.returncode == 0
    assert "health.postgres" in tasks.stdout and "maintd.hold" in tasks.stdout and "high" in tasks.stdout
    assert "maintd.release_deferred" not in tasks.stdout  # internal plumbing is not listed
    schedule = cli("schedule")
    assert schedule.returncode == 0
    line = next(ln for ln in schedule.stdout.splitlines() if "health.postgres[main]" in ln)
    assert "*/5 * * * *" in line and "db.none" in line and "none" in line
    start_worker(role="db")
    run = cli("run", "health.postgres", "main", "--wait", "--timeout", "60")
    assert run.returncode == 0, run.stderr
    status = cli("status", "--json")
    doc = json.loads(status.stdout)
    # the exit code reflects the worst latest outcome (this session's history is shared)
    statuses = {r["status"] for r in doc["latest"]}
    assert status.returncode == (3 if "failed" in statuses else 2 if "critical" in statuses else 0)
    assert any(w.startswith("db-fast@") for w in doc["workers"])
    assert any(r["task"] == "health.postgres" and r["target"] == "main" for r in doc["latest"])
    human = cli("status")
    assert "health.postgres" in human.stdout and "main" in human.stdout


@pytest.mark.slow
def test_beat_dispatches_scheduled_entries(config: ConfigFactory, target_db: str, start_worker: Any,
                                           tmp_path: Any) -> None:
    """`maintd beat` sends due entries (here the every-minute release and a health check) with
    their expiry, and workers run them: history shows runs no one dispatched by hand."""
    path = config.write(f'[[postgres]]\nname = "main"\ndsn = "{target_db}"\n'
                        '[schedule]\n"health.postgres" = "* * * * *"\n')
    start_worker(role="db")
    log = open(tmp_path / "beat.log", "wb")
    beat = subprocess.Popen(maintd_cmd("--config", str(path), "beat"), cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from workers.records import records

        since = datetime.now(timezone.utc)

        def scheduled_runs() -> set[str]:
            runs = records().runs.find(limit=50)
            return {r["task"] for r in runs if r["started_at"] > since and r["target"] in ("main", None)
                    and r["entry"] is not None}

        def releases() -> int:  # quiet: an idle release leaves no history row, only Celery's result
            def count(cur: Any) -> int:
                cur.execute("SELECT count(*) FROM celery_taskmeta WHERE name = 'maintd.release_deferred'"
                            " AND date_done > %s", (since.replace(tzinfo=None),))
                return int(cur.fetchone()[0])

            return records().execute(count)

        from tests.conftest import wait_until

        # (health.overview, "1-59/5", may run too when the first minute is one of its)
        got = wait_until(lambda: "health.postgres" in scheduled_runs() and releases() > 0, 90,
                         "beat to send the every-minute entries")
        assert got
        assert not [r for r in records().runs.find(task="maintd.release_deferred") if r["started_at"] > since]
        assert beat.poll() is None
    finally:
        beat.terminate()
        beat.wait(timeout=30)
        log.close()
    assert beat.returncode == 0
