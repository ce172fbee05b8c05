"""``maintd flower``: the project app, basic auth, read-only, no secret in what it shows."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, ConfigFactory, maintd_cmd, wait_until
from tests.flower_support import running_flower
from workers.doors.commands import free_port


@pytest.fixture
def flower_password() -> str:
    return "fl-" + secrets.token_urlsafe(12)


@pytest.fixture
def target_password() -> str:
    # Test servers trust loopback, so the server ignores it; it must still never show.
    return "pg-" + secrets.token_urlsafe(12)


@pytest.fixture
def flower_config(config: ConfigFactory, target_db: str, tmp_path: Path, flower_password: str,
                  target_password: str) -> ConfigFactory:
    secret = tmp_path / "flower.password"
    secret.write_text(flower_password + "\n")
    secret.chmod(0o600)
    config.write(f"""\
        [flower]
        user = "ops"
        password_file = "{secret}"

        [[postgres]]
        name = "main"
        dsn = "{target_db}"
        password = "{target_password}"
        """)
    return config


@pytest.fixture
def flower(flower_config: ConfigFactory, tmp_path: Path, flower_password: str) -> Iterator[str]:
    log = tmp_path / "flower.log"
    with running_flower(log) as base:
        yield base
    # Flower's own log must not carry the secrets either (it logs the broker URL and settings).
    text = log.read_text(errors="replace")
    assert flower_password not in text, "Flower logged its password"


def test_flower_lists_task_with_names_only_and_requires_auth(
        flower: str, start_worker, flower_password: str, target_password: str, target_db: str) -> None:
    from workers.dispatch import dispatch

    auth = ("ops", flower_password)
    worker = start_worker(role="db", host="testhost")
    assert worker.proc.poll() is None

    # Flower's event receiver is live once it has seen the worker's heartbeats.
    def worker_seen() -> bool:
        r = requests.get(f"{flower}/api/workers", params={"status": "true"}, auth=auth, timeout=5)
        return r.status_code == 200 and any(r.json().values())

    wait_until(worker_seen, 30, "Flower to see the worker's events")

    result = dispatch("maintd.noop", "main", {})
    outcome = result.get(timeout=30)
    assert outcome["status"] == "ok"

    def listed() -> dict | None:
        r = requests.get(f"{flower}/api/tasks", auth=auth, timeout=5)
        assert r.status_code == 200, r.text
        task = r.json().get(result.id)
        return task if task and task.get("state") == "SUCCESS" else None

    task = wait_until(listed, 20, "the task in Flower's /api/tasks")
    assert isinstance(task, dict)
    assert task["name"] == "maintd.noop"
    assert task["args"] == "main", task["args"]  # the target's name (argsrepr), not a tuple repr
    assert task["kwargs"] in ("{}", None), task["kwargs"]

    everything = requests.get(f"{flower}/api/tasks", auth=auth, timeout=5).text
    everything += requests.get(f"{flower}/api/workers", params={"refresh": "true"}, auth=auth, timeout=15).text
    for secret in (flower_password, target_password, target_db):
        assert secret not in everything

    # No credentials, wrong credentials: 401.
    assert requests.get(f"{flower}/api/tasks", timeout=5).status_code == 401
    assert requests.get(f"{flower}/api/tasks", auth=("ops", "wrong"), timeout=5).status_code == 401

    # Read-only by default: control calls are refused even with valid credentials.
    r = requests.post(f"{flower}/api/task/revoke/{result.id}", auth=auth, timeout=5)
    assert r.status_code == 403 and "read only" in r.text.lower(), (r.status_code, r.text)
    r = requests.post(f"{flower}/api/task/async-apply/maintd.noop", json={"args": ["main"]}, auth=auth, timeout=5)
    assert r.status_code == 403, (r.status_code, r.text)
    r = requests.post(f"{flower}/api/worker/shutdown/db-fast@testhost", auth=auth, timeout=5)
    assert r.status_code == 403, (r.status_code, r.text)
    assert worker.proc.poll() is None


def test_flower_password_never_on_command_line(flower: str, flower_password: str) -> None:
    import psutil

    cmdlines = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "flower" in cmd:
            cmdlines.append(cmd)
    assert cmdlines, "no Flower process found"
    assert all(flower_password not in c for c in cmdlines)


def _maintd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(maintd_cmd(*args), capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ})


def test_flower_refuses_without_password(config: ConfigFactory) -> None:
    config.write("")
    out = _maintd("flower", "--port", str(free_port()))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "password" in lines[0], out.stderr


def test_flower_no_auth_only_on_loopback(config: ConfigFactory) -> None:
    config.write("")
    out = _maintd("flower", "--no-auth", "--address", "0.0.0.0", "--port", str(free_port()))
    assert out.returncode == 1
    assert "loopback" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
