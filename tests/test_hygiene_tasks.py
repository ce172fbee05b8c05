"""The hygiene tasks (files.clean_tmp, files.audit_permissions, sqlite.integrity,
sqlite.optimize, redis.stats) as Celery tasks: their declared policy, one end-to-end run of
each through a real worker on the host's queues, and `maintd schedule`/`check-config`
naming every default cron whose task does not exist."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import beat_schedule
from workers.catalog import load_catalog
from workers.schedule import missing_tasks

from .conftest import ROOT, maintd_cmd

POLICY = {
    "files.clean_tmp": ("low", "tmp", False), "files.audit_permissions": ("none", "audit", False),
    "sqlite.integrity": ("none", "sqlite", False), "sqlite.optimize": ("medium", "sqlite", True),
    "redis.stats": ("none", "redis", False),
}


@pytest.mark.parametrize(("name", "policy"), sorted(POLICY.items()))
def test_declared_policy(name: str, policy: tuple[str, str, bool]) -> None:
    spec = load_catalog()[name]
    assert (spec.impact, spec.target_kind, spec.windowed) == policy and spec.summary
    assert beat_schedule.DEFAULT_CRON[name] != "off"
    assert (ROOT / "ops" / "runbooks" / f"{name}.md").exists()
    assert name not in missing_tasks()


def test_missing_tasks_are_named_by_schedule_and_check_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(beat_schedule.DEFAULT_CRON, "files.nonexistent", "0 1 * * *")
    assert missing_tasks()["files.nonexistent"] == "0 1 * * *"
    path = tmp_path / "maintd.toml"
    path.write_text('[maintd]\nhost = "h"\n')
    expected = {t for t in beat_schedule.DEFAULT_CRON if t not in load_catalog() and t != "files.nonexistent"}
    for command in ("schedule", "check-config"):
        out = subprocess.run(maintd_cmd("--config", str(path), command), capture_output=True, text=True, cwd=ROOT,
                             timeout=60, env={**os.environ, "MAINTD_CONFIG": str(path)})
        assert out.returncode == 0, out.stderr
        if expected:
            assert "name a task that does not exist" in out.stdout
            listed = {line.split()[0] for line in out.stdout.split("does not exist (not scheduled):")[1].splitlines()
                      if line.startswith("  ")}
            assert listed == expected, (command, listed)
        else:
            assert "does not exist" not in out.stdout


def test_hygiene_tasks_through_a_real_worker(config, redis_server, start_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = f"cache-{uuid.uuid4().hex[:6]}"  # its own history: the first run has no earlier counters
    tmp_root = tmp_path / "tmproot"
    tmp_root.mkdir()
    old = tmp_root / "clo-old"
    old.write_text("x")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    app = tmp_path / "app"
    app.mkdir()
    (app / ".env").write_text("SECRET=1")
    os.chmod(app / ".env", 0o644)
    db = tmp_path / "assets.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t(x)")
    conn.executemany("INSERT INTO t VALUES (?)", ((i,) for i in range(1000)))
    conn.commit()
    conn.close()
    config.write(f"""
        [[tmp]]
        name = "clo-tmp"
        host = "testhost"
        path = "{tmp_root}"
        pattern = "clo-*"

        [[audit]]
        name = "clo-app"
        host = "testhost"
        paths = ["{app}"]

        [[sqlite]]
        name = "assets"
        host = "testhost"
        path = "{db}"

        [[redis]]
        name = "{cache}"
        role = "app"
        url = "{redis_server.url}"
        use = "cache"
        bigkeys_sample = 100
    """)
    start_worker(role="app")
    from tasks import files, redis, sqlite

    planned = files.clean_tmp.delay("clo-tmp", dry_run=True).get(timeout=60)
    assert planned["actions"] == [f"rm {old}"] and old.exists() and planned["dry_run"]
    done = files.clean_tmp.delay("clo-tmp").get(timeout=60)
    assert done["status"] == "ok" and not old.exists() and done["host"] == "testhost"

    fix_plan = files.audit_permissions.delay("clo-app", dry_run=True, fix=True).get(timeout=60)
    assert fix_plan["actions"] == [f"chmod 600 {app / '.env'}"] and fix_plan["metrics"]["score"] == 90
    assert fix_plan["status"] == "warning" and (app / ".env").stat().st_mode & 0o777 == 0o644

    integrity = sqlite.integrity.delay("assets").get(timeout=60)
    assert integrity["status"] == "ok" and integrity["metrics"]["integrity_ok"], integrity["summary"]
    optimized = sqlite.optimize.delay("assets").get(timeout=60)
    assert optimized["status"] == "ok" and "ANALYZE" in optimized["actions"], optimized["summary"]

    key = f"maintd-test:{uuid.uuid4().hex}"
    first = redis.stats.delay(cache).get(timeout=60)
    assert first["task"] == "redis.stats" and first["metrics"]["hit_rate_scope"] == "since start"
    second = redis.stats.delay(cache).get(timeout=60)
    assert second["metrics"]["hit_rate_scope"] == "interval"  # the first run's counters came from history
    assert second["metrics"]["interval_s"] > 0
    assert key not in str(second)


@pytest.mark.parametrize(("body", "problem"), [
    ('[[redis]]\nname = "c"\nurl = "redis://127.0.0.1/0"\nuse = "queue"', r'redis\["c"\]\.use'),
    ('[[redis]]\nname = "c"\nurl = "redis://127.0.0.1/0"\nbigkeys_sample = -1', r'redis\["c"\]\.bigkeys_sample'),
    ('[[sqlite]]\nname = "s"\nhost = "h"\npath = "/x.db"\nvacuum_min_freelist_ratio = 1.5',
     r'sqlite\["s"\]\.vacuum_min_freelist_ratio'),
    ('[[audit]]\nname = "a"\nhost = "h"\npaths = ["/"]', "needs 'exclude'"),
])
def test_config_errors_name_the_field(body: str, problem: str) -> None:
    from workers.config import parse_config
    from workers.errors import ConfigError

    with pytest.raises(ConfigError, match=problem) as err:
        parse_config(body + "\n")
    assert str(err.value).startswith("maintd.toml:") and "\n" not in str(err.value)
