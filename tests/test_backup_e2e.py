"""Backups through real worker processes: the whole cycle (backup, verify, restore test,
prune, restore from the CLI), a worker SIGKILLed mid-backup, a full store, an
unreachable S3 store."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import pytest

from tasks.core.backup.inventory import list_backups
from tasks.core.backup.local import LocalStore
from tasks.core.backup.verify import Freshness, verify
from tests.conftest import ROOT, ConfigFactory, PgServer, maintd_cmd, wait_until
from tests.test_backup_support import count, fill_orders, local_store_toml, small_filesystem
from tests.test_health_support import closed_port
from workers.config import PostgresTarget


def pg_toml(dsn: str) -> str:
    return f'[[postgres]]\nname = "main"\ndsn = "{dsn}"\n'


def runs(task_id: str) -> list[dict[str, Any]]:
    from workers.records import records

    return sorted(records().runs.find(task_id=task_id), key=lambda r: r["id"])


def running_pid(task_id: str) -> int | None:
    rows = [r for r in runs(task_id) if r["status"] == "running"]
    return int(rows[-1]["worker"].rsplit("/", 1)[1]) if rows else None


def cli(config: ConfigFactory, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(maintd_cmd("--config", str(config.path), *args), capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_backup_cycle_through_workers_and_cli(config: ConfigFactory, target_db: str, pg_server: PgServer,
                                              tmp_path: Path, inprocess_worker: Any) -> None:
    fill_orders(target_db, 3000)
    store_dir = tmp_path / "store"
    config.write(local_store_toml(store_dir) + pg_toml(target_db)
                 + f'[[files]]\nname = "conf"\npaths = ["{tmp_path}"]\nhost = "app-1"\n')
    from tasks import backup
    from workers.catalog import SPECS
    from workers.config import get_config
    from workers.routing import queue_for

    cfg = get_config()
    assert queue_for(SPECS["backup.files"], "conf", cfg) == "app.low.app-1"  # host-pinned
    assert queue_for(SPECS["backup.verify"], "conf", cfg) == "app.none.app-1"  # the backups kind follows the target
    assert queue_for(SPECS["backup.restore_test"], "main", cfg) == "db.medium"
    inprocess_worker(role="db")

    made = backup.postgres.delay("main").get(timeout=90)
    assert made["status"] == "ok" and made["impact"] == "low", made
    checked = backup.verify.delay("main").get(timeout=90)
    assert checked["status"] == "ok" and checked["metrics"]["verified_now"] == [made["metrics"]["backup_id"]]
    tested = backup.restore_test.delay("main").get(timeout=120)
    assert tested["status"] == "ok" and tested["metrics"]["last_verified_restore"], tested
    planned = backup.prune.delay("main", dry_run=True).get(timeout=60)
    assert planned["status"] == "ok" and planned["dry_run"] and planned["metrics"]["deleted"] == 0

    refused = cli(config, "run", "backup.restore", "main", "--wait", "--timeout", "90")
    assert refused.returncode == 3 and "confirm='main'" in refused.stdout, refused.stdout + refused.stderr
    alt = "maintd_e2e_restored"
    pg_server.created.append(alt)
    done = cli(config, "run", "backup.restore", "main", "--arg", "confirm=main", "--arg", f"into={alt}", "--wait",
               "--timeout", "120")
    assert done.returncode == 0, done.stdout + done.stderr
    assert count(pg_server.dsn(alt)) == 3000
    from workers.records import records

    latest = {(r["task"], r["status"]) for r in records().runs.find(target="main")}
    assert {("backup.postgres", "ok"), ("backup.verify", "ok"), ("backup.restore_test", "ok"),
            ("backup.restore", "failed"), ("backup.restore", "ok")} <= latest


def test_worker_killed_mid_backup_leaves_no_complete_manifest_and_prune_cleans_up(
        config: ConfigFactory, target_db: str, tmp_path: Path, start_worker: Any) -> None:
    fill_orders(target_db, 2000)
    store_dir = tmp_path / "store"
    # incomplete_after must exceed the backup's hard limit (check-config refuses less): both short here
    config.write(local_store_toml(store_dir) + pg_toml(target_db) + '[retention]\nincomplete_after = "31s"\n'
                 '[tasks."backup.postgres"]\nsoft_time_limit = 25\ntime_limit = 30\n')
    start_worker(role="db")
    from tasks import backup

    blocker = psycopg2.connect(target_db)  # pg_dump waits for this lock: a backup caught mid-way
    blocker.cursor().execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    try:
        result = backup.postgres.delay("main")
        pid = wait_until(lambda: running_pid(result.id), 30, "the backup to start")
        assert isinstance(pid, int)
        wait_until(lambda: list(store_dir.rglob("*.partial")), 30, "the data object to be open")
        dumps = wait_until(lambda: [p for p in psutil.Process(pid).children() if p.name() == "pg_dump"], 30,
                           "pg_dump to run")
        os.kill(pid, signal.SIGKILL)
        dump = dumps[0]  # type: ignore[index]
        wait_until(lambda: not dump.is_running() or dump.status() == psutil.STATUS_ZOMBIE, 15,
                   "pg_dump to die with its parent")
        wait_until(lambda: len(runs(result.id)) >= 2, 60, "the run to be redelivered")
    finally:
        blocker.rollback()
        blocker.close()
    outcome = result.get(timeout=120)
    assert outcome["status"] == "ok" and outcome["attempt"] == 2
    records = list_backups(LocalStore(store_dir), "postgres", "main")
    assert sorted(r.state for r in records) == ["complete", "incomplete"]
    orphan = next(r for r in records if r.state == "incomplete")
    assert orphan.manifest is None and all(k.endswith(".partial") for k in orphan.keys)
    assert backup.prune.delay("main").get(timeout=60)["metrics"]["deleted"] == 0  # may still be running: kept
    wait_until(lambda: datetime.now(UTC) - orphan.ref.started_at > timedelta(seconds=33), 60,
               "the orphan to pass incomplete_after")

    pruned = backup.prune.delay("main").get(timeout=60)
    assert pruned["metrics"]["deleted"] == 1 and orphan.ref.dir in pruned["actions"][0], pruned
    assert [r.state for r in list_backups(LocalStore(store_dir), "postgres", "main")] == ["complete"]


def test_full_store_fails_clearly_and_older_backups_stay_intact(config: ConfigFactory, target_db: str,
                                                                tmp_path: Path, inprocess_worker: Any) -> None:
    fill_orders(target_db, 500)
    with small_filesystem(tmp_path / "tiny", "2m") as root:
        config.write(local_store_toml(root) + pg_toml(target_db))
        inprocess_worker(role="db")
        from tasks import backup

        assert backup.postgres.delay("main").get(timeout=90)["status"] == "ok"
        conn = psycopg2.connect(target_db)
        conn.autocommit = True
        conn.cursor().execute("CREATE TABLE noise AS SELECT decode(md5(random()::text) || md5(random()::text), 'hex')"
                              " AS b FROM generate_series(1, 150000)")  # ~5 MB that does not compress
        conn.close()
        result = backup.postgres.delay("main")
        with pytest.raises(Exception) as err:
            result.get(timeout=90)
        assert result.state == "FAILURE"
        assert "is full" in str(err.value) and str(root) in str(err.value), err.value
        [row] = [r for r in runs(result.id)]
        assert row["status"] == "failed" and "is full" in row["error"]
        store = LocalStore(root)
        records = list_backups(store, "postgres", "main")
        assert sorted(r.state for r in records) == ["complete", "failed"]
        failed = next(r for r in records if r.state == "failed")
        assert failed.manifest is not None and "is full" in (failed.manifest.error or "")
        assert not list(root.rglob("*.partial"))
        target = PostgresTarget(name="main", dsn=target_db)
        checked = verify(store, target, Freshness(timedelta(hours=1), timedelta(days=8)), now=datetime.now(UTC),
                         timeout_s=60)
        assert checked.status == "ok" and checked.metrics["backups"] == 1, checked  # the older one is intact


def test_unreachable_s3_store_is_a_failure_with_a_clear_message(config: ConfigFactory, target_db: str) -> None:
    config.write(f'[store]\nkind = "s3"\nbucket = "backups"\nendpoint_url = "http://127.0.0.1:{closed_port()}"\n'
                 'access_key_id = "AKIDEXAMPLE"\nsecret_access_key = "wJalrXUtnFEMI-K7MDENG"\nconnect_timeout_s = 1\n'
                 'max_attempts = 1\n' + pg_toml(target_db))
    from tasks import backup

    result = backup.postgres.apply(args=("main",))  # eager: its retries run at once
    assert result.state == "FAILURE"
    assert "s3://backups unreachable" in str(result.result) and "wJalrXUtnFEMI" not in str(result.result)
    rows = runs(result.id)
    assert [r["status"] for r in rows][-1] == "failed" and len(rows) == 3  # two retries, then failure
