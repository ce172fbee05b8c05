"""files.rotate_logs and files.audit_permissions report progress through the run's meter
(the same path that becomes Celery's PROGRESS state in a worker: tests/test_progress.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.core.files import audit, rotate
from workers.config import AuditTarget, LogsTarget
from workers.records.outcome import RunContext, active
from workers.records.progress import ProgressMeter


def _run(task: str, published: list[dict[str, Any]]) -> RunContext:
    run = RunContext(task=task, task_id="t-1", target="x", impact="low", host="testhost",
                     worker="w/1", attempt=1, dry_run=False, config=None,  # type: ignore[arg-type]
                     started_at=datetime.now(UTC), soft_deadline_s=600)
    run.meter = ProgressMeter(published.append, interval_s=0.0)  # every report, to see them all
    return run


def test_rotate_logs_reports_steps_done_of_total(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"app{i}.log").write_text("a line\n" * 1000)
    target = LogsTarget(name="app", host="h1", path=tmp_path, pattern="*.log", rotate=3, compress="gzip")
    published: list[dict[str, Any]] = []
    with active(_run("files.rotate_logs", published)):
        result = rotate.run(target, datetime.now(UTC).astimezone())
    assert result.status == "ok", result.summary
    assert published, "no progress reported"
    assert all(m["unit"] == "files" and m["total"] >= m["done"] for m in published)
    assert [m["done"] for m in published] == sorted(m["done"] for m in published)  # never goes back
    assert {"compress"} <= {m["step"] for m in published}
    assert published[-1]["done"] >= 6  # three rotations and three compressions at least


def test_audit_permissions_reports_entries_scanned(tmp_path: Path) -> None:
    for d in range(5):
        sub = tmp_path / f"d{d}"
        sub.mkdir()
        for f in range(20):
            (sub / f"f{f}").write_text("x")
    published: list[dict[str, Any]] = []
    with active(_run("files.audit_permissions", published)):
        result = audit.audit(AuditTarget(name="app", host="h1", paths=[tmp_path]), dry_run=False)
    assert result.metrics["scanned"] >= 105
    scans = [m for m in published if m["step"] == "scan"]
    assert scans and all(m["unit"] == "files" and m["total"] is None for m in scans)
    assert [m["done"] for m in scans] == sorted(m["done"] for m in scans) and scans[-1]["done"] > 0
