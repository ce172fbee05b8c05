"""S3 part sizes grow with the object (issue 8.13): fixed 16 MiB parts end at part 10,001
(~156 GiB). Proven against moto's S3 server on loopback with a small part-count limit
(``[store] max_parts``) standing in for S3's 10,000."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg2
import pytest

from tasks.core.backup import files, postgres, verify
from tasks.core.backup.coordinate import Compression
from tasks.core.backup.inventory import list_backups
from tasks.core.backup.s3 import MAX_PART, MIB, S3Store, part_size_for
from tasks.core.backup.store import StoreError
from tasks.core.backup.stores import open_store
from tests.test_backup_support import MotoS3
from workers.config import FilesTarget, PostgresTarget

GIB = 1024 * MIB


@pytest.mark.parametrize("hint,configured,max_parts,expected", [
    (None, 16 * MIB, 10000, 16 * MIB),  # no estimate: as configured
    (50 * GIB, 16 * MIB, 10000, 16 * MIB),  # 50 GiB x2 margin fits in 10,000 parts of 16 MiB
    (100 * GIB, 16 * MIB, 10000, 21 * MIB),  # 100 GiB x2 does not: 20.48 MiB, rounded up
    (156 * GIB, 16 * MIB, 10000, 32 * MIB),  # the size where fixed 16 MiB parts ran out: x2 margin
    (1024 * GIB, 16 * MIB, 10000, 210 * MIB),  # 1 TiB
    (60 * 1024 * GIB, 16 * MIB, 10000, MAX_PART),  # beyond S3's object limit: capped at 5 GiB parts
    (24 * MIB, 5 * MIB, 4, 12 * MIB),  # the small limit used below
    (1, 5 * MIB, 10000, 5 * MIB),  # never under S3's 5 MiB minimum
])
def test_part_size_for_the_estimate(hint: int | None, configured: int, max_parts: int, expected: int) -> None:
    size = part_size_for(hint, configured, max_parts)
    assert size == expected
    assert size % MIB == 0 and (hint is None or hint * 2 <= size * max_parts or size == MAX_PART)


@pytest.fixture
def s3(scratch_root: Path) -> Iterator[MotoS3]:
    server = MotoS3(scratch_root / "moto")
    yield server
    server.stop()


def parts_of(s3: MotoS3, bucket: str, key: str) -> int:
    """Parts of a stored object, from its ETag (``"<md5>-<parts>"`` for multipart uploads)."""
    etag = s3.client().head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    return int(etag.rsplit("-", 1)[1]) if "-" in etag else 1


def write(store: S3Store, key: str, data: bytes, hint: int | None) -> None:
    with store.open_write(key, size_hint=hint) as out:
        for i in range(0, len(data), 1 << 20):
            out.write(data[i:i + (1 << 20)])


def test_parts_sized_from_the_estimate_and_grown_without_one(s3: MotoS3) -> None:
    bucket = s3.bucket()
    store = open_store(s3.section(bucket, part_size_mb=5, max_parts=4))
    assert isinstance(store, S3Store)
    data = os.urandom(24 * MIB)
    write(store, "sized", data, hint=len(data))  # 12 MiB parts
    assert parts_of(s3, bucket, "prod/sized") == 2
    write(store, "grown", data, hint=None)  # 5, 5, then 10, then the last 4 MiB
    assert parts_of(s3, bucket, "prod/grown") == 4
    for key in ("sized", "grown"):
        assert store.get_bytes(key) == data


def test_past_the_part_limit_fails_clearly_and_leaves_nothing(s3: MotoS3) -> None:
    bucket = s3.bucket()
    store = open_store(s3.section(bucket, part_size_mb=5, max_parts=2))
    with pytest.raises(StoreError, match=r"needs more than 2 parts .*raise \[store\] part_size_mb"):
        write(store, "huge", os.urandom(40 * MIB), hint=1 * MIB)  # an estimate far too low
    client = s3.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_postgres_backup_uses_the_database_size_for_its_parts(target_db: str, s3: MotoS3) -> None:
    conn = psycopg2.connect(target_db)
    conn.autocommit = True
    with conn.cursor() as cur:  # ~20 MiB that does not compress (random bytes; dumped as hex text: 40 MiB raw)
        cur.execute("CREATE TABLE blobs (id int PRIMARY KEY, b bytea)")
        cur.execute("INSERT INTO blobs SELECT i, (SELECT decode(string_agg(md5(random()::text || i || g), ''), 'hex')"
                    " FROM generate_series(1, 4096) g) FROM generate_series(1, 320) i")
        cur.execute("SELECT pg_database_size(current_database())")
        db_size = int(cur.fetchone()[0])  # type: ignore[index]
    conn.close()
    bucket = s3.bucket()
    store = open_store(s3.section(bucket, part_size_mb=5, max_parts=3))
    target = PostgresTarget(name="main", dsn=target_db)
    made = postgres.backup(target, store, host="testhost", task_id="t-1", compression=Compression(1, 2), timeout_s=300)
    assert made.status == "ok", made
    [record] = list_backups(store, "postgres", "main")
    assert record.manifest is not None and record.manifest.source["size_estimate_bytes"] == db_size
    obj = record.manifest.object(postgres.OBJECT)
    part = part_size_for(db_size, 5 * MIB, 3)
    assert obj.size > 2 * 5 * MIB  # fixed 5 MiB parts would have needed more than 3 parts
    assert parts_of(s3, bucket, "prod/" + record.ref.key(postgres.OBJECT)) == -(-obj.size // part) <= 3
    fresh = verify.Freshness(timedelta(days=1), timedelta(days=1))
    assert verify.verify(store, target, fresh, now=record.started_at, timeout_s=120).status == "ok"


def test_files_backup_estimates_from_file_sizes_for_s3(s3: MotoS3, tmp_path: Path) -> None:
    tree = tmp_path / "srv" / "data"
    tree.mkdir(parents=True)
    (tree / "a.bin").write_bytes(os.urandom(9 * MIB))
    (tree / "b.bin").write_bytes(os.urandom(3 * MIB))
    (tree / "link").symlink_to("/etc/hostname")  # a link: no bytes of its own
    bucket = s3.bucket()
    store = open_store(s3.section(bucket, part_size_mb=5, max_parts=2))
    target = FilesTarget(name="data", paths=[tree], host="testhost")
    assert files.backup(target, store, host="testhost", task_id="t", compression=Compression(1, 2)).status == "ok"
    [record] = list_backups(store, "files", "data")
    assert record.manifest is not None and record.manifest.source["size_estimate_bytes"] == 12 * MIB
    assert parts_of(s3, bucket, "prod/" + record.ref.key(files.OBJECT)) == 2  # 12 MiB parts (x2 / 2 parts)
