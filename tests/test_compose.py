"""docker-compose.yml against the Compose Specification (issue 11, item 8): the published JSON
schema (vendored in tests/schemas, source and version in compose-spec.SOURCE.md), then the
checks `docker compose config` would make and ours on top: every command resolves, every
healthcheck leaves no key behind in the broker, secrets come from files, not environment."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT, ConfigFactory, maintd_cmd
from workers.cli import build_parser

SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"
COMPOSE = ROOT / "docker-compose.yml"
# Commands of the stock images the file uses (what each image's PATH provides).
IMAGE_BINARIES = {"redis": {"redis-server", "redis-cli", "sh"}, "postgres": {"pg_isready", "postgres", "sh"},
                  "minio/minio": {"minio", "mc", "sh"}, "minio/mc": {"mc", "sh"}}
SHELL_WORDS = {"umask", "printf", "cat", "grep", "echo", "test", "["}
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|_KEY$|^KEY", re.IGNORECASE)
# Healthchecks that write to the broker: broadcast replies (`*.reply.celery.pidbox`), inspect/control.
KEY_WRITERS = re.compile(r"\b(inspect|control|ping\s+-d|celery\s+status|redis-cli\s+(set|incr|lpush|hset))\b")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def argv(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else shlex.split(value)


def image_of(svc: dict[str, Any]) -> str:
    return str(svc.get("image", "")).split(":")[0]


def test_schema_is_the_vendored_compose_spec() -> None:
    header = (SCHEMA.parent / "compose-spec.SOURCE.md").read_text()
    assert "github.com/compose-spec/compose-go/blob/v2.13.0/schema/compose-spec.json" in header
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_compose_file_validates_against_the_compose_spec_schema() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []
    # the validator does fail on a wrong shape (so a pass above means something)
    broken = compose()
    broken["services"]["beat"]["healthcheck"]["test"] = {"cmd": "maintd"}
    broken["services"]["beat"]["restart_policy"] = "always"
    assert len(list(validator.iter_errors(broken))) == 2


def test_references_resolve_as_docker_compose_config_does() -> None:
    doc = compose()
    services = doc["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name}: depends_on unknown service {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name}: waits for {dep} healthy, which has no healthcheck"
            if cond["condition"] == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep}: a one-shot must not restart"
        for secret in svc.get("secrets") or []:
            assert secret in doc["secrets"], f"{name}: secret {secret} not declared"
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in doc["volumes"], f"{name}: volume {source} not declared"
        if "build" in svc:
            assert (ROOT / svc["build"] / "Dockerfile").exists()


def _maintd_argv(words: list[str]) -> list[str] | None:
    """The maintd argv of a command run through the image's entrypoint, or None if not maintd."""
    if words and words[0] == "/usr/local/bin/maintd-entrypoint":
        words = words[1:]
    return words[1:] if words and words[0] == "maintd" else None


def test_every_command_resolves_to_a_maintd_subcommand_or_an_image_binary() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    parser = build_parser()
    checked = 0
    for name, svc in compose()["services"].items():
        commands = [argv(svc["command"])] if "command" in svc else []
        test = (svc.get("healthcheck") or {}).get("test")
        if test:
            assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test must be CMD or CMD-SHELL"
            commands.append(test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]])
        for words in commands:
            maintd = _maintd_argv(words)
            if "build" in svc:
                # our image: maintd subcommands (argparse accepts them) or python -c code that compiles
                if maintd is not None:
                    args = parser.parse_args(maintd)  # exits 1 on an unknown subcommand or option
                    assert callable(args.func)
                elif words[:2] == ["python", "-c"]:
                    compile(words[2], f"{name}:healthcheck", "exec")
                else:
                    pytest.fail(f"{name}: {words[0]} is neither maintd nor python")
                if words[0].startswith("/"):
                    assert f"COPY <<'SH' {words[0]}" in dockerfile, f"{name}: {words[0]} is not in the image"
            else:
                entry = argv(svc.get("entrypoint", []))
                full = entry + words if entry else words
                binaries = IMAGE_BINARIES[image_of(svc)]
                if full[:2] == ["sh", "-c"]:  # every command the shell runs is a builtin or the image's
                    for part in re.split(r"&&|\||;", full[2]):
                        words_ = shlex.split(part)
                        word = words_[1] if words_[0] == "exec" else words_[0]
                        assert word in binaries | SHELL_WORDS, f"{name}: {word} is not a command of {svc['image']}"
                else:  # a stock image's own subcommand (minio server) or one of its binaries
                    assert full[0] in binaries or (image_of(svc) == "minio/minio" and full[0] == "server"), \
                        f"{name}: {full[0]} is not a command of {svc['image']}"
            checked += 1
    assert checked >= 12


def test_secrets_come_from_files_not_environment() -> None:
    doc = compose()
    for name, spec in doc["secrets"].items():
        assert set(spec) == {"file"}, f"secret {name}: only file-backed secrets (not environment:)"
        assert spec["file"].startswith("./secrets/"), spec["file"]
    assert "secrets" in (ROOT / ".dockerignore").read_text().split()
    for name, svc in doc["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRETISH.search(key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), \
                    f"{name}: {key} is a secret given in the environment"
        for words in ([argv(svc["command"])] if "command" in svc else []):
            assert not re.search(r"--(requirepass|password)\b|:[^@\s/]+@", " ".join(words)), \
                f"{name}: a secret on the command line"
    # the mounted config reads its secrets from /run/secrets (directly, or exported by the entrypoint)
    text = "\n".join(line.split("#")[0] for line in (ROOT / "ops" / "examples" / "compose.toml").read_text().splitlines())
    for _key, path in re.findall(r'^\s*(\w+_file)\s*=\s*"([^"]+)"', text, re.MULTILINE):
        assert path.startswith("/run/secrets/")
        assert Path(path).name in doc["secrets"], f"compose.toml reads {path}, not a declared secret"
    for var in re.findall(r"\$\{([A-Z_]+)\}", text):
        assert var.lower() in doc["secrets"], f"compose.toml uses ${{{var}}}: no secret file of that name"


def test_healthchecks_leave_no_keys_behind(config: ConfigFactory, redis_server: Any) -> None:
    """No healthcheck broadcasts (a `celery inspect ping` leaves reply keys in a noeviction
    broker); the maintd ones, run for real against a broker, leave its key set unchanged."""
    services = compose()["services"]
    for name, svc in services.items():
        test = " ".join(svc.get("healthcheck", {}).get("test", []))
        assert not KEY_WRITERS.search(test), f"{name}: healthcheck writes to the broker: {test}"
    path = config.write()
    client = redis_server.client()
    client.set("maintd:alive:db-fast@db1", "{}", ex=60)
    client.set("maintd:alive:db-slow@db1", "{}", ex=60)
    before = set(client.keys("*"))
    ran = 0
    for name, svc in services.items():
        maintd = _maintd_argv(svc.get("healthcheck", {}).get("test", [])[1:])
        if maintd is None:
            continue
        done = subprocess.run(maintd_cmd("--config", str(path), *maintd), cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        # db1's marks are set above, app1's are not: one healthy, one not (the check is real)
        assert done.returncode == (0 if name == "worker-db" else 1), (name, done.stderr)
        ran += 1
    assert ran == 2
    assert set(client.keys("*")) == before
