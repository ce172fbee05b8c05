"""maintd maintains itself (issue 8, item 11): ``maintd.prune_history`` keeps 90 days (the newest
row and finding of each task and target whatever their age), alert deliveries too, and Celery's
result rows; ``release_deferred`` leaves a row only when it did something; healthchecks and
`maintd status` leave no pidbox keys; with a million history rows the status and overview
queries stay fast."""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from tests.conftest import ROOT, ConfigFactory, PgServer, RedisServer, maintd_cmd
from tests.test_postgres_support import ctx


def fresh_results(config: ConfigFactory, pg_server: PgServer, body: str = "") -> Any:
    """Point the config at a results database of its own (pruning deletes across all tasks)."""
    config.results_url = pg_server.dsn(pg_server.create_database("maintd_results"))
    config.write(body)
    from workers.records import records

    return records()


def add_run(book: Any, task: str, target: str | None, status: str, at: datetime, n: int = 0) -> int:
    return int(book.runs.record(task_id=f"{task}-{target}-{at:%s}-{n}", task=task, target=target, status=status,
                                summary=status, impact="none", host="h", worker="w/1", attempt=1, dry_run=False,
                                started_at=at, finished_at=at))


def test_prune_keeps_90_days_and_the_newest_per_task_and_target(config: ConfigFactory, pg_server: PgServer) -> None:
    book = fresh_results(config, pg_server, '[history]\nbatch_size = 100\n')
    now = datetime.now(UTC)
    old, older, recent = now - timedelta(days=100), now - timedelta(days=200), now - timedelta(days=5)
    kept: set[int] = set()
    for i in range(150):  # (health.postgres, main): old rows, and recent ones
        add_run(book, "health.postgres", "main", "ok", older + timedelta(minutes=i), i)
    kept |= {add_run(book, "health.postgres", "main", "critical", recent)}
    # (postgres.analyze, gone): nothing recent; its newest row is skipped, its newest finding older
    kept |= {add_run(book, "postgres.analyze", "gone", "ok", older)}
    add_run(book, "postgres.analyze", "gone", "ok", older - timedelta(days=1))
    kept |= {add_run(book, "postgres.analyze", "gone", "skipped", old)}
    kept |= {add_run(book, "health.overview", None, "ok", old)}  # a target-less task
    book.alerts.record_deliveries("health.postgres", "main", "critical", "problem", [
        _delivery("hook")])
    book.execute(lambda cur: cur.execute("UPDATE maintd_alert_deliveries SET at = %s", (old,)))
    book.alerts.record_deliveries("health.postgres", "main", "critical", "problem", [_delivery("hook")])
    book.alerts.record_deliveries("health.postgres", "main", "ok", "recovery", [_delivery("hook")])

    from tasks.core.maintd.history import prune

    plan = prune(ctx("maintd.prune_history", dry_run=True))
    assert plan.metrics["would_delete"]["maintd_runs"] == 151 and plan.status == "ok"
    assert len(book.runs.find(limit=1000)) == 155  # a plan deletes nothing
    result = prune(ctx("maintd.prune_history"))
    assert result.status == "ok" and result.metrics["deleted"]["maintd_runs"] == 151
    assert result.actions[0].startswith("DELETE FROM maintd_runs WHERE started_at < ")
    left = {r["id"] for r in book.runs.find(limit=1000)}
    assert left == kept
    latest = {(r["task"], r["target"]): r["status"] for r in book.runs.latest()}
    assert latest[("postgres.analyze", "gone")] == "ok" and latest[("health.postgres", "main")] == "critical"
    # the old problem delivery goes (a newer one of its task, target, channel and kind is there)
    assert result.metrics["deleted"]["maintd_alert_deliveries"] == 1
    again = prune(ctx("maintd.prune_history"))
    assert again.metrics["deleted"]["maintd_runs"] == 0


def _delivery(channel: str) -> Any:
    from workers.records.alerts import DeliveryRow

    return DeliveryRow(channel, "webhook", True, 1, None)


def test_prune_history_task_also_cleans_celery_results(config: ConfigFactory, target_db: str,
                                                       inprocess_worker: Any) -> None:
    """Through a worker, on the session's results database (the test process reads results
    there): Celery's result rows older than results_keep_days go."""
    config.write(f'[[postgres]]\nname = "main"\ndsn = "{target_db}"\n[history]\nresults_keep_days = 7\n')
    inprocess_worker(role="db")
    from tasks.maintd import noop, prune_history
    from workers.records import records

    ids = []
    for _ in range(3):  # one after another: concurrent ad hoc runs on one target skip on its lock
        ids.append(noop.delay("main"))
        assert ids[-1].get(timeout=30)["status"] == "ok"  # Celery stored its result

    def age(cur: Any) -> None:
        cur.execute("UPDATE celery_taskmeta SET date_done = date_done - interval '8 days' WHERE task_id = ANY(%s)",
                    ([r.id for r in ids],))

    def left(cur: Any) -> int:
        cur.execute("SELECT count(*) FROM celery_taskmeta WHERE task_id = ANY(%s)", ([r.id for r in ids],))
        return int(cur.fetchone()[0])

    records().execute(age)
    outcome = prune_history.delay().get(timeout=60)
    assert outcome["status"] == "ok"
    assert outcome["metrics"]["deleted"]["celery_taskmeta"] >= 3
    assert records().execute(left) == 0
    assert [r["status"] for r in records().runs.find(task_id=outcome["task_id"])] == ["ok"]


def test_release_deferred_records_a_row_only_when_it_released_something(config: ConfigFactory, target_db: str,
                                                                        inprocess_worker: Any) -> None:
    config.write(f'[[postgres]]\nname = "main"\ndsn = "{target_db}"\n')
    inprocess_worker(role="db")
    from tasks.maintd import release_deferred
    from workers.records import records

    release_deferred.delay().get(timeout=30)  # whatever earlier tests left due in the session's database
    idle = release_deferred.delay().get(timeout=30)
    assert idle["status"] == "ok" and idle["actions"] == []
    assert records().runs.find(task_id=idle["task_id"]) == []
    records().deferred.defer("maintd.noop", "main", {"dry_run": False}, datetime.now(UTC) - timedelta(seconds=1),
                             "test: due now")
    busy = release_deferred.delay().get(timeout=30)
    assert busy["actions"] == ["maintd.noop[main]"]
    assert [r["status"] for r in records().runs.find(task_id=busy["task_id"])] == ["ok"]


def test_runs_whose_host_is_gone_are_closed_lost(config: ConfigFactory, target_db: str) -> None:
    """A row still 'running' past its task's hard limit (+ margin) has no living worker: the
    every-minute release closes it, and alerts when nothing will run it again."""
    config.write(f'[[postgres]]\nname = "main"\ndsn = "{target_db}"\n'
                 '[tasks."maintd.hold"]\nrepeatable = false\nsoft_time_limit = 50\ntime_limit = 60\n')
    from tasks.core.maintd.release import release
    from tasks.maintd import STALE_MARGIN_S
    from workers.records import records

    book = records()
    now = datetime.now(UTC)
    gone = f"gone-{time.time_ns()}"
    fresh = f"fresh-{time.time_ns()}"
    book.runs.start(task_id=gone, task="maintd.hold", target="main", impact="high", host="db9", worker="db-slow@db9/7",
                    attempt=1, dry_run=False, started_at=now - timedelta(seconds=60 + STALE_MARGIN_S + 5))
    book.runs.start(task_id=fresh, task="maintd.hold", target="main", impact="high", host="db9",
                    worker="db-slow@db9/8", attempt=1, dry_run=False, started_at=now - timedelta(seconds=30))
    result = release(ctx("maintd.release_deferred"), lambda *a: None, {"maintd.hold": 60 + STALE_MARGIN_S}, 86400)
    assert result.actions == [f"closed maintd.hold[main] run {gone[:8]} on db-slow@db9/7 as lost"]
    assert book.runs.find(task_id=gone)[0]["status"] == "lost"
    assert book.runs.find(task_id=fresh)[0]["status"] == "running"
    book.runs.fail_running(fresh, "test cleanup")


def test_healthchecks_and_status_leave_no_pidbox_keys(config: ConfigFactory, target_db: str,
                                                      redis_server: RedisServer, start_worker: Any) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("worker-db", "worker-app"):
        test = " ".join(compose["services"][name]["healthcheck"]["test"])
        assert "maintd alive" in test and "inspect" not in test and "ping" not in test, test
    path = config.write(f'[[postgres]]\nname = "main"\ndsn = "{target_db}"\n')
    start_worker(role="db")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(maintd_cmd("--config", str(path), *args), capture_output=True, text=True, cwd=ROOT,
                              timeout=60)

    assert cli("alive", "db-fast@testhost", "db-slow@testhost").returncode == 0
    missing = cli("alive", "db-fast@testhost", "app-fast@nowhere")
    assert missing.returncode == 1 and missing.stderr.strip() == "maintd: not alive: app-fast@nowhere"
    status = cli("status", "--json")
    assert '"db-fast@testhost"' in status.stdout and '"db-slow@testhost"' in status.stdout
    client = redis_server.client()
    assert list(client.scan_iter(match="*reply.celery.pidbox*")) == []
    assert 0 < client.ttl("maintd:alive:db-fast@testhost") <= 30  # marks expire on their own


OLD_LATEST = ("SELECT DISTINCT ON (task, target) * FROM maintd_runs WHERE status NOT IN"
              " ('running', 'skipped', 'deferred', 'retrying', 'lost') AND task = ANY(%s)"
              " ORDER BY task, target, started_at DESC, id DESC")


def test_a_large_history_keeps_status_and_overview_on_the_index(config: ConfigFactory, pg_server: PgServer) -> None:
    """200,000 rows: the latest-per-pair query reads the index, never the table (no timing
    asserted here: ``bench/history.py`` measures it at 1 M rows against the old query)."""
    book = fresh_results(config, pg_server)
    from tasks.core.health.overview import CHECKS
    from workers.cli.views import status_document

    tasks = [*CHECKS, "postgres.analyze", "postgres.vacuum_bloated", "backup.postgres", "maintd.release_deferred"]

    def fill(cur: Any) -> None:
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET statement_timeout = 0")  # a bulk load on a shared machine may take a while
        cur.execute(
            "INSERT INTO maintd_runs (task_id, task, target, status, summary, impact, host, worker, attempt,"
            " started_at, finished_at, duration_s)"
            " SELECT 'bulk-' || g, (%s::text[])[1 + g %% %s], 'target-' || ((g / 10) %% 40),"
            " (ARRAY['ok','ok','ok','warning','critical','skipped','deferred','failed'])[1 + (g / 400) %% 8],"
            " 'generated', 'none', 'h', 'w/1', 1, now() - (g || ' seconds')::interval,"
            " now() - (g || ' seconds')::interval, 0.1 FROM generate_series(1, 200000) g", (tasks, len(tasks)))
        cur.execute("ANALYZE maintd_runs")

    book.execute(fill)

    rows = book.runs.latest(list(CHECKS))
    assert len({(r["task"], r["target"]) for r in rows}) == len(rows) == len(CHECKS) * 40
    newest = book.execute(lambda cur: (cur.execute(
        "SELECT DISTINCT ON (task, target) task, target, task_id FROM maintd_runs WHERE task = ANY(%s)"
        " AND status NOT IN ('running', 'skipped', 'deferred', 'retrying', 'lost')"
        " ORDER BY task, target, started_at DESC", (list(CHECKS),)), cur.fetchall())[1])
    assert {(r["task"], r["target"], r["task_id"]) for r in rows} == {tuple(r) for r in newest}
    assert status_document()  # maintd status reads the same history

    def explain(cur: Any) -> str:
        from workers.records.runs import RUN_COLUMNS, latest_per_pair_sql

        cur.execute("EXPLAIN " + latest_per_pair_sql(
            "status NOT IN ('running', 'skipped', 'deferred', 'retrying', 'lost')",
            ", ".join(f"r.{c}" for c in RUN_COLUMNS), True), {"tasks": list(CHECKS)})
        return "\n".join(r[0] for r in cur.fetchall())

    plan = book.execute(explain)
    assert "Seq Scan on maintd_runs" not in plan, plan


def test_a_deferral_whose_target_left_the_config_is_dropped_and_the_others_still_go(
        config: ConfigFactory, target_db: str) -> None:
    """An operator removed a target while one of its runs waited: the release drops that one
    (recorded ``skipped``, naming why) and still sends the others; before, the whole release
    failed every minute."""
    gone, kept = f"gone-{uuid.uuid4().hex[:6]}", f"kept-{uuid.uuid4().hex[:6]}"
    config.write(f'[[postgres]]\nname = "{kept}"\ndsn = "{target_db}"\n')
    from tasks.maintd import release_deferred
    from workers.records import records

    book = records()
    due = datetime.now(UTC) - timedelta(seconds=5)
    book.deferred.defer("maintd.noop", gone, {}, due, "pytest: window", origin="first-gone")
    book.deferred.defer("maintd.noop", kept, {}, due, "pytest: window", origin="first-kept")
    outcome = release_deferred.apply().get()
    assert outcome["status"] == "ok", outcome
    assert f"maintd.noop[{kept}]" in outcome["actions"]
    assert any(a.startswith(f"dropped maintd.noop[{gone}]: unknown postgres target '{gone}'")
               for a in outcome["actions"]), outcome["actions"]
    assert "dropped 1 no longer in the config" in outcome["summary"]
    assert [d for d in book.deferred.pending() if d["target"] in (gone, kept)] == []
    skipped = book.runs.find(task="maintd.noop", target=gone)
    assert [(r["status"], r["task_id"]) for r in skipped] == [("skipped", "first-gone")]
    assert skipped[0]["summary"].startswith("not released: unknown postgres target")
