"""The architecture holds (ARCHITECTURE.md): no import cycles, no import that climbs the
layers, Celery only in the wiring and the task modules, the domain and the config
importable without Celery, every module under 400 lines, and the records' schema
migrated in place without losing rows."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from tests import import_graph
from tests.conftest import PgServer

ROOT = import_graph.ROOT


def test_no_import_cycles_and_the_layers_are_kept() -> None:
    assert import_graph.problems() == []


def _copy_tree(dest: Path) -> Path:
    for package in import_graph.PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "beat_schedule.py", dest / "beat_schedule.py")
    return dest


def test_the_check_fails_on_a_deliberately_added_cycle(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    assert import_graph.problems(tree) == []
    # A function-local import is still an edge: session.py is imported by vacuum.py.
    session = tree / "tasks/core/postgres/session.py"
    session.write_text(session.read_text() + "\n\ndef _sneaky() -> None:\n"
                                             "    from tasks.core.postgres import vacuum  # noqa: F401\n")
    found = import_graph.problems(tree)
    assert any(p.startswith("import cycle:") and "tasks.core.postgres.session" in p
               and "tasks.core.postgres.vacuum" in p for p in found), found
    # And a config module reaching up into the Celery app is both a cycle and a layer breach.
    load = tree / "workers/config/load.py"
    load.write_text(load.read_text() + "\n\ndef _app() -> None:\n    from workers.app import app  # noqa: F401\n")
    found = import_graph.problems(tree)
    assert any("workers.config.load" in p and "workers.app" in p and p.startswith("import cycle:") for p in found)
    assert "import climbs the layers: workers.config.load (config) -> workers.app (celery wiring)" in found
    proc = subprocess.run([sys.executable, "-m", "tests.import_graph", str(tree)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "import cycle" in proc.stdout


def test_celery_is_imported_only_by_the_wiring_and_entry_points() -> None:
    importers = import_graph.celery_importers()
    allowed = {"workers.app", "workers.taskdef", "workers.dispatch", "workers.verdict", "workers.cli",
               "workers.processes.flower"}
    assert importers - allowed == set(), importers - allowed
    # `git grep "import celery\|from celery" tasks/` lists only task modules (today: none at all).
    in_tasks = {m for m in importers if m.startswith("tasks")}
    assert all(m.count(".") == 1 and not m.startswith("tasks.core") for m in in_tasks)


def test_domain_records_doors_and_config_load_without_celery_or_task_modules() -> None:
    modules = sorted(m for m in import_graph.source_files(ROOT)
                     if m.startswith(("tasks.core", "workers.config", "workers.records", "workers.doors",
                                      "workers.gates", "workers.catalog", "workers.schedule", "workers.routing",
                                      "workers.alerts")))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "from workers.config import parse_config\n"
        "parse_config('[[postgres]]\\nname = \"a\"\\ndsn = \"postgresql://x/y\"\\n[schedule]\\n\"x.y\" = \"0 1 * * *\"\\n')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu', 'billiard', 'flower')"
        " or m in ('tasks.health', 'tasks.postgres', 'tasks.backup', 'tasks.maintd', 'workers.app',"
        " 'workers.taskdef') or m.startswith(('workers.processes', 'workers.cli')))\n"
        "print(bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_the_domain_never_imports_process_supervision_or_the_celery_layer() -> None:
    edges = import_graph.graph()
    for module, targets in edges.items():
        if module.startswith("tasks.core"):
            bad = {t for t in targets if t.startswith(("workers.processes", "workers.cli", "workers.app",
                                                       "workers.taskdef", "workers.dispatch", "workers.gates"))
                   or (t.startswith("tasks.") and not t.startswith("tasks.core"))}
            assert not bad, f"{module} imports {bad}"


def test_every_module_alone_in_a_fresh_interpreter() -> None:
    """A cycle hidden by import order shows up as an ImportError when a module is imported first."""
    modules = sorted(m for m in import_graph.source_files(ROOT) if not m.endswith("__main__"))
    code = (
        "import subprocess, sys\n"
        f"mods = {modules!r}\n"
        "procs = [(m, subprocess.Popen([sys.executable, '-c', f'import {m}'], stderr=subprocess.PIPE)) for m in mods]\n"
        "bad = [(m, p.communicate()[1].decode()[-300:]) for m, p in procs if p.wait() != 0]\n"
        "print(bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_no_module_over_400_lines() -> None:
    long = {m: n for m, p in import_graph.source_files(ROOT).items()
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


OLD_SCHEMA = """
CREATE TABLE maintd_runs (id bigserial PRIMARY KEY, task_id text NOT NULL, task text NOT NULL, target text,
    status text NOT NULL, summary text NOT NULL DEFAULT '', metrics jsonb NOT NULL DEFAULT '{}',
    actions jsonb NOT NULL DEFAULT '[]', dry_run boolean NOT NULL DEFAULT false, impact text NOT NULL,
    host text NOT NULL, worker text NOT NULL, attempt integer NOT NULL DEFAULT 1, error text,
    started_at timestamptz NOT NULL, finished_at timestamptz, duration_s double precision);
INSERT INTO maintd_runs (task_id, task, target, status, impact, host, worker, started_at)
VALUES ('old-1', 'health.postgres', 'main', 'ok', 'none', 'db1', 'w', now() - interval '3 days');
"""


def test_migration_adopts_an_existing_results_database_and_keeps_its_rows(pg_server: PgServer) -> None:
    from workers.records import Records
    from workers.records.schema import LATEST

    dsn = pg_server.dsn(pg_server.create_database("maintd_migrate"))
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:  # a database from before migrations
        cur.execute(OLD_SCHEMA)
    book = Records(dsn)
    try:
        assert [r["task_id"] for r in book.runs.find(task="health.postgres")] == ["old-1"]
        versions = book.execute(lambda cur: (cur.execute("SELECT version FROM maintd_schema ORDER BY 1"),
                                             [r[0] for r in cur.fetchall()])[1])
        assert versions == list(range(1, LATEST + 1))
        assert book.deferred.pending() == []  # the tables it lacked were created
    finally:
        book.close()
    again = Records(dsn)  # a second start applies nothing and loses nothing
    try:
        assert len(again.runs.find(task="health.postgres")) == 1
    finally:
        again.close()


@pytest.mark.parametrize("status", ["ok", "warning"])
def test_only_a_deferred_result_carries_not_before(status: str) -> None:
    from datetime import UTC, datetime

    from workers.records.outcome import Result

    with pytest.raises(ValueError, match="only a deferred result"):
        Result(status, "x", not_before=datetime.now(UTC))
    assert Result("deferred", "x", not_before=datetime.now(UTC)).not_before is not None
