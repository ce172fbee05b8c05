"""The configured backup store: ``[store] kind = "local"`` or ``"s3"``."""

from __future__ import annotations

from tasks.core.backup.local import LocalStore
from tasks.core.backup.store import BackupStore
from workers.config import StoreSection
from workers.errors import SkippedError


def open_store(section: StoreSection | None) -> BackupStore:
    """The configured store; ``SkippedError`` when no ``[store]`` is configured."""
    if section is None:
        raise SkippedError("no [store] configured: backups are off")
    if section.kind == "local":
        assert section.path is not None
        return LocalStore(section.path, section.prefix)
    from tasks.core.backup.s3 import S3Store  # boto3 is slow to import: only when used

    return S3Store(section)
