"""Backup stores against real storage: a directory (and a 2 MB filesystem to fill) and S3
through moto's server on loopback: atomic commits, 0600 files, multipart streaming with
bounded memory, server-side encryption, unreachable and full stores."""

from __future__ import annotations

import hashlib
import os
import stat
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.core.backup.local import LocalStore
from tasks.core.backup.s3 import S3Store
from tasks.core.backup.store import ObjectMissing, StoreError, StoreUnreachable
from tasks.core.backup.stores import open_store
from tests.test_backup_support import MotoS3, small_filesystem
from tests.test_health_support import closed_port
from workers.config import StoreSection
from workers.errors import SkippedError

MB = 1024 * 1024


@pytest.fixture(scope="module")
def s3(scratch_root: Path) -> Iterator[MotoS3]:
    server = MotoS3(scratch_root / "moto")
    yield server
    server.stop()


def test_local_store_is_private_and_commits_atomically(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", prefix="prod")
    writer = store.open_write("postgres/main/2026/01/05/x/data.bin")
    writer.write(b"a" * 1000)
    final = tmp_path / "store/prod/postgres/main/2026/01/05/x/data.bin"
    partial = final.with_name("data.bin.partial")
    assert not final.exists() and partial.exists()  # readers never see a torn object
    assert stat.S_IMODE(partial.stat().st_mode) == 0o600
    writer.commit()
    assert final.read_bytes() == b"a" * 1000 and not partial.exists()
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    for d in [tmp_path / "store", *final.relative_to(tmp_path / "store").parents]:
        if d != Path("."):
            assert stat.S_IMODE((tmp_path / "store" / d).stat().st_mode) == 0o700, d
    with store.open_write("postgres/main/2026/01/05/x/aborted.bin") as w:
        w.write(b"b")
        w.abort()
    assert not list(final.parent.glob("aborted*"))
    with pytest.raises(RuntimeError):
        with store.open_write("postgres/main/2026/01/05/x/failed.bin") as w:
            w.write(b"c")
            raise RuntimeError("producer failed")
    assert not list(final.parent.glob("failed*"))
    store.put_bytes("postgres/main/2026/01/05/x/manifest.json", b"{}")
    assert sorted(o.key for o in store.list_objects("postgres/main")) == [
        "postgres/main/2026/01/05/x/data.bin", "postgres/main/2026/01/05/x/manifest.json"]
    with pytest.raises(ObjectMissing):
        store.open_read("postgres/main/2026/01/05/x/nope")
    store.delete([o.key for o in store.list_objects("postgres/main")])
    assert not (tmp_path / "store/prod/postgres").exists()  # empty dirs removed up to the root
    with pytest.raises(ValueError):
        store.path_of("../escape")


def test_local_store_on_a_full_filesystem_fails_clearly_and_keeps_what_was_there(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "tiny", "2m") as root:
        store = LocalStore(root)
        store.put_bytes("sqlite/a/2026/01/05/old/data.bin", b"older backup")
        writer = store.open_write("sqlite/a/2026/01/05/new/data.bin")
        chunk = os.urandom(MB)
        with pytest.raises(StoreError) as err:
            for _ in range(4):
                writer.write(chunk)
            writer.commit()
        writer.abort()
        assert "is full" in str(err.value) and str(root) in str(err.value)
        assert store.get_bytes("sqlite/a/2026/01/05/old/data.bin") == b"older backup"
        assert not list(root.rglob("*.partial"))  # the torn object is gone, the space is back
        store.put_bytes("sqlite/a/2026/01/05/new/manifest.json", b"{}")  # room for a failure manifest


def test_s3_multipart_streaming_bounded_memory_with_sse(s3: MotoS3) -> None:
    bucket = s3.bucket()
    store = open_store(s3.section(bucket, sse="AES256", part_size_mb=5))
    assert isinstance(store, S3Store) and store.location == f"s3://{bucket}/prod"
    sha = hashlib.sha256()
    chunk = os.urandom(MB)
    tracemalloc.start()
    try:
        writer = store.open_write("files/x/2026/01/05/id/big.bin")
        for i in range(40):
            piece = bytes([i]) + chunk[1:]
            sha.update(piece)
            writer.write(piece)
        writer.commit()
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 30 * MB, f"peak {peak / MB:.1f} MB for a 40 MB stream with 5 MB parts"
    head = s3.client().head_object(Bucket=bucket, Key="prod/files/x/2026/01/05/id/big.bin")
    assert head["ContentLength"] == 40 * MB
    assert head["ETag"].strip('"').endswith("-8")  # eight parts
    assert head["ServerSideEncryption"] == "AES256"
    with store.open_read("files/x/2026/01/05/id/big.bin") as fh:
        back = hashlib.sha256()
        for part in iter(lambda: fh.read(MB), b""):
            back.update(part)
    assert back.hexdigest() == sha.hexdigest()
    store.put_bytes("files/x/2026/01/05/id/manifest.json", b"{}")
    small = s3.client().head_object(Bucket=bucket, Key="prod/files/x/2026/01/05/id/manifest.json")
    assert "-" not in small["ETag"] and small["ServerSideEncryption"] == "AES256"
    assert {o.key for o in store.list_objects("files/x")} == {"files/x/2026/01/05/id/big.bin",
                                                              "files/x/2026/01/05/id/manifest.json"}
    store.delete([o.key for o in store.list_objects("files/x")])
    assert list(store.list_objects("files/x")) == []


def test_s3_abort_and_stale_upload_cleanup(s3: MotoS3) -> None:
    bucket = s3.bucket()
    store = open_store(s3.section(bucket, part_size_mb=5))
    writer = store.open_write("redis/c/2026/01/05/id/dump.rdb.zst")
    writer.write(os.urandom(11 * MB))
    writer.abort()
    client = s3.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert list(store.list_objects("redis/c")) == []
    # an upload a killed worker left behind
    client.create_multipart_upload(Bucket=bucket, Key="prod/redis/c/2026/01/05/killed/dump.rdb.zst")
    assert store.cleanup_stale_uploads("redis/c/", datetime.now(UTC) + timedelta(hours=1), dry_run=True) == [
        "redis/c/2026/01/05/killed/dump.rdb.zst"]
    assert len(client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    store.cleanup_stale_uploads("redis/c/", datetime.now(UTC) + timedelta(hours=1), dry_run=False)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_s3_unreachable_is_transient_and_says_so(s3: MotoS3) -> None:
    section = StoreSection(kind="s3", bucket="backups", endpoint_url=f"http://127.0.0.1:{closed_port()}",
                           access_key_id="AKIDEXAMPLE", secret_access_key="wJalrXUtnFEMI/K7MDENG", connect_timeout_s=1,
                           max_attempts=2)
    store = open_store(section)
    with pytest.raises(StoreUnreachable) as err:
        store.put_bytes("postgres/m/2026/01/05/id/manifest.json", b"{}")
    text = str(err.value)
    assert "s3://backups unreachable" in text and "wJalrXUtnFEMI" not in text
    with pytest.raises(StoreUnreachable):
        list(store.list_objects("postgres/m"))


def test_s3_missing_bucket_is_permanent(s3: MotoS3) -> None:
    store = open_store(s3.section("no-such-bucket-here"))
    with pytest.raises(StoreError) as err:
        store.put_bytes("x/y/2026/01/05/id/manifest.json", b"{}")
    assert "NoSuchBucket" in str(err.value)


def test_no_store_configured_skips() -> None:
    with pytest.raises(SkippedError):
        open_store(None)
