"""The ``BackupStore`` interface: streaming writes (bounded memory), streaming reads,
listing and deletion of keys under the store's prefix. ``tasks.core.backup.stores.open_store``
builds the configured one (``local`` or ``s3``).

Errors: a full store or a refused credential is a ``StoreError`` that is permanent; an
unreachable store is transient (retried). Messages name the store, never a secret.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import IO

from workers.errors import PermanentError, TransientError


class StoreError(PermanentError):
    """The store refused: full, permission denied, no such bucket."""


class StoreUnreachable(TransientError):
    """The store did not answer (network, endpoint down): retrying may help."""


class ObjectMissing(StoreError):
    """A key that should exist does not."""


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the store's prefix
    size: int
    modified: datetime


class ObjectWriter(abc.ABC):
    """A streaming write: ``write`` chunks, then ``commit`` (visible) or ``abort`` (gone).

    As a context manager it commits on success and aborts on any exception.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.size = 0

    @abc.abstractmethod
    def write(self, data: bytes | memoryview) -> int: ...

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def abort(self) -> None: ...

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class BackupStore(abc.ABC):
    """Keys are ``/``-separated and relative to the store's own prefix."""

    #: ``local:/srv/backups/prod`` or ``s3://bucket/prefix``: for messages and manifests.
    location: str

    @abc.abstractmethod
    def open_write(self, key: str, size_hint: int | None = None) -> ObjectWriter:
        """A streaming write. ``size_hint``: the expected size in bytes (an estimate; stores
        with a part limit size their parts from it)."""

    @abc.abstractmethod
    def open_read(self, key: str) -> IO[bytes]:
        """A readable binary stream; the caller closes it."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object atomically (replacing any previous one)."""

    @abc.abstractmethod
    def list_objects(self, prefix: str) -> Iterator[StoredObject]: ...

    @abc.abstractmethod
    def delete(self, keys: list[str]) -> None: ...

    #: Whether ``open_write`` uses ``size_hint`` (a store with a part limit): producers skip
    #: an estimate that costs a pass over the source when it would be ignored.
    sizes_parts = False

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as fh:
            return fh.read()

    def cleanup_stale_uploads(self, prefix: str, older_than: datetime, dry_run: bool) -> list[str]:
        """Abandoned partial uploads under ``prefix`` (S3 multipart); ``[]`` where none exist."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location})"
