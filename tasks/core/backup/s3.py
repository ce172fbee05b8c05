"""``S3Store``: backups in an S3 bucket (AWS, MinIO and other S3-compatible stores).

Streaming writes use an explicit multipart upload: a part is sent by one background thread
while the next one fills, one part in flight at a time, so memory stays near three parts
(filling, joining, sending). Small objects are one PUT.

Part size: S3 allows ``max_parts`` (10,000) parts of 5 MiB..5 GiB, so fixed 16 MiB parts
end at ~156 GiB. The part starts at ``part_size_mb`` or, for a large source, at what its
size estimate (database size, file sizes) needs with a 2x margin; should the estimate be
wrong, the part size doubles when half the remaining parts are used (at 1/2, 3/4, 7/8...
of the limit), so an object many times its estimate still fits. Past the limit the write
fails with a clear message before S3 refuses part 10,001.
Every request has connect/read timeouts and botocore's standard retries; server-side
encryption (``sse``) applies to every object written.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import IO, Any

import boto3
import botocore.config
import botocore.exceptions

from tasks.core.backup.store import (
    BackupStore,
    ObjectMissing,
    ObjectWriter,
    StoredObject,
    StoreError,
    StoreUnreachable,
)
from workers.config import StoreSection

logger = logging.getLogger(__name__)
MAX_IN_FLIGHT = 1
MIB = 1024 * 1024
MIN_PART = 5 * MIB  # S3: every part but the last at least 5 MiB
MAX_PART = 5 * 1024 * MIB  # S3: at most 5 GiB per part
SIZE_MARGIN = 2.0  # the estimate may be low (TOAST decompressed by pg_dump, growth during the backup)
_UNREACHABLE_CODES = {"RequestTimeout", "SlowDown", "ServiceUnavailable", "InternalError", "503", "500"}
_FULL_CODES = {"QuotaExceeded", "XMinioStorageFull", "EntityTooLarge", "InsufficientStorage", "507"}


def s3_error(exc: Exception, location: str, what: str) -> Exception:
    """A boto error as StoreUnreachable (retry helps) or StoreError (it does not)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")) or code
        if code in ("NoSuchKey", "404"):
            return ObjectMissing(f"store {location}: {what}: no such object")
        if code in _FULL_CODES:
            return StoreError(f"store {location} is full ({code}: {message}) while {what}")
        if code in _UNREACHABLE_CODES:
            return StoreUnreachable(f"store {location} unavailable ({code}) while {what}")
        return StoreError(f"store {location}: {code}: {message} while {what}")
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return StoreError(f"store {location}: no usable credentials while {what}")
    # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError...
    kind = type(exc).__name__
    return StoreUnreachable(f"store {location} unreachable ({kind}) while {what}")


_BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def part_size_for(size_hint: int | None, configured: int, max_parts: int) -> int:
    """The first part's size: the configured one, or more when ``size_hint`` (with the margin)
    would need more than ``max_parts`` parts; whole MiB, within S3's 5 MiB..5 GiB. Pure."""
    size = configured
    if size_hint:
        size = max(size, -(-int(size_hint * SIZE_MARGIN) // max_parts))
    size = -(-size // MIB) * MIB
    return min(max(size, MIN_PART), MAX_PART)


class S3Writer(ObjectWriter):
    def __init__(self, store: S3Store, key: str, size_hint: int | None = None) -> None:
        super().__init__(key)
        self.store = store
        self.full_key = store.full_key(key)
        self.size_hint = size_hint
        self.max_parts = store.max_parts
        self.part_size = part_size_for(size_hint, store.part_size, self.max_parts)
        self._grow_at = max(1, self.max_parts // 2)  # part count at which the part size doubles
        self._chunks: list[bytes] = []  # exactly the next part's bytes, joined once when full
        self._filled = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._pending: deque[Future[dict[str, Any]]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._done = False

    def write(self, data: bytes | memoryview) -> int:
        assert not self._done, "write after commit/abort"
        view = memoryview(data)
        self.size += len(view)
        while view:
            room = self.part_size - self._filled
            piece, view = view[:room], view[room:]
            self._chunks.append(bytes(piece))
            self._filled += len(piece)
            if self._filled == self.part_size:
                self._send(self._take())
        return len(data)

    def _take(self) -> bytes:
        part = b"".join(self._chunks)
        self._chunks, self._filled = [], 0
        return part

    def _send(self, part: bytes) -> None:
        number = len(self._parts) + len(self._pending) + 1
        if number > self.max_parts:
            raise StoreError(
                f"store {self.store.location}: {self.key} needs more than {self.max_parts} parts (parts of "
                f"{self.part_size // MIB} MiB at {self.size // MIB} MiB written; size estimate "
                f"{(self.size_hint or 0) // MIB} MiB): raise [store] part_size_mb")
        if self._upload_id is None:
            try:
                resp = self.store.client.create_multipart_upload(Bucket=self.store.bucket, Key=self.full_key,
                                                                 **self.store.sse_args)
            except _BOTO_ERRORS as exc:
                raise s3_error(exc, self.store.location, f"starting upload of {self.key}") from None
            self._upload_id = resp["UploadId"]
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-part")
        while len(self._pending) >= MAX_IN_FLIGHT:
            self._collect()
        assert self._pool is not None
        self._pending.append(self._pool.submit(self._upload_part, number, part))
        if number >= self._grow_at and self.part_size < MAX_PART:  # the estimate was low: grow
            self.part_size = min(self.part_size * 2, MAX_PART)
            self._grow_at = number + max(1, (self.max_parts - number) // 2)
            logger.info("%s: part %d of at most %d sent; parts grow to %d MiB", self.key, number, self.max_parts,
                        self.part_size // MIB)

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        resp = self.store.client.upload_part(Bucket=self.store.bucket, Key=self.full_key, UploadId=self._upload_id,
                                             PartNumber=number, Body=body, **self.store.sse_part_args)
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def _collect(self) -> None:
        future = self._pending.popleft()
        try:
            self._parts.append(future.result())
        except _BOTO_ERRORS as exc:
            raise s3_error(exc, self.store.location, f"uploading {self.key}") from None

    def commit(self) -> None:
        if self._done:
            return
        try:
            if self._upload_id is None:
                self.store.client.put_object(Bucket=self.store.bucket, Key=self.full_key, Body=self._take(),
                                             **self.store.sse_args)
            else:
                if self._filled:
                    self._send(self._take())
                while self._pending:
                    self._collect()
                self.store.client.complete_multipart_upload(
                    Bucket=self.store.bucket, Key=self.full_key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": sorted(self._parts, key=lambda p: p["PartNumber"])})
        except _BOTO_ERRORS as exc:
            self.abort()
            raise s3_error(exc, self.store.location, f"completing {self.key}") from None
        except Exception:
            self.abort()
            raise
        self._done = True
        self._shutdown()

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._chunks, self._filled = [], 0
        for future in self._pending:
            future.cancel()
        self._shutdown()
        if self._upload_id is not None:
            try:
                self.store.client.abort_multipart_upload(Bucket=self.store.bucket, Key=self.full_key,
                                                         UploadId=self._upload_id)
            except _BOTO_ERRORS as exc:  # the prune sweep of stale uploads gets it later
                logger.warning("could not abort upload of %s: %s", self.key, type(exc).__name__)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class S3Store(BackupStore):
    sizes_parts = True

    def __init__(self, section: StoreSection) -> None:
        assert section.bucket
        self.bucket = section.bucket
        self.prefix = section.prefix.strip("/")
        self.part_size = section.part_size_mb * MIB
        self.max_parts = section.max_parts
        self.location = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        style = section.addressing_style
        if style == "auto" and section.endpoint_url:
            style = "path"  # MinIO & co. rarely have wildcard DNS for virtual-hosted buckets
        config = botocore.config.Config(
            connect_timeout=section.connect_timeout_s, read_timeout=section.read_timeout_s,
            retries={"max_attempts": section.max_attempts, "mode": "standard"},
            s3={"addressing_style": style}, signature_version="s3v4",
            # Checksums only when the service requires them: S3-compatible stores lag behind AWS.
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        self.sse_args: dict[str, str] = {}
        if section.sse:
            self.sse_args["ServerSideEncryption"] = section.sse
            if section.sse_kms_key_id:
                self.sse_args["SSEKMSKeyId"] = section.sse_kms_key_id
        self.sse_part_args: dict[str, str] = {}  # upload_part inherits SSE-S3/KMS from the upload
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=section.endpoint_url, region_name=section.region or "us-east-1",
            aws_access_key_id=section.access_key_id.reveal() if section.access_key_id else None,
            aws_secret_access_key=section.secret_access_key.reveal() if section.secret_access_key else None,
            config=config,
        )

    def full_key(self, key: str) -> str:
        if not key or ".." in key.split("/"):
            raise ValueError(f"bad store key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def relative(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def open_write(self, key: str, size_hint: int | None = None) -> ObjectWriter:
        return S3Writer(self, key, size_hint)

    def open_read(self, key: str) -> IO[bytes]:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.full_key(key))
        except _BOTO_ERRORS as exc:
            raise s3_error(exc, self.location, f"reading {key}") from None
        return _BodyReader(resp["Body"], self.location, key)  # type: ignore[return-value]

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.full_key(key), Body=data, **self.sse_args)
        except _BOTO_ERRORS as exc:
            raise s3_error(exc, self.location, f"writing {key}") from None

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        full = self.full_key(prefix.rstrip("/")) + "/"
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    yield StoredObject(self.relative(obj["Key"]), int(obj["Size"]), obj["LastModified"])
        except _BOTO_ERRORS as exc:
            raise s3_error(exc, self.location, f"listing {prefix}") from None

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self.full_key(k)} for k in keys[i:i + 1000]]
            try:
                resp = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except _BOTO_ERRORS as exc:
                raise s3_error(exc, self.location, "deleting objects") from None
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise StoreError(f"store {self.location}: cannot delete {self.relative(first.get('Key', '?'))}: "
                                 f"{first.get('Code')}")

    def cleanup_stale_uploads(self, prefix: str, older_than: datetime, dry_run: bool) -> list[str]:
        full = self.full_key(prefix.rstrip("/")) + "/"
        found = []
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=full):
                for up in page.get("Uploads", []):
                    if up["Initiated"] < older_than:
                        found.append(self.relative(up["Key"]))
                        if not dry_run:
                            self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"],
                                                               UploadId=up["UploadId"])
        except _BOTO_ERRORS as exc:
            raise s3_error(exc, self.location, f"listing uploads under {prefix}") from None
        return found


class _BodyReader:
    """A botocore StreamingBody as a file, with store-aware errors."""

    def __init__(self, body: Any, location: str, key: str) -> None:
        self._body = body
        self._where = (location, key)

    def read(self, n: int = -1) -> bytes:
        try:
            return bytes(self._body.read(None if n < 0 else n))
        except _BOTO_ERRORS as exc:
            raise s3_error(exc, self._where[0], f"reading {self._where[1]}") from None
        except OSError as exc:
            raise StoreUnreachable(f"store {self._where[0]} unreachable ({type(exc).__name__}) while reading "
                                   f"{self._where[1]}") from None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> _BodyReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
