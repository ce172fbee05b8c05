"""``LocalStore``: backups in a directory (local disk, NFS, a mounted volume).

Objects are written as ``<name>.partial`` and renamed when committed, after an fsync,
so a crash leaves a ``.partial`` (an incomplete backup prune removes), never a torn
object under its final name. Files are created 0600, directories 0700.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from tasks.core.backup.store import (
    BackupStore,
    ObjectMissing,
    ObjectWriter,
    StoredObject,
    StoreError,
    StoreUnreachable,
)

logger = logging.getLogger(__name__)
PARTIAL = ".partial"
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_UNREACHABLE = (errno.EIO, errno.ESTALE, errno.ENOTCONN, errno.EHOSTDOWN, errno.ETIMEDOUT)


def store_error(exc: OSError, location: str, what: str) -> Exception:
    """An OSError as a StoreError (full, denied) or StoreUnreachable (I/O, stale mount)."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in _FULL:
        return StoreError(f"store {location} is full ({reason}) while {what}")
    if exc.errno in _UNREACHABLE:
        return StoreUnreachable(f"store {location} unreachable ({reason}) while {what}")
    return StoreError(f"store {location}: {reason} while {what}")


class LocalWriter(ObjectWriter):
    def __init__(self, store: LocalStore, key: str) -> None:
        super().__init__(key)
        self.store = store
        self.final = store.path_of(key)
        self.partial = self.final.with_name(self.final.name + PARTIAL)
        try:
            store.make_dirs(self.final.parent)
            fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise store_error(exc, store.location, f"creating {key}") from None
        self._fh: IO[bytes] | None = os.fdopen(fd, "wb", buffering=1024 * 1024)

    def write(self, data: bytes | memoryview) -> int:
        assert self._fh is not None, "write after commit/abort"
        try:
            n = self._fh.write(data)
        except OSError as exc:
            raise store_error(exc, self.store.location, f"writing {self.key}") from None
        self.size += n
        return n

    def commit(self) -> None:
        if self._fh is None:
            return
        fh, self._fh = self._fh, None
        try:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(self.partial, self.final)
            self.store.fsync_dir(self.final.parent)
        except OSError as exc:
            self._discard(fh)
            raise store_error(exc, self.store.location, f"committing {self.key}") from None

    def abort(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            self._discard(fh)

    def _discard(self, fh: IO[bytes]) -> None:
        try:
            fh.close()
        except OSError:
            pass  # a full disk fails the final flush too: the file is removed next
        self.partial.unlink(missing_ok=True)


class LocalStore(BackupStore):
    def __init__(self, path: Path, prefix: str = "") -> None:
        self.root = Path(path) / prefix.strip("/") if prefix.strip("/") else Path(path)
        self.location = f"local:{self.root}"

    def path_of(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"bad store key {key!r}")
        return self.root.joinpath(*parts)

    def make_dirs(self, path: Path) -> None:
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            if p == p.parent:
                break
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:
                pass

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def open_write(self, key: str, size_hint: int | None = None) -> ObjectWriter:
        return LocalWriter(self, key)

    def open_read(self, key: str) -> IO[bytes]:
        try:
            return open(self.path_of(key), "rb")  # the caller closes it
        except FileNotFoundError:
            raise ObjectMissing(f"store {self.location}: {key} does not exist") from None
        except OSError as exc:
            raise store_error(exc, self.location, f"reading {key}") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.open_write(key) as out:
            out.write(data)

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        if not base.exists():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = Path(dirpath) / name
                try:
                    st = full.stat()
                except FileNotFoundError:
                    continue
                yield StoredObject(full.relative_to(self.root).as_posix(), st.st_size,
                                   datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, keys: list[str]) -> None:
        dirs = set()
        for key in keys:
            path = self.path_of(key)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise store_error(exc, self.location, f"deleting {key}") from None
            dirs.add(path.parent)
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):  # prune empty dirs up to the root
            while d != self.root and d.is_relative_to(self.root):
                try:
                    d.rmdir()
                except OSError:
                    break
                d = d.parent
