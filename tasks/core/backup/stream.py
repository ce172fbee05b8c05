"""Streams between tools and the store: zstd (multithreaded) + sha256 on the way in,
sha256 + zstd on the way out. Memory is bounded by chunk sizes, never by backup size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO

import zstandard

from tasks.core.backup.store import BackupStore, ObjectWriter
from workers.errors import PermanentError
from workers.records.outcome import checkpoint, progress

CHUNK = 1024 * 1024


class CorruptObject(PermanentError):
    """A stored object does not match its manifest (checksum, size) or does not decompress."""


@dataclass(frozen=True)
class ObjectInfo:
    """One data object of a backup, as recorded in its manifest."""

    name: str
    size: int  # bytes stored (compressed)
    sha256: str  # of the stored bytes
    raw_size: int  # bytes before compression
    format: str  # pg_dump-custom, sqlite3, rdb, tar
    compression: str = "zstd"

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "raw_size": self.raw_size,
                "format": self.format, "compression": self.compression}


class _HashingSink:
    def __init__(self, writer: ObjectWriter) -> None:
        self.writer = writer
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.writer.write(data)
        return len(data)

    def flush(self) -> None:
        pass


class CompressingWriter:
    """Compresses what is written into ``writer``; ``finish()`` ends the frame and
    returns the ``ObjectInfo`` (the caller then commits the writer)."""

    def __init__(self, writer: ObjectWriter, name: str, fmt: str, level: int = 3, threads: int = 2,
                 tuning: dict[str, int] | None = None) -> None:
        self.name = name
        self.format = fmt
        self.raw_size = 0
        self._sink = _HashingSink(writer)
        params = zstandard.ZstdCompressionParameters.from_level(level, threads=threads, write_checksum=True,
                                                                **(tuning or {}))
        cctx = zstandard.ZstdCompressor(compression_params=params)
        self._z = cctx.stream_writer(self._sink, write_size=CHUNK, closefd=False)  # type: ignore[arg-type]

    def write(self, data: bytes | memoryview) -> int:
        checkpoint()  # the run's target lock lost: stop before the next chunk (LockLostError)
        self.raw_size += len(data)
        self._z.write(data)
        # the total of a stream being made is not known: bytes so far (the bar shows how much, not an ETA)
        progress(f"back up {self.name}", done=self.raw_size, unit="bytes")
        return len(data)

    def finish(self) -> ObjectInfo:
        self._z.flush(zstandard.FLUSH_FRAME)
        self._z.close()
        return ObjectInfo(self.name, self._sink.size, self._sink.sha.hexdigest(), self.raw_size, self.format)


class _HashingReader:
    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True


class VerifiedReader:
    """The decompressed content of a stored object; ``finish()`` reads what is left and
    raises ``CorruptObject`` unless size and sha256 match the manifest."""

    def __init__(self, raw: IO[bytes], info: ObjectInfo, key: str) -> None:
        self.info = info
        self.key = key
        self._raw = raw
        self._hashing = _HashingReader(raw)
        self._z = zstandard.ZstdDecompressor().stream_reader(self._hashing, read_size=CHUNK)  # type: ignore[arg-type]
        self.raw_size = 0

    def read(self, n: int = -1) -> bytes:
        checkpoint()  # the run's target lock lost: stop before the next chunk (LockLostError)
        try:
            data = self._z.read(n)
        except zstandard.ZstdError as exc:
            self.finish(decompress_error=str(exc))
            raise CorruptObject(f"{self.key}: does not decompress: {exc}") from None
        self.raw_size += len(data)
        progress(f"read {self.key}", done=self.raw_size, total=self.info.raw_size or None, unit="bytes")
        return data

    def readable(self) -> bool:
        return True

    def finish(self, decompress_error: str | None = None) -> str:
        """Drain the raw stream, check size and checksum. Returns the recomputed sha256."""
        while self._hashing.read(CHUNK):
            pass
        digest = self._hashing.sha.hexdigest()
        if self._hashing.size != self.info.size or digest != self.info.sha256:
            raise CorruptObject(f"{self.key}: checksum mismatch (sha256 {digest[:12]}…, {self._hashing.size} bytes;"
                                f" manifest {self.info.sha256[:12]}…, {self.info.size} bytes)")
        if decompress_error:
            raise CorruptObject(f"{self.key}: checksum matches but does not decompress: {decompress_error}")
        return digest

    def close(self) -> None:
        self._raw.close()


def open_verified(store: BackupStore, key: str, info: ObjectInfo) -> VerifiedReader:
    return VerifiedReader(store.open_read(key), info, key)


def stored_sha256(store: BackupStore, key: str) -> tuple[str, int]:
    """sha256 and size of a stored object, streamed."""
    sha = hashlib.sha256()
    size = 0
    with store.open_read(key) as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def restore_to_file(store: BackupStore, key: str, info: ObjectInfo, path: str) -> str:
    """Decompress a stored object into a new 0600 file, checksum checked. Returns the sha256."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    reader = open_verified(store, key, info)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: reader.read(CHUNK), b""):
                out.write(chunk)
        return reader.finish()
    finally:
        reader.close()
