"""Backups with zstd's advanced parameters (``[store] compression_tuning``, issue 11 item 7)
still restore with stock tools (``zstd -d | pg_restore``), and report their progress in bytes
through the run's progress (issue 11 item 3) — in process, no worker needed."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.core.backup import drill, postgres
from tasks.core.backup.coordinate import Compression
from tasks.core.backup.inventory import list_backups
from tasks.core.backup.local import LocalStore
from tests.test_backup_support import data_files, fill_orders
from workers.config import PostgresTarget, StoreSection
from workers.doors.pgtools import pg_bin
from workers.records.outcome import RunContext, active
from workers.records.progress import ProgressMeter

# The "no larger than pg_dump -Fc" setting documented in ops/runbooks/backup.postgres.md.
SMALL = StoreSection(path=Path("/unused"), compression_level=6,
                     compression_tuning={"min_match": 7, "search_log": 1, "chain_log": 14, "hash_log": 16})


def _run(published: list[dict[str, Any]]) -> RunContext:
    run = RunContext(task="backup.postgres", task_id="t-1", target="main", impact="low", host="testhost",
                     worker="w/1", attempt=1, dry_run=False, config=None,  # type: ignore[arg-type]
                     started_at=datetime.now(UTC), soft_deadline_s=600)
    run.meter = ProgressMeter(published.append, interval_s=0.0)  # every report, to see them all
    return run


def test_tuned_backup_restores_with_stock_zstd_and_reports_bytes(target_db: str, tmp_path: Path) -> None:
    fill_orders(target_db, 5000)
    target = PostgresTarget(name="main", dsn=target_db)
    store = LocalStore(tmp_path / "store")
    compression = Compression.of(SMALL)
    assert compression.tuning == (("chain_log", 14), ("hash_log", 16), ("min_match", 7), ("search_log", 1))
    published: list[dict[str, Any]] = []
    with active(_run(published)):
        result = postgres.backup(target, store, host="testhost", task_id="t-1", compression=compression,
                                 timeout_s=120)
    assert result.status == "ok", result.summary
    [record] = list_backups(store, "postgres", "main")
    assert record.manifest is not None
    assert record.manifest.tools["compression"] == "zstd level 6, chain_log 14, hash_log 16, min_match 7, search_log 1, 2 threads"
    # bytes streamed, growing, ending at the raw size; a dump's total is not known beforehand
    streamed = [m for m in published if m["step"].startswith("back up data.dump")]
    assert streamed and all(m["unit"] == "bytes" and m["total"] is None for m in streamed)
    assert streamed[-1]["done"] == result.metrics["raw_bytes"]

    # stock zstd (no --long) and pg_restore read it
    zstd = shutil.which("zstd")
    if zstd is None:
        pytest.skip("no zstd binary on PATH")
    [dump] = data_files(tmp_path / "store", "data.dump.zst")
    plain = tmp_path / "data.dump"
    subprocess.run([zstd, "-d", "-q", "-o", str(plain), str(dump)], check=True, timeout=60)
    listing = subprocess.run([str(pg_bin("pg_restore")), "--list", str(plain)], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    assert "TABLE DATA public orders" in listing

    # the restore test reads it back with the total known: a percentage and an ETA
    published.clear()
    with active(_run(published)):
        tested = drill.restore_test(store, target, now=datetime.now(UTC), timeout_s=300)
    assert tested.status == "ok", tested.summary
    reads = [m for m in published if m["step"].startswith("read ") and m["unit"] == "bytes"]
    assert reads and reads[-1]["total"] == result.metrics["raw_bytes"] and reads[-1]["pct"] == 100.0
