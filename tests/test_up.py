"""``maintd up`` with no config: embedded servers, demo config, sweep, Flower, clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import maintd_cmd, wait_until
from workers.doors.commands import free_port


def _status(config: Path, cwd: Path) -> dict | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
    out = subprocess.run(maintd_cmd("status", "--json"), capture_output=True, text=True, timeout=30, cwd=cwd,
                         env={**env, "MAINTD_CONFIG": str(config)})
    if not out.stdout.strip().startswith("{"):
        return None
    return json.loads(out.stdout)


def _alive(procs: list[psutil.Process]) -> list[str]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {p.name()}")
        except psutil.NoSuchProcess:
            pass
    return left


def test_up_embedded_runs_sweep_serves_flower_and_leaves_no_process(scratch_root: Path) -> None:
    home = scratch_root / f"up-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    home.chmod(0o755)  # embedded PostgreSQL runs as its own user when we are root
    data = home / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAINTD_", "FLOWER_"))}
    log = home / "up.out"
    with open(log, "wb") as out:
        up = subprocess.Popen(maintd_cmd("up", "--data-dir", str(data), "--flower-port", str(port)),
                              stdout=out, stderr=subprocess.STDOUT, cwd=home, env=env, start_new_session=True)
    descendants: list[psutil.Process] = []
    try:
        config = data / "maintd.toml"

        def finished_run() -> dict | None:
            if up.poll() is not None:
                raise AssertionError(f"maintd up exited {up.returncode}: {log.read_text()[-3000:]}")
            if not config.exists():
                return None
            doc = _status(config, home)
            return doc if doc and doc["latest"] else None

        doc = wait_until(finished_run, 90, "a finished run in `maintd status --json`", interval_s=1.0)
        assert isinstance(doc, dict)
        assert any(r["task"].startswith("health.") for r in doc["latest"]), doc["latest"]
        assert {"db-fast", "app-fast"} <= {w.split("@")[0] for w in doc["workers"]}

        # Generated files: config and secrets owner-only; no secret inline in the config.
        secrets = {p.name: p.read_text().strip() for p in (data / "secrets").iterdir()}
        assert {"redis.password", "postgres.password", "flower.password"} <= set(secrets)
        for path in [config, *(data / "secrets").iterdir()]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        text = config.read_text()
        for name in ("redis.password", "postgres.password", "flower.password"):
            assert secrets[name] not in text

        # Flower: the printed credentials work; none → 401.
        printed = re.search(r"Flower:\s+(\S+)\s+user (\S+)\s+password (\S+)", log.read_text())
        assert printed, log.read_text()
        url, user, password = printed.groups()
        assert url == f"http://127.0.0.1:{port}/" and password == secrets["flower.password"]
        assert f"export MAINTD_CONFIG={config}" in log.read_text()
        r = requests.get(f"{url}api/tasks", auth=(user, password), timeout=10)
        assert r.status_code == 200 and r.json(), r.text[:300]
        assert requests.get(f"{url}api/tasks", timeout=10).status_code == 401

        # A second `maintd up` on the same data directory refuses with one line.
        second = subprocess.run(maintd_cmd("up", "--data-dir", str(data), "--no-flower"), capture_output=True,
                                text=True, timeout=60, cwd=home, env=env)
        assert second.returncode == 1 and "another `maintd up`" in second.stderr, second.stderr

        descendants = psutil.Process(up.pid).children(recursive=True)
        names = {p.name() for p in descendants}
        assert "redis-server" in names and "postgres" in names, names
        assert len(descendants) >= 8  # beat, 4 worker lanes (+ pool), Flower, servers

        started = time.monotonic()
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=90) == 0, log.read_text()[-3000:]
        wait_until(lambda: not _alive(descendants), 10, "every child of `maintd up` to exit")
        assert time.monotonic() - started < 90
        leftovers = [p.pid for p in psutil.process_iter(["cmdline"])
                     if str(data) in " ".join(p.info["cmdline"] or [])]
        assert not leftovers, leftovers
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(timeout=10)
        for p in descendants:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def test_overlay_adds_embedded_urls_to_a_user_config(tmp_path: Path) -> None:
    from workers.config import parse_config
    from workers.errors import ConfigError
    from workers.processes.demo import is_generated, overlay_config

    broker, results = tmp_path / "broker.url", tmp_path / "results.url"
    broker.write_text("redis://:pw-broker@127.0.0.1:6390/0\n")
    results.write_text("postgresql://postgres:pw-results@127.0.0.1:5439/maintd\n")
    user = tmp_path / "mine.toml"
    text = '[broker]\nvisibility_timeout = 7200\n\n[[redis]]\nname = "cache"\nurl = "redis://127.0.0.1:6379/1"\n'
    out = overlay_config(text, user, broker, results)
    (tmp_path / "maintd.toml").write_text(out)
    assert is_generated(tmp_path / "maintd.toml")
    assert "pw-broker" not in out and "pw-results" not in out
    cfg = parse_config(out, "overlay", tmp_path)
    assert cfg.broker.url is not None and cfg.broker.url.reveal().endswith(":6390/0")
    assert cfg.broker.visibility_timeout == 7200  # the user's [broker] table kept
    assert cfg.results.url is not None and cfg.results.url.reveal().endswith("/maintd")
    assert [t.name for t in cfg.all_targets()] == ["cache"]

    relative = text + '\n[flower]\npassword_file = "flower.pw"\n'
    with pytest.raises(ConfigError, match=r"flower\.password_file: .*absolute"):
        overlay_config(relative, user, broker, results)
