"""files.rotate_logs as a Celery task: declared policy, `maintd tasks`, and one dry run and one
real run through a real worker (host-pinned queue, Outcome, run history)."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from tests.conftest import maintd_cmd
from workers.catalog import load_catalog


def test_declared_policy_and_listed() -> None:
    spec = load_catalog()["files.rotate_logs"]
    assert (spec.impact, spec.target_kind, spec.locks, spec.windowed, spec.repeatable) == ("low", "logs", True, False, False)
    out = subprocess.run(maintd_cmd("tasks"), capture_output=True, text=True, timeout=60).stdout
    assert any(line.startswith("files.rotate_logs ") and " logs " in line for line in out.splitlines())


@pytest.mark.slow
def test_rotate_logs_through_a_real_worker(config, start_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    logs = tmp_path / "applogs"
    logs.mkdir()
    (logs / "app.log").write_text("line\n" * 1000)
    (logs / "app.log.1.gz").write_bytes(gzip.compress(b"older\n"))
    config.write(f"""
        [[logs]]
        name = "applogs"
        host = "testhost"
        path = "{logs}"
        rotate = 5
    """)
    start_worker(role="app")
    from tasks import files
    from workers.records import records

    plan = files.rotate_logs.delay("applogs", dry_run=True).get(timeout=60)
    assert plan["status"] == "ok" and plan["dry_run"] is True, plan["summary"]
    assert plan["actions"] == [f"rename {logs}/app.log.1.gz -> {logs}/app.log.2.gz",
                               f"rotate {logs}/app.log -> {logs}/app.log.1 (create)",
                               f"compress {logs}/app.log.1 (gzip)"]
    assert sorted(p.name for p in logs.iterdir()) == ["app.log", "app.log.1.gz"]  # untouched

    done = files.rotate_logs.delay("applogs").get(timeout=60)
    assert done["status"] == "ok" and done["host"] == "testhost", done["summary"]
    assert sorted(p.name for p in logs.iterdir()) == ["app.log", "app.log.1.gz", "app.log.2.gz"]
    assert gzip.decompress((logs / "app.log.1.gz").read_bytes()) == b"line\n" * 1000
    assert done["metrics"]["rotated"] == 1 and done["metrics"]["compressed"] == 1

    runs = records().runs.find(task="files.rotate_logs", target="applogs", task_id=done["task_id"])
    assert len(runs) == 1 and runs[0]["status"] == "ok" and runs[0]["summary"] == done["summary"]
