"""CLI conventions (issue 11, item 6): ``--config`` and ``-v`` before or after the command,
``maintd --version``, ``maintd run --json`` for scripts, shell completion (argcomplete)."""

from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, ConfigFactory, maintd_cmd
from workers.cli import EXIT_ERROR, EXIT_TIMEOUT, build_parser, main


@pytest.mark.parametrize("argv", [
    ["--config", "x.toml", "-v", "check-config"],
    ["check-config", "--config", "x.toml", "-v"],
    ["-v", "check-config", "--config", "x.toml"],
    ["--config", "other.toml", "check-config", "--config", "x.toml", "--verbose"],  # the later one wins
    ["incidents", "show", "7", "--config", "x.toml", "-v"],  # nested commands too
    ["--config", "x.toml", "-v", "run", "maintd.noop", "--dry-run"],
])
def test_global_options_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.config == "x.toml" and args.verbose is True


def test_global_options_default_when_absent_anywhere() -> None:
    args = build_parser().parse_args(["check-config"])
    assert args.config is None and args.verbose is False


def test_config_after_the_command_is_the_one_used(config: ConfigFactory, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = config.write('[[http]]\nname = "after-the-command"\nurl = "http://127.0.0.1:9/"\n')
    monkeypatch.setenv("MAINTD_CONFIG", str(tmp_path / "absent.toml"))
    assert main(["check-config", "--config", str(path)]) == 0
    assert "after-the-command" in capsys.readouterr().out
    assert main(["check-config", "--config", str(tmp_path / "absent.toml")]) == EXIT_ERROR
    assert "absent.toml: config file not found" in capsys.readouterr().err


def test_version() -> None:
    done = subprocess.run(maintd_cmd("--version"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith(f"maintd {metadata.version('maintd')} (celery {metadata.version('celery')}")


def _run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["run", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)  # one document, nothing else on stdout


def test_run_json_sent_and_timed_out(config: ConfigFactory, redis_server: Any,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """No worker: sent is exit 0 with the task id of the message in the queue; waiting is exit
    4 with the error in the document."""
    config.write('[[postgres]]\nname = "local"\ndsn = "postgresql://postgres@127.0.0.1:9/none"\n')
    code, doc = _run_json(capsys, "maintd.noop", "local")
    assert code == 0 and doc["state"] == "SENT" and doc["exit_code"] == 0 and doc["outcome"] is None
    queued = [json.loads(m)["headers"]["id"] for m in redis_server.client().lrange("db.low", 0, -1)]
    assert doc["task_id"] in queued and doc["task"] == "maintd.noop" and doc["target"] == "local"
    code, doc = _run_json(capsys, "maintd.noop", "local", "--wait", "--timeout", "1")
    assert code == EXIT_TIMEOUT == doc["exit_code"]
    assert doc["state"] == "PENDING" and "no outcome" in doc["error"] and doc["outcome"] is None
    # errors before anything is sent stay one line on stderr, exit 1, nothing on stdout
    assert main(["run", "maintd.nope", "--json"]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.out == "" and "unknown task 'maintd.nope'" in captured.err


def test_run_json_waits_for_the_outcome(config: ConfigFactory, target_db: str, start_worker: Any,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config.write(f'[[postgres]]\nname = "local"\ndsn = "{target_db}"\n'
                 '[[http]]\nname = "closed"\nurl = "http://127.0.0.1:9/"\nrole = "db"\n')
    start_worker(role="db")
    code, doc = _run_json(capsys, "maintd.noop", "local", "--wait", "--timeout", "60")
    assert code == 0 and doc["state"] == "SUCCESS" and doc["status"] == "ok"
    assert doc["outcome"]["task"] == "maintd.noop" and doc["error"] is None
    code, doc = _run_json(capsys, "health.http", "closed", "--wait", "--timeout", "60")
    assert doc["status"] == "critical" and code == doc["exit_code"] == 2  # same exit code as without --json
    assert doc["outcome"]["target"] == "closed"


def _complete(line: str, config: Path | None = None) -> list[str]:
    """Ask the real program for completions the way the shell hook does."""
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_SHELL": "bash", "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "_ARGCOMPLETE_IFS": "\n", "_ARGCOMPLETE_SUPPRESS_SPACE": "1"}
    if config:
        env["MAINTD_CONFIG"] = str(config)
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"maintd-complete-{os.getpid()}.txt"
    env["_ARGCOMPLETE_STDOUT_FILENAME"] = str(out)
    try:
        done = subprocess.run(maintd_cmd(), cwd=ROOT, env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return out.read_text().split("\n")
    finally:
        out.unlink(missing_ok=True)


def test_shell_completion(config: ConfigFactory) -> None:
    path = config.write('[[http]]\nname = "api"\nurl = "http://127.0.0.1:9/"\n'
                        '[[http]]\nname = "admin"\nurl = "http://127.0.0.1:9/admin"\n')
    assert "check-config" in _complete("maintd check-c")
    assert "--config" in _complete("maintd check-config --con")  # after the command too
    assert {"health.http", "health.host"} <= set(_complete("maintd run health.h"))
    assert sorted(_complete(f"maintd run --config {path} health.http a")) == ["admin", "api"]
    hook = subprocess.run(maintd_cmd("completion", "bash"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert hook.returncode == 0 and "complete " in hook.stdout and "maintd" in hook.stdout
