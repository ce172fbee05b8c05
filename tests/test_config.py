"""Configuration: every bad input is one line naming file, line, field and problem; exit 1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, maintd_cmd
from workers.config import parse_config
from workers.config.secrets import Secret, SecretUrl, mask_url
from workers.errors import ConfigError

GOOD = """\
[maintd]
host = "db1"

[broker]
url = "redis://:${T_REDIS_PW}@127.0.0.1:6379/0"

[results]
url = "postgresql://maintd:${T_PG_PW}@127.0.0.1/maintd"

[[postgres]]
name = "main"
dsn = "postgresql://clo_user:${T_PG_PW}@db1/clo_management"
window = "Sun 01:00-05:00"

[[sqlite]]
name = "assets"
path = "/opt/clo/assets.db"
host = "app1"

[[alerts]]
kind = "webhook"
url = "https://hooks.example.test/x"
secret_file = "hmac.key"

[schedule]
"maintd.noop" = "0 3 * * *"
"maintd.hold[main]" = "off"
"""


def run_check(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "maintd.toml"
    path.write_text(text)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("T_")}
    full_env.update(env or {})
    return subprocess.run(maintd_cmd("--config", str(path), "check-config"), capture_output=True, text=True,
                          cwd=ROOT, env=full_env, timeout=60)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_good_config_prints_targets_schedule_and_masks_secrets(tmp_path: Path) -> None:
    (tmp_path / "hmac.key").write_text("hmac-key-value\n")
    proc = run_check(tmp_path, GOOD, {"T_REDIS_PW": "redis-pw-123", "T_PG_PW": "pg-pw-456"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "main" in out and "assets" in out and "app1" in out
    assert "maintd.noop[main]" in out and "0 3 * * *" in out
    assert "maintd.hold[main]" not in out  # turned off for that target
    assert "db.low" in out  # the queue maintd.noop routes to
    for secret in ("redis-pw-123", "pg-pw-456", "hmac-key-value"):
        assert secret not in out + proc.stderr


def test_missing_file(tmp_path: Path) -> None:
    proc = subprocess.run(maintd_cmd("--config", str(tmp_path / "absent.toml"), "check-config"),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    line = one_error_line(proc)
    assert "absent.toml" in line and "not found" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[broker]\nurl = "redis://x"\n[[postgres]\nname = "a"\n', ["maintd.toml:3:", "TOML syntax error"]),
        ('[broker]\nurl = "redis://x"\nbogus = 1\n', ["maintd.toml:3:", "broker.bogus", "unknown key 'bogus'"]),
        ('[[postgres]]\nname = "a"\ndsn = "postgresql://x"\n[[redis]]\nname = "a"\nurl = "redis://x"\n',
         ["maintd.toml:5:", 'redis["a"].name', "duplicate target name 'a'"]),
        ('[[postgres]]\nname = "a"\ndsn = "postgresql://x"\nrole = "web"\n',
         ["maintd.toml:4:", 'postgres["a"].role', "'db' or 'app'"]),
        ('[tasks."maintd.noop"]\nimpact = "huge"\n',
         ["maintd.toml:2:", 'tasks."maintd.noop".impact', "'none', 'low', 'medium' or 'high'"]),
        ('[[postgres]]\nname = "a"\ndsn = "postgresql://x"\nwindow = "Sun 25:00-05:00"\n',
         ["maintd.toml:4:", 'postgres["a"].window', "malformed window", "out of range"]),
        ('[[postgres]]\nname = "a"\ndsn = "postgresql://x"\nwindow = "Funday 01:00-05:00"\n',
         ["maintd.toml:4:", "unknown day 'funday'"]),
        ('[schedule]\n"maintd.noop" = "0 2 * *"\n', ["maintd.toml:2:", 'schedule."maintd.noop"', "malformed cron"]),
        ('[schedule]\n"maintd.noop" = "0 25 * * *"\n', ["maintd.toml:2:", "malformed cron '0 25 * * *'"]),
        ('[schedule]\n"nope.task" = "0 2 * * *"\n', ["maintd.toml:2:", "unknown task 'nope.task'"]),
        ('[[postgres]]\nname = "a"\n', ["maintd.toml:1:", 'postgres["a"]', "missing required key 'dsn'"]),
        ('[[postgres]]\nname = "bad name"\ndsn = "postgresql://x"\n', ["maintd.toml:2:", "must be 1-63 letters"]),
        ('[[alerts]]\nkind = "pager"\n', ["alerts[0].kind", "'slack', 'webhook', 'email' or 'log'"]),
        ('[[certificates]]\nname = "c"\npath = "/x.pem"\n', ["certificates[\"c\"]", "needs 'host'"]),
        ('[store]\npath = "/b"\ncompression_tuning = { window_log = 28 }\n',
         ["maintd.toml:3:", "store.compression_tuning.window_log", "less than or equal to 27"]),
    ],
    ids=["toml-syntax", "unknown-key", "duplicate-name", "unknown-role", "unknown-impact", "window-range",
         "window-day", "cron-fields", "cron-range", "unknown-task", "missing-key", "bad-name", "unknown-channel",
         "cert-host", "zstd-window"],
)
def test_bad_input_is_one_line(tmp_path: Path, text: str, expected: list[str]) -> None:
    line = one_error_line(run_check(tmp_path, text))
    for part in expected:
        assert part in line, line


def test_missing_env_var_is_named_and_no_value_printed(tmp_path: Path) -> None:
    text = '[[postgres]]\nname = "a"\ndsn = "postgresql://u:${T_MISSING_PW}@x/db"\n'
    line = one_error_line(run_check(tmp_path, text, {"T_OTHER": "visible-value-xyz"}))
    assert "T_MISSING_PW" in line and "not set" in line and "maintd.toml:3:" in line
    # with the variable set, the value never shows
    proc = run_check(tmp_path, text, {"T_MISSING_PW": "s3cr3t-value-abc"})
    assert proc.returncode == 0, proc.stderr
    assert "s3cr3t-value-abc" not in proc.stdout + proc.stderr
    assert "u:***@x/db" in proc.stdout


def test_secret_file_and_both_forms_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("filepw\n")
    cfg = parse_config('[[redis]]\nname = "r"\nurl = "redis://x"\npassword_file = "pw"\n', base=tmp_path)
    assert cfg.redis[0].password is not None and cfg.redis[0].password.reveal() == "filepw"
    assert "filepw" not in repr(cfg)
    with pytest.raises(ConfigError, match="either 'password' or 'password_file'"):
        parse_config('[[redis]]\nname = "r"\nurl = "redis://x"\npassword = "a"\npassword_file = "pw"\n',
                     base=tmp_path)


def test_interpolation_default_and_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T_UNSET", raising=False)
    cfg = parse_config('[[http]]\nname = "h"\nurl = "http://${T_UNSET:-127.0.0.1}:8000/a$$b"\n')
    assert cfg.http[0].url.reveal() == "http://127.0.0.1:8000/a$b"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("host=h user=u password=pw dbname=d", "host=h user=u password=*** dbname=d"),
        ("postgresql://h/db?password=pw&sslmode=require", "postgresql://h/db?password=***&sslmode=require"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "pw" not in repr(SecretUrl(url)).replace("password", "")


def test_secret_repr_and_str() -> None:
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s) and f"{s}" == "***"
    assert s.reveal() == "hunter2"


def test_mask_secrets_masks_passwords_and_secrets_but_keeps_plain_urls() -> None:
    from workers.config.secrets import mask_secrets as scrub

    cfg = parse_config('[[postgres]]\nname = "a"\ndsn = "postgresql://u:hunter22@h/db"\n'
                       '[[postgres]]\nname = "b"\ndsn = "postgresql://postgres@127.0.0.1:1/maintd"\npassword = "pw-xyz-1"\n'
                       '[[alerts]]\nkind = "slack"\nurl = "https://hooks.slack.test/T1/B2/tok3n"\n')
    assert scrub("connect postgresql://u:hunter22@h/db: refused", cfg) == "connect postgresql://u:***@h/db: refused"
    assert scrub("auth hunter22 failed; pw-xyz-1", cfg) == "auth *** failed; ***"
    assert scrub("database postgresql://postgres@127.0.0.1:1/maintd", cfg) == \
        "database postgresql://postgres@127.0.0.1:1/maintd"  # nothing secret in it: left readable
    assert "tok3n" not in scrub("POST https://hooks.slack.test/T1/B2/tok3n: 500", cfg)
