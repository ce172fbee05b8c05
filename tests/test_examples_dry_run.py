"""Each runbook example, pointed at a temporary tree and this session's real services, runs
every task it schedules once in dry-run, in-process through the worker's own wrapper
(``maintenance_task``: gates, history, Outcome): none is unknown, none fails.

What is rewritten (``_Tree.rewrite``): PostgreSQL DSNs → a fresh test database holding the
tables the example names; Redis URLs → the session's Redis; HTTP URLs → a loopback server
answering every path with the JSON fields the examples expect; SQLite, log, tmp, audit,
files, store and report paths → a tmp tree with a few files; certificates → a fresh
self-signed PEM or a loopback TLS server; alert channels other than ``log`` dropped (a dry
run must not page anyone); secrets (``password*``, ``*_file``, ``${ENV}``) dropped.
Everything else (schedules, thresholds, windows, policies) is the example's own.
"""

from __future__ import annotations

import http.server
import json
import os
import sqlite3
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest

from tests.conftest import ROOT, ConfigFactory, PgServer, RedisServer
from tests.test_health_support import LOOPBACK, TlsServer, write_pair

EXAMPLES = ["agentic-ecosystem", "bse-data-optimization", "clo-management", "project-health"]
STATUSES = {"ok", "warning", "critical", "skipped", "deferred"}
# Where a dry run on this tree legitimately ends critical: no backup exists yet (a dry-run
# backup writes nothing), the shared test machine's load, the test Redis (noeviction, a low
# hit rate) checked as a cache, and what folds those (overview, weekly report).
MAY_BE_CRITICAL = {"backup.verify", "backup.restore_test", "health.host", "health.postgres", "health.redis",
                   "redis.stats", "health.overview", "reports.weekly", "reports.capacity"}
# Skipped for a reason of the test database: pg_stat_statements is not installed there.
MAY_BE_SKIPPED = {"postgres.slow_queries", "postgres.stats_reset"}
# Each runbook's procedures at its frequency (entry → cron), as the examples schedule them.
RUNBOOK: dict[str, dict[str, str]] = {
    "agentic-ecosystem": {  # 002's maintenance matrix
        "files.rotate_logs[maintenance-logs]": "0 * * * *", "postgres.vacuum_bloated[supabase]": "0 2 * * *",
        "files.audit_permissions[agentic-perms]": "0 3 * * *", "backup.verify[supabase]": "0 4 * * *",
        "postgres.reindex[supabase]": "0 1 * * 0", "postgres.stats[supabase]": "0 2 * * 0",
        "postgres.retention[supabase]": "0 3 * * 0", "backup.files[agentic-config]": "45 0 * * *",
        "health.metric[error_rate]": "0 2 * * *", "health.http[fn-gdpr-compliance]": "*/5 * * * *",
    },
    "bse-data-optimization": {  # 003: every 5 minutes, daily backups, the weekly script, monthly review
        "health.http[bse-api]": "*/5 * * * *", "health.host[bse1]": "*/5 * * * *",
        "redis.stats[bse-cache]": "*/15 * * * *", "backup.redis[bse-cache]": "35 0 * * *",
        "backup.files[bse-config]": "45 0 * * *", "backup.files[bse-app]": "0 3 * * 0",
        "files.rotate_logs[bse-logs]": "0 2 * * 0", "health.certificates[bse-tls]": "0 6 * * 1",
        "reports.weekly": "0 7 * * 1", "files.audit_permissions[bse-perms]": "0 4 1 * *",
    },
    "clo-management": {  # 000/001: daily 02:00, Sunday 03:00, monthly, weekly report Monday 09:00
        "backup.postgres[clo]": "0 2 * * *", "files.clean_tmp[clo-tmp]": "0 2 * * *",
        "files.rotate_logs[clo-app-logs]": "0 2 * * *", "sqlite.integrity[clo-assets]": "0 2 * * *",
        "backup.sqlite[clo-reference]": "0 3 * * 0", "sqlite.optimize[clo-model-config]": "30 3 * * 0",
        "postgres.vacuum_full[clo]": "0 4 * * 0", "postgres.retention[clo]": "0 1 * * 0",
        "backup.files[clo-config]": "0 4 1 * *", "files.audit_permissions[clo-perms]": "0 5 1 * *",
        "reports.weekly": "0 9 * * 1", "health.http[api]": "*/5 * * * *",
    },
    "project-health": {  # 004's cron table
        "health.certificates[health-tls]": "0 6 * * *", "files.rotate_logs[project-health-logs]": "15 6 * * *",
        "backup.verify[health-db]": "45 6 * * *", "reports.weekly": "0 2 * * 0",
        "files.audit_permissions[project-health-perms]": "30 2 * * 0", "backup.restore_test[health-db]": "0 3 * * 0",
        "sqlite.optimize[health-db]": "0 1 1 * *", "reports.capacity": "0 1 2 * *",
        "backup.files[project-health-config]": "45 0 * * *",
    },
}


def runbook_thresholds(example: str, cfg: Any) -> dict[str, tuple[Any, Any]]:
    """(configured, the runbook's) for the thresholds each runbook states."""
    if example == "agentic-ecosystem":  # 002: health score < 95 / < 90, error rate 2 % / 5 %
        rate = cfg.target("metrics", "error_rate")
        return {"score": ((cfg.health.score_warning, cfg.health.score_critical), (95, 90)),
                "error_rate": ((rate.warning, rate.critical), ("> 2", "> 5"))}
    if example == "bse-data-optimization":  # 003 KPIs
        return {"api_ms": (cfg.target("http", "bse-api").max_latency_ms, 500),
                "cpu": (cfg.thresholds.cpu_percent, (70, 85)), "memory": (cfg.thresholds.memory_percent, (80, 90)),
                "hit_rate": (cfg.thresholds.redis_hit_rate, (0.95, 0.90)),
                "cache_use": (cfg.target("redis", "bse-cache").use, "cache")}
    if example == "clo-management":  # 000/001: logrotate stanza, /tmp/clo-* after a day, 85/95 memory
        logs, tmp = cfg.target("logs", "clo-app-logs"), cfg.target("tmp", "clo-tmp")
        return {"rotate": ((logs.rotate, logs.delaycompress, logs.missingok, logs.notifempty), (30, True, True, True)),
                "tmp": ((tmp.pattern, tmp.older_than), ("clo-*", "1d")),
                "memory": (cfg.thresholds.memory_percent, (85, 95)), "retention_days": (cfg.retention.max_age_days, 30)}
    # 004: 500 MB database, 1 GB of logs, score < 80, security score < 80, 30-day log retention
    return {"db_mb": (cfg.target("sqlite", "health-db").max_size_mb, 500),
            "db_limit": (cfg.reports.sqlite_bytes_limit, 500e6), "logs": (cfg.target("logs", "project-health-logs")
                                                                         .max_dir_size, "1G"),
            "score": (cfg.health.score_warning, 80), "security": (cfg.target("audit", "project-health-perms").min_score, 80),
            "log_days": (cfg.target("logs", "project-health-logs").delete_after, "30d")}


OLD = 3 * 86400  # seconds: tmp files older than every example's older_than, rotated logs to expire

# What the examples' HTTP checks and JSON metrics read (003/004 /health, 000's overall_status,
# 002's error analytics): a healthy service.
HEALTHY = {"status": "healthy", "overall_status": "healthy",
           "result": {"error_rate": 0.4, "critical_errors_count": 0, "overall_health_percent": 98.5,
                      "avg_query_time": 42, "connection_pool_usage": 35, "avg_response_time": 180}}


class AnyPathJson:
    """A loopback HTTP server answering GET and POST on any path with ``HEALTHY``; it
    records what was asked (so the test sees the checks really went out)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append((self.command, self.path))
                data = json.dumps(HEALTHY).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer  # noqa: N815 (http.server's naming)
            do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def url(self, original: str) -> str:
        parts = urlsplit(original)
        return f"http://{LOOPBACK}:{self.port}{parts.path or '/'}{'?' + parts.query if parts.query else ''}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """Tables as ``[name]``, arrays of tables as ``[[name]]``; anything nested inline."""
    out: list[str] = []
    for key, value in data.items():
        rows = value if isinstance(value, list) else [value]
        for row in rows:
            out.append(f"[[{key}]]" if isinstance(value, list) else f"[{json.dumps(key)}]")
            out.extend(f"{json.dumps(k)} = {toml_value(v)}" for k, v in row.items())
            out.append("")
    return "\n".join(out)


class _Tree:
    """The temporary tree and services an example is pointed at."""

    def __init__(self, root: Path, pg: PgServer, redis_url: str, web: AnyPathJson, tls: TlsServer) -> None:
        self.root, self.pg, self.redis_url, self.web, self.tls = root, pg, redis_url, web, tls
        self.databases: list[str] = []

    def dir(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def postgres(self, target: dict[str, Any]) -> None:
        dsn = self.pg.dsn(self.pg.create_database("maintd_example"))
        self.databases.append(dsn)
        target["dsn"] = dsn
        for key in ("password", "password_file", "restore_dsn", "restore_password", "restore_password_file"):
            target.pop(key, None)
        # The application's tables the example names, so retention, ANALYZE and VACUUM FULL
        # find what they would find in production (empty).
        tables: dict[str, str] = {t: "created_at" for t in [*target.get("analyze_tables", []),
                                                            *target.get("vacuum_full_tables", [])]}
        for policy in target.get("retention", []):
            tables[policy["table"]] = policy["column"]
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        with conn, conn.cursor() as cur:
            for table, column in tables.items():
                cur.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (id bigserial PRIMARY KEY,'
                            f' "{column}" timestamptz NOT NULL DEFAULT now(), body text)')
                if column != "created_at":
                    cur.execute(f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now()')
                # half of the rows two years old: retention's dry run finds them, and must leave them
                cur.execute(f'INSERT INTO "{table}" ("{column}", body) SELECT now() - (g % 2) * interval \'730 days\','
                            f' md5(g::text) FROM generate_series(1, 50) g')
        conn.close()

    def sqlite(self, target: dict[str, Any]) -> None:
        path = self.dir("sqlite") / f"{target['name']}.db"
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT)")
            db.executemany("INSERT INTO items (body) VALUES (?)", [(f"row {i}",) for i in range(200)])
        db.close()
        target["path"] = str(path)

    def files_under(self, kind: str, name: str, names: list[str]) -> Path:
        base = self.dir(kind, name)
        for n in names:
            (base / n).write_text(f"{kind} {name} {n}\n" * 20)
            old = time.time() - OLD
            os.utime(base / n, (old, old))
        return base

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """(size, mode) of every file the targets own; maintd's own data and reports excluded."""
        out = {}
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            if rel.parts[0] in ("data", "reports", "store") or not path.is_file() or path.name.endswith(("-wal", "-shm")):
                continue
            st = path.stat()
            out[str(rel)] = (st.st_size, st.st_mode)
        return out

    def row_counts(self) -> dict[str, int]:
        counts = {}
        for dsn in self.databases:
            conn = psycopg2.connect(dsn)
            with conn, conn.cursor() as cur:
                cur.execute("SELECT relname FROM pg_stat_user_tables")
                for (table,) in cur.fetchall():
                    cur.execute(f'SELECT count(*) FROM "{table}"')
                    counts[f"{dsn.rsplit('/', 1)[1]}.{table}"] = int(cur.fetchone()[0])
            conn.close()
        return counts

    def rewrite(self, data: dict[str, Any]) -> dict[str, Any]:
        data.pop("flower", None)
        pinned = [t["host"] for kind in ("logs", "sqlite", "files", "tmp", "audit", "hosts") for t in data.get(kind, [])
                  if t.get("host")]
        data["maintd"] = {"host": data.get("maintd", {}).get("host") or pinned[0], "data_dir": str(self.dir("data"))}
        visibility = data.get("broker", {}).get("visibility_timeout", 21600)
        data["broker"] = {"url": self.redis_url, "visibility_timeout": visibility}
        data["results"] = {"url": self.results_url}
        if "store" in data:
            data["store"] = {"kind": "local", "path": str(self.dir("store"))}
        for target in data.get("postgres", []):
            self.postgres(target)
        for target in data.get("redis", []):
            target["url"] = self.redis_url
            target.pop("password", None)
            target.pop("password_file", None)
        for target in data.get("http", []):
            target["url"] = self.web.url(target["url"])
        for target in data.get("sqlite", []):
            self.sqlite(target)
        for target in data.get("hosts", []):
            if "mounts" in target:
                target["mounts"] = [str(self.root)]
        cert, _key = write_pair(self.dir("certs"), "example", 365)
        for target in data.get("certificates", []):
            if "path" in target:
                target["path"] = str(cert)
            else:
                target["address"] = self.tls.address
        for target in data.get("logs", []):
            target["path"] = str(self.files_under("logs", target["name"], ["app.log", "error.log"]))
            target.pop("pidfile", None)
        for target in data.get("files", []):
            target["paths"] = [str(self.files_under("files", target["name"], ["settings.yaml", ".env"]))]
        for target in data.get("tmp", []):
            target["path"] = str(self.files_under("tmp", target["name"], ["clo-export.csv", "other.txt"]))
        for target in data.get("audit", []):
            base = self.files_under("audit", target["name"], ["config.yaml", ".env"])
            target["paths"] = [str(base)]
            if target.get("secret_paths"):
                target["secret_paths"] = [str(base / ".env")]
        data["alerts"] = [a for a in data.get("alerts", []) if a.get("kind") == "log"]
        if "watchdog" in data:
            data["watchdog"].pop("ping_url", None)
            data["watchdog"].pop("ping_url_file", None)
        data.setdefault("reports", {})["dir"] = str(self.dir("reports"))
        if "incidents" in data:
            data["incidents"]["logs"] = [str(self.root / "logs" / "*" / "*.log")]
        return data

    results_url = ""


@pytest.fixture
def services(pg_server: PgServer, redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[AnyPathJson, TlsServer]]:
    web = AnyPathJson()
    cert, key = write_pair(tmp_path, "tls", 365)
    tls = TlsServer(cert, key)
    try:
        yield web, tls
    finally:
        web.close()
        tls.close()


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_scheduled_task_runs_once_in_dry_run(example: str, config: ConfigFactory, pg_server: PgServer,
                                                   redis_server: RedisServer, results_db: str, tmp_path: Path,
                                                   services: tuple[AnyPathJson, TlsServer],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    web, tls = services
    tree = _Tree(tmp_path / "tree", pg_server, redis_server.url, web, tls)
    tree.results_url = results_db
    source = ROOT / "ops" / "examples" / f"{example}.toml"
    config.path.write_text(dump_toml(tree.rewrite(tomllib.loads(source.read_text()))))
    from workers.config import reset_config

    reset_config()

    from workers.app import app
    from workers.catalog import load_catalog, resolve_target
    from workers.config import get_config
    from workers.schedule import expand

    cfg = get_config()
    specs = load_catalog()
    entries = expand(cfg)
    # The example's own schedule is all known tasks (or per-target keys of them), and each runs.
    for key in cfg.schedule:
        assert key.split("[")[0] in specs, f"{example}: [schedule] names unknown task {key!r}"
    crons = {e.name: e.cron for e in entries}
    for name, cron in RUNBOOK[example].items():
        assert crons.get(name) == cron, f"{example}: {name} runs at {crons.get(name)!r}, the runbook's is {cron!r}"
    assert cfg.store is not None and cfg.files and cfg.audit, f"{example}: a store, [[files]] and [[audit]]"
    for what, (configured, runbook) in runbook_thresholds(example, cfg).items():
        assert configured == runbook, f"{example}: {what} is {configured!r}, the runbook's {runbook!r}"

    before, rows_before = tree.snapshot(), tree.row_counts()
    assert before and all(rows_before.values()) if cfg.postgres else before
    seen: dict[str, str] = {}
    for entry in entries:
        spec = specs.get(entry.task)
        assert spec is not None and entry.task in app.tasks, f"{example}: {entry.name} is not a known task"
        target = resolve_target(spec, entry.target, cfg) if entry.target else None
        host = getattr(target, "pinned_host", None) or cfg.maintd.host
        monkeypatch.setenv("MAINTD_HOST", host)  # a host-pinned task runs on its host's worker
        result = app.tasks[entry.task].apply(args=(entry.target,) if entry.target else (),
                                              kwargs={"dry_run": True})
        assert result.state == "SUCCESS", f"{example}: {entry.name} {result.state}: {result.result}"
        outcome = result.result
        assert outcome["task"] == entry.task and outcome["target"] == entry.target, outcome
        assert outcome["dry_run"] is True, f"{example}: {entry.name} did not run as a dry run"
        assert outcome["status"] in STATUSES, f"{example}: {entry.name}: {outcome['status']}: {outcome['summary']}"
        assert outcome["summary"], f"{example}: {entry.name} has no summary"
        status = outcome["status"]
        assert status != "critical" or entry.task in MAY_BE_CRITICAL, f"{example}: {entry.name}: {outcome['summary']}"
        assert status != "skipped" or entry.task in MAY_BE_SKIPPED, f"{example}: {entry.name}: {outcome['summary']}"
        assert status != "deferred" or spec.windowed, f"{example}: {entry.name}: {outcome['summary']}"
        if entry.task == "health.metric":  # the loopback service answers healthy values
            assert status == "ok" and outcome["metrics"], f"{example}: {entry.name}: {outcome['summary']}"
        if entry.task in ("files.rotate_logs", "files.clean_tmp") or (
                entry.task == "postgres.retention" and getattr(target, "retention", None)):
            # There is work to do (old files, live logs, expired rows): the plan names it.
            assert outcome["actions"], f"{example}: {entry.name}: a dry run with work to do planned nothing: {outcome}"
        seen[entry.name] = outcome["status"]
        if outcome["status"] in ("critical", "skipped", "deferred"):
            print(f"  {entry.name}: {outcome['status']}: {outcome['summary'][:200]}")
    assert set(seen) == {e.name for e in entries}
    # A dry run changes nothing: every file of the targets as it was, every row still there.
    assert tree.snapshot() == before, f"{example}: a dry run changed the targets' files"
    assert tree.row_counts() == rows_before, f"{example}: a dry run changed rows"
    if cfg.http:
        assert web.requests, f"{example}: no HTTP check reached the loopback server"
    print(f"\n{example}: {len(seen)} entries:", json.dumps(seen, indent=1, sort_keys=True))
