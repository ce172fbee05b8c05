"""Bad input that used to get through (issue 8, item 12): each is one clear line at
`check-config`, or now simply works, on real services."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tasks.core.postgres import retention
from tests.conftest import ROOT, ConfigFactory, maintd_cmd
from tests.test_postgres_support import ctx, pg_block, scalar, session, target_of
from workers.config import parse_config
from workers.config.secrets import mask_secrets, mask_url


def check(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "maintd.toml"
    path.write_text(text)
    return subprocess.run(maintd_cmd("--config", str(path), "check-config"), capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=60)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


PG = '[[postgres]]\nname = "main"\ndsn = "postgresql://u@db1/clo"\n'


@pytest.mark.parametrize(("text", "expected"), [
    (PG + '[[postgres.retention]]\ntable = "audit_logs"\ncolumn = "ts"\nolder_than = "365d"\n'
          'archive_table = "public.audit_logs"\n',
     "maintd.toml:8: postgres[\"main\"].retention[0].archive_table: archive_table 'public.audit_logs' is the table"
     " itself"),
    ('[tasks."health.postgres"]\nsoft_time_limit = 40\ntime_limit = 40\n',
     'maintd.toml:3: tasks."health.postgres".time_limit: soft_time_limit (40s) must be below time_limit (40s)'),
    ('[tasks."health.postgres"]\nsoft_time_limit = 90\n',  # above the task's own hard limit (75 s)
     'maintd.toml:2: tasks."health.postgres".soft_time_limit: soft_time_limit (90s) must be below time_limit (75s)'),
    ('[tasks."backup.restore"]\nrepeatable = true\n',
     'maintd.toml:2: tasks."backup.restore".repeatable: backup.restore is never repeatable'),
    (PG + '[retention]\nincomplete_after = "2h"\n',
     "maintd.toml:5: retention.incomplete_after: 2h is not longer than backup.postgres's hard time limit (11100s)"),
])
def test_refused_at_check_config_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    line = one_line(check(tmp_path, text))
    assert line.startswith(f"maintd: error: {tmp_path}/{expected}"), line


def test_incomplete_after_checked_against_overridden_limits(tmp_path: Path) -> None:
    ok = check(tmp_path, PG + '[retention]\nincomplete_after = "2h"\n'
                         '[tasks."backup.postgres"]\nsoft_time_limit = 3000\ntime_limit = 3600\n')
    assert ok.returncode == 0, ok.stderr


def test_retention_where_with_percent_runs(config: ConfigFactory, target_db: str) -> None:
    with session(target_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE jobs (id bigint PRIMARY KEY, ts timestamptz NOT NULL, name text)")
        cur.execute("INSERT INTO jobs SELECT g, now() - interval '400 days',"
                    " CASE WHEN g % 2 = 0 THEN 'tmp_' || g ELSE 'keep_' || g END FROM generate_series(1, 200) g")
        cur.execute("INSERT INTO jobs SELECT g, now(), 'tmp_' || g FROM generate_series(201, 210) g")  # fresh: kept
    target = target_of(config, pg_block(target_db, extra='[[postgres.retention]]\ntable = "jobs"\ncolumn = "ts"\n'
                                                         'older_than = "365d"\nwhere = "name LIKE \'tmp%\'"\n'))
    plan = retention.retention(ctx("postgres.retention", dry_run=True), target)
    assert plan.metrics["deleted"] == 100 and "LIKE 'tmp%'" in plan.actions[0]
    result = retention.retention(ctx("postgres.retention"), target)
    assert result.status == "ok", result.summary
    assert scalar(target_db, "SELECT count(*) FROM jobs") == 110
    assert scalar(target_db, "SELECT count(*) FROM jobs WHERE name LIKE 'tmp%'") == 10


@pytest.mark.parametrize(("url", "masked"), [
    ("https://api.example.test/v1?access_token=abc123&page=2", "https://api.example.test/v1?access_token=***&page=2"),
    ("https://x.test/h?apikey=k1&api_key=k2&key=k3", "https://x.test/h?apikey=***&api_key=***&key=***"),
    ("https://s3.test/b/o?X-Amz-Signature=f00&X-Amz-Credential=AK%2F1&X-Amz-Date=1",
     "https://s3.test/b/o?X-Amz-Signature=***&X-Amz-Credential=***&X-Amz-Date=1"),
    ("https://blob.test/c?sv=2020&sig=Zm9v&se=1", "https://blob.test/c?sv=2020&sig=***&se=1"),
    ("https://h.test/p?auth=a&credential=c&client_secret=s&refresh_token=r&q=plain",
     "https://h.test/p?auth=***&credential=***&client_secret=***&refresh_token=***&q=plain"),
    ("https://h.test/p?password=p&token=t", "https://h.test/p?password=***&token=***"),
])
def test_mask_url_masks_every_credential_query_key(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_secrets_masks_credential_query_keys_in_any_text() -> None:
    text = "GET https://hooks.test/x?sig=Zm9vYmFy&n=1 failed; retry https://api.test/?access_token=t0k3n"
    assert mask_secrets(text) == "GET https://hooks.test/x?sig=***&n=1 failed; retry https://api.test/?access_token=***"


def test_env_values_are_percent_encoded_into_urls(config: ConfigFactory, target_db: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A password with '@', '#', '/' and ':' taken from ${VAR} cannot change the host: it is
    percent-encoded into the URL's user info, and the connection reaches the right server."""
    password = "p@ss#w/rd:1?x"
    monkeypatch.setenv("T_PG_PW", password)
    monkeypatch.setenv("T_DB", target_db.rsplit("/", 1)[1])
    parts = urlsplit(target_db)
    dsn = f"postgresql://postgres:${{T_PG_PW}}@{parts.hostname}:{parts.port or 5432}/${{T_DB}}"
    cfg = parse_config(f'[[postgres]]\nname = "main"\ndsn = "{dsn}"\n'
                       '[[redis]]\nname = "cache"\nurl = "redis://:${T_PG_PW}@127.0.0.1:6379/1"\n')
    pg = urlsplit(cfg.postgres[0].dsn.reveal())
    assert (pg.hostname, unquote(pg.password or "")) == (parts.hostname, password)
    rd = urlsplit(cfg.redis[0].url.reveal())
    assert (rd.hostname, rd.port, rd.path, unquote(rd.password or "")) == ("127.0.0.1", 6379, "/1", password)
    assert password not in str(cfg.postgres[0].dsn) and "%40" not in str(cfg.postgres[0].dsn)  # masked
    assert mask_secrets(f"error near {password}", cfg) == "error near ***"
    # a whole URL in one variable is used as given
    monkeypatch.setenv("T_URL", "redis://127.0.0.1:6379/3")
    assert parse_config('[[redis]]\nname = "r"\nurl = "${T_URL}"\n').redis[0].url.reveal() == "redis://127.0.0.1:6379/3"
    # and the server is really reached (trust auth here: the password is sent, not needed)
    target = target_of(config, f'[[postgres]]\nname = "main"\ndsn = "{dsn}"\nconnect_timeout_s = 3\n')
    from tasks.core.health.postgres import check as pg_check

    result = pg_check(target, parse_config("").thresholds)
    assert result.status in ("ok", "warning"), result.summary


def test_long_queries_leave_maintds_own_sessions_out(config: ConfigFactory, target_db: str) -> None:
    from tasks.core.postgres.long_queries import long_queries

    target = target_of(config, pg_block(target_db) + "[thresholds]\npg_long_transaction_s = [1, 2]\n")
    with session(target_db, application_name="maintd:backup.postgres") as ours, ours.cursor() as cur:
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        cur.execute("SELECT pg_export_snapshot()")  # the nightly backup's snapshot transaction
        time.sleep(2.5)
        result = long_queries(ctx("postgres.long_queries"), target)
        assert result.status == "ok", result.summary
        assert "maintd's own, not graded: 1" in result.summary
        assert [s["application"] for s in result.metrics["maintd_sessions"]] == ["maintd:backup.postgres"]
        with session(target_db, application_name="reporting") as app, app.cursor() as acur:
            acur.execute("BEGIN")
            acur.execute("SELECT 1")
            time.sleep(2.5)
            result = long_queries(ctx("postgres.long_queries"), target)
            assert result.status == "critical" and "reporting" in result.summary
            assert [s["application"] for s in result.metrics["sessions"]] == ["reporting"]
        cur.execute("ROLLBACK")
