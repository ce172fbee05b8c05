"""Verification repeated (issue 8.5), on a real PostgreSQL, a directory store and moto's S3
server: a backup verified once and corrupted afterwards is found (by its size at once, by a
re-hash when due; the newest on every run), loses its verified status at once, and prune
then keeps the last backup that is still good."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tasks.core.backup import postgres, prune, verify
from tasks.core.backup.coordinate import Compression
from tasks.core.backup.inventory import BackupRecord, list_backups
from tasks.core.backup.layout import BackupRef
from tasks.core.backup.local import LocalStore
from tasks.core.backup.manifest import BackupManifest, Check, Verification
from tasks.core.backup.store import BackupStore
from tasks.core.backup.stores import open_store
from tests.conftest import ROOT, ConfigFactory, maintd_cmd
from tests.test_backup_support import MotoS3, fill_orders, flip_byte, local_store_toml
from workers.config import PostgresTarget

# max_backup_age is long here: the tests move "now" forward by days to make checks due
LONG = verify.Freshness(timedelta(days=60), timedelta(days=60), reverify_after=timedelta(days=7))


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def orders_db(target_db: str) -> str:
    fill_orders(target_db, 3000)
    return target_db


def backups(store: BackupStore, n: int, target: PostgresTarget) -> list[str]:
    """``n`` new backups; their ids oldest first, as the store orders them (ids made in the
    same second sort by their random part)."""
    for _ in range(n):
        postgres.backup(target, store, host="testhost", task_id="t-1", compression=Compression(1, 2), timeout_s=120)
    return [r.ref.backup_id for r in list_backups(store, "postgres", "main")][-n:]


def record_of(store: BackupStore, backup_id: str) -> BackupRecord:
    return next(r for r in list_backups(store, "postgres", "main") if r.ref.backup_id == backup_id)


def object_path(root: Path, store: BackupStore, backup_id: str) -> Path:
    return root / record_of(store, backup_id).ref.key(postgres.OBJECT)


def test_verified_backup_corrupted_later_is_found_and_loses_its_status_local(orders_db: str, tmp_path: Path) -> None:
    target = PostgresTarget(name="main", dsn=orders_db)
    root = tmp_path / "store"
    store = LocalStore(root)
    b1, b2, b3 = backups(store, 3, target)
    t0 = now()
    first = verify.verify(store, target, LONG, now=t0, timeout_s=120)
    assert first.status == "ok" and first.metrics["verified_now"] == [b3, b1, b2], first
    assert all(record_of(store, b).verification.verified for b in (b1, b2, b3))

    # Bit rot in the newest (same size: only a re-hash sees it). The newest is re-hashed every run.
    flip_byte(object_path(root, store, b3))
    found = verify.verify(store, target, LONG, now=t0 + timedelta(hours=1), timeout_s=120)
    assert found.status == "critical" and f"{b3}/data.dump.zst: checksum mismatch" in found.summary, found
    assert found.metrics["verified_now"] == [b3]  # the others are not due yet
    assert not record_of(store, b3).verification.verified and record_of(store, b3).verification.corrupt
    plan = prune.apply(store, "postgres", "main", prune.Policy(), now=t0, dry_run=True)
    assert any(b3 in a and "corrupt" in a for a in plan.actions), plan.actions
    assert plan.metrics["kept_reasons"][b2] == "newest verified backup"

    # Bit rot in the oldest: unseen until its check is older than reverify_after, then found.
    flip_byte(object_path(root, store, b1))
    quiet = verify.verify(store, target, LONG, now=t0 + timedelta(days=1), timeout_s=120)
    assert b1 not in quiet.summary and quiet.metrics["verified_now"] == []  # newest is corrupt: not re-read
    assert record_of(store, b1).verification.verified
    due = verify.verify(store, target, LONG, now=t0 + timedelta(days=8), timeout_s=120)
    assert due.metrics["verified_now"] == [b1, b2], due.metrics
    assert f"{b1}/data.dump.zst: checksum mismatch" in due.summary and due.status == "critical"
    assert not record_of(store, b1).verification.verified
    assert record_of(store, b2).verification.verified  # the good one stays verified
    plan = prune.apply(store, "postgres", "main", prune.Policy(), now=t0 + timedelta(days=8), dry_run=True)
    assert plan.metrics["kept_reasons"] == {b2: "newest verified backup"}, plan.metrics


def test_truncated_object_is_found_by_size_on_every_run_and_full_rechecks_all(orders_db: str,
                                                                                tmp_path: Path) -> None:
    target = PostgresTarget(name="main", dsn=orders_db)
    root = tmp_path / "store"
    store = LocalStore(root)
    b1, b2, b3 = backups(store, 3, target)
    t0 = now()
    assert verify.verify(store, target, LONG, now=t0, timeout_s=120).status == "ok"
    path = object_path(root, store, b1)
    path.write_bytes(path.read_bytes()[:-100])  # a torn copy: shorter than the manifest says
    cheap = verify.verify(store, target, LONG, now=t0 + timedelta(minutes=5), timeout_s=120)
    assert cheap.metrics["verified_now"] == [b3]  # b1 not re-read, yet found by its listed size
    assert cheap.status == "critical" and "truncated or replaced" in cheap.summary and b1 in cheap.summary
    assert record_of(store, b1).verification.corrupt

    flip_byte(object_path(root, store, b2))  # not due for a week, but full=true re-checks every backup
    t1 = t0 + timedelta(minutes=10)
    plan = verify.verify(store, target, LONG, now=t1, timeout_s=120, full=True, dry_run=True)
    assert [a for a in plan.actions if a.startswith("would verify")] == [
        f"would verify {record_of(store, b3).ref.dir} (last checked {(t0 + timedelta(minutes=5)).isoformat()})",
        f"would verify {record_of(store, b2).ref.dir} (last checked {t0.isoformat()})"]  # b1: its size said it all
    assert record_of(store, b2).verification.verified  # a dry run writes nothing
    daily = verify.verify(store, target, LONG, now=t1, timeout_s=120)
    assert b2 not in daily.summary and daily.metrics["verified_now"] == [b3]
    full = verify.verify(store, target, LONG, now=t1, timeout_s=120, full=True)
    assert full.status == "critical" and f"{b2}/data.dump.zst: checksum mismatch" in full.summary
    assert full.metrics["verified_now"] == [b3, b2] and full.metrics["verified"] == 1 and full.metrics["corrupt"] == 2


def test_s3_object_rewritten_after_verify_is_found(orders_db: str, scratch_root: Path) -> None:
    s3 = MotoS3(scratch_root / "moto")
    try:
        bucket = s3.bucket()
        store = open_store(s3.section(bucket, part_size_mb=5))
        target = PostgresTarget(name="main", dsn=orders_db)
        b1, b2 = backups(store, 2, target)
        t0 = now()
        assert verify.verify(store, target, LONG, now=t0, timeout_s=120).status == "ok"
        client = s3.client()

        def rewrite(backup_id: str, change: Any) -> None:
            key = "prod/" + record_of(store, backup_id).ref.key(postgres.OBJECT)
            body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            client.put_object(Bucket=bucket, Key=key, Body=bytes(change(body)))

        def flip(body: bytearray) -> bytearray:
            body[len(body) // 2] ^= 0xFF
            return body

        rewrite(b2, flip)  # same size: the newest's re-hash finds it
        rewrite(b1, lambda body: body[: len(body) // 2])  # shorter: the listing finds it
        result = verify.verify(store, target, LONG, now=t0 + timedelta(hours=1), timeout_s=120)
        assert result.status == "critical", result
        assert f"{b2}/data.dump.zst: checksum mismatch" in result.summary
        assert f"{b1}/data.dump.zst" in result.summary and "truncated or replaced" in result.summary
        assert result.metrics["verified_now"] == [b2] and result.metrics["verified"] == 0
        assert not record_of(store, b1).verification.verified and not record_of(store, b2).verification.verified
        plan = prune.apply(store, "postgres", "main", prune.Policy(), now=t0, dry_run=True)
        assert plan.metrics["kept"] == 0 and plan.metrics["deleted"] == 2  # both known bad: none is "good"
    finally:
        s3.stop()


def test_time_budget_checks_the_newest_first_and_names_what_is_left(orders_db: str, tmp_path: Path) -> None:
    target = PostgresTarget(name="main", dsn=orders_db)
    store = LocalStore(tmp_path / "store")
    b1, b2, b3 = backups(store, 3, target)
    t0 = now()
    verify.verify(store, target, LONG, now=t0, timeout_s=120)
    later = t0 + timedelta(days=8)
    spent = verify.verify(store, target, LONG, now=later, timeout_s=0)  # no budget: the newest still goes
    assert spent.metrics["verified_now"] == [b3] and spent.metrics["pending"] == [b1, b2], spent.metrics
    assert spent.status == "ok" and any("left for the next run" in a for a in spent.actions)
    rest = verify.verify(store, target, LONG, now=later + timedelta(minutes=1), timeout_s=120)
    assert rest.metrics["verified_now"] == [b3, b1, b2] and rest.metrics["pending"] == []
    overdue = verify.verify(store, target, LONG, now=later + timedelta(days=15), timeout_s=0)
    assert overdue.status == "warning" and "not re-checked within" in overdue.summary, overdue


def _record(backup_id: str, checked: datetime | None, corrupt: bool = False) -> BackupRecord:
    ref = BackupRef("postgres", "main", backup_id)
    state = Verification(Check(checked, not corrupt) if checked else None)
    return BackupRecord(ref, [], BackupManifest(ref, ref.started_at, status="complete"), state)


def test_recheck_order_is_newest_then_oldest_check_first() -> None:
    t = datetime(2026, 3, 1, tzinfo=UTC)
    records = [_record("20260201T010000Z-aaaaaa", t - timedelta(days=9)),
               _record("20260202T010000Z-bbbbbb", t - timedelta(days=20)),
               _record("20260203T010000Z-cccccc", None),
               _record("20260204T010000Z-dddddd", t - timedelta(days=1)),  # not due
               _record("20260205T010000Z-eeeeee", t - timedelta(days=30), corrupt=True),  # known bad
               _record("20260206T010000Z-ffffff", t - timedelta(hours=2))]  # newest: always
    order = [r.ref.backup_id[-6:] for r in verify.due_for_recheck(records, t, timedelta(days=7))]
    assert order == ["ffffff", "cccccc", "bbbbbb", "aaaaaa"]
    full = [r.ref.backup_id[-6:] for r in verify.due_for_recheck(records, t, timedelta(days=7), full=True)]
    assert full == ["ffffff", "cccccc", "eeeeee", "bbbbbb", "aaaaaa", "dddddd"]


def test_cli_full_recheck_through_a_worker(config: ConfigFactory, orders_db: str, tmp_path: Path,
                                           inprocess_worker: Any) -> None:
    root = tmp_path / "store"
    config.write(local_store_toml(root) + f'[[postgres]]\nname = "main"\ndsn = "{orders_db}"\n')
    target = PostgresTarget(name="main", dsn=orders_db)
    store = LocalStore(root)
    b1, b2 = backups(store, 2, target)
    assert verify.verify(store, target, LONG, now=now(), timeout_s=120).status == "ok"
    flip_byte(object_path(root, store, b1))  # not due for a week: only a full re-check finds it now
    inprocess_worker(role="db")

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(maintd_cmd("--config", str(config.path), "run", "backup.verify", "main", *extra,
                                         "--wait", "--timeout", "120"), capture_output=True, text=True, cwd=ROOT,
                              timeout=180)

    daily = run()
    assert daily.returncode == 0, daily.stdout + daily.stderr
    full = run("--arg", "full=true")
    assert full.returncode == 2, full.stdout + full.stderr  # critical
    assert f"{b1}/data.dump.zst: checksum mismatch" in full.stdout
    assert not record_of(store, b1).verification.verified and record_of(store, b2).verification.verified
