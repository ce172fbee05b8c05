"""The ops files: every example config validates; docker-compose.yml and the systemd units
have the services and settings DESIGN.md and the runbooks rely on."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from workers.app import celery_settings
from workers.config import parse_config
from workers.schedule import expand

EXAMPLES = sorted((ROOT / "ops" / "examples").glob("*.toml"))
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
FILE_KEY = re.compile(r'^(\s*(\w+)_file\s*=\s*)"([^"]+)"', re.MULTILINE)
SECRET_KEY = re.compile(r'^\s*(password|secret|secret_access_key|access_key_id)\s*=\s*"([^"]*)"', re.MULTILINE)
URL_PASSWORD = re.compile(r"://[^/@\s:\"]*:([^@\s\"]+)@")


def _dummy_file_content(key: str, path: str) -> str:
    if key == "url" and "broker" in path:
        return "redis://:dummy@127.0.0.1:6379/0"
    if key == "url" and "results" in path:
        return "postgresql://maintd:dummy@127.0.0.1:5432/maintd"
    return "dummy-secret"


def test_one_example_per_runbook_system() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"clo-management", "agentic-ecosystem", "bse-data-optimization", "project-health"} <= names
    assert "compose" in names  # the config docker-compose.yml mounts


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_config_is_valid_and_keeps_secrets_out(path: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    text = path.read_text()
    for name in set(ENV_REF.findall(text)):
        # Webhook-ish variables must hold URLs; anything else is a password.
        value = "https://hooks.example.invalid/T0/B0/x" if "WEBHOOK" in name and "SECRET" not in name else "dummy"
        monkeypatch.setenv(name, value)

    # *_file keys are read at load time: point them at dummy files of the right shape.
    def to_tmp(m: re.Match[str]) -> str:
        target = tmp_path / Path(m.group(3)).name
        target.write_text(_dummy_file_content(m.group(2), m.group(3)) + "\n")
        return f'{m.group(1)}"{target}"'

    config = parse_config(FILE_KEY.sub(to_tmp, text), str(path), tmp_path)
    assert config.all_targets(), "an example maintains something"
    assert config.broker.url is not None and config.results.url is not None
    celery_settings(config)  # URL schemes, visibility timeout vs. the longest task limit
    entries = expand(config)  # every target routes to a queue
    assert any(e.task.startswith("health.") for e in entries)

    # No secret inline: password-like keys and passwords in URLs come from ${ENV}.
    for key, value in SECRET_KEY.findall(text):
        assert value.startswith("${"), f"{path.name}: {key} is inline"
    for value in URL_PASSWORD.findall(text):
        assert value.startswith("${"), f"{path.name}: a URL carries an inline password"


def test_compose_has_the_design_services_with_healthchecks_and_secrets() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    wanted = {"redis", "postgres", "minio", "beat", "worker-db", "worker-app", "flower"}
    assert wanted <= set(services)
    for name in wanted:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"

    assert services["redis"]["image"].startswith("redis:7")
    assert "noeviction" in " ".join(services["redis"]["command"])
    assert "requirepass" in " ".join(services["redis"]["command"])
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")

    declared = set(doc["secrets"])
    for name in ("beat", "worker-db", "worker-app", "flower"):
        svc = services[name]
        assert svc["build"] == "." and (ROOT / "Dockerfile").exists()
        assert svc["command"][0] == "maintd"
        assert any(v.startswith("./ops/examples/compose.toml:") for v in svc["volumes"])
        assert set(svc["secrets"]) <= declared
    assert "--role" in services["worker-db"]["command"] and "db" in services["worker-db"]["command"]
    assert "app" in services["worker-app"]["command"]
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]

    # No secret value in the compose file: only secret files and variable references.
    for svc in services.values():
        env = svc.get("environment") or {}
        for key in env:
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert key.endswith("_FILE"), f"{key} is given inline"


@pytest.mark.parametrize("unit", ["maintd-beat.service", "maintd-worker@.service", "maintd-flower.service",
                                  "maintd-exporter.service"])
def test_systemd_unit_runs_maintd_hardened(unit: str) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "ops" / "systemd" / unit)
    service = parser["Service"]
    command = unit.split("@")[0].split(".")[0].removeprefix("maintd-")
    assert re.search(rf"/maintd {command}\b", service["ExecStart"]), service["ExecStart"]
    assert service["User"] == "maintd"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["KillMode"] == "mixed"  # SIGTERM to maintd, which stops its children cleanly
    assert service["Environment"].startswith("MAINTD_CONFIG=")
    if command == "worker":
        assert "--role %i" in service["ExecStart"]
