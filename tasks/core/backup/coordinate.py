"""Run one backup: data object(s) streamed into the store, then the manifest — written
last, in ``finally``, with its status and first error line (Barman's
``_coordinate_backup`` / ``backup.info`` habit). A process killed mid-backup writes no
manifest at all: its dir is an incomplete backup that prune removes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata

import zstandard

from tasks.core.backup.layout import BackupRef
from tasks.core.backup.manifest import COMPLETE, FAILED, BackupManifest, now_utc, write_manifest
from tasks.core.backup.store import BackupStore
from tasks.core.backup.stream import CompressingWriter
from tasks.core.units import human_bytes
from workers.config import StoreSection
from workers.config.secrets import mask_secrets
from workers.errors import first_line
from workers.records.outcome import Result

logger = logging.getLogger(__name__)


def maintd_version() -> str:
    try:
        return metadata.version("maintd")
    except metadata.PackageNotFoundError:
        return "dev"


@dataclass(frozen=True)
class Compression:
    level: int = 1
    threads: int = 2
    tuning: tuple[tuple[str, int], ...] = ()  # zstd advanced parameters over the level's (name, value)

    @classmethod
    def of(cls, section: StoreSection | None) -> Compression:
        if section is None:
            return cls()
        return cls(section.compression_level, section.compression_threads,
                   tuple(sorted(section.compression_tuning.params().items())))

    def describe(self) -> str:
        extra = "".join(f", {k} {v}" for k, v in self.tuning)
        return f"zstd level {self.level}{extra}, {self.threads} threads"


class BackupSession:
    """What a producer (pg_dump, SQLite, RDB, tar) writes through."""

    def __init__(self, store: BackupStore, manifest: BackupManifest, compression: Compression,
                 size_hint: int | None = None) -> None:
        self.store = store
        self.manifest = manifest
        self.compression = compression
        self.size_hint = size_hint

    @contextmanager
    def data_object(self, name: str, fmt: str) -> Iterator[CompressingWriter]:
        """A compressed, checksummed object; committed when the block ends without error."""
        with self.store.open_write(self.manifest.ref.key(name), size_hint=self.size_hint) as writer:
            out = CompressingWriter(writer, name, fmt, self.compression.level, self.compression.threads,
                                    dict(self.compression.tuning))
            yield out
            info = out.finish()
        self.manifest.objects.append(info)


def coordinate(store: BackupStore, kind: str, target: str, produce: Callable[[BackupSession], None], *,
               host: str, task_id: str, compression: Compression, secrets: Sequence[str] = (),
               size_hint: int | None = None) -> BackupManifest:
    """Create a backup dir, let ``produce`` fill it, write the manifest last. Re-raises failures.

    ``size_hint``: what the source weighs before compression (database size, file sizes): an
    upper estimate of the object, from which an S3 store sizes its multipart parts."""
    ref = BackupRef.new(kind, target)
    manifest = BackupManifest(ref, started_at=now_utc(), host=host, task_id=task_id,
                              tools={"zstandard": zstandard.__version__, "maintd": maintd_version(),
                                     "compression": compression.describe()})
    failure: BaseException | None = None
    try:
        produce(BackupSession(store, manifest, compression, size_hint))
        if size_hint is not None:
            manifest.source.setdefault("size_estimate_bytes", size_hint)
        manifest.status = COMPLETE
    except BaseException as exc:
        failure = exc
        manifest.status = FAILED
        manifest.error = mask_secrets(first_line(exc), *secrets)
        raise
    finally:
        manifest.finished_at = now_utc()
        try:
            write_manifest(store, manifest)
        except Exception as exc:
            if failure is None:
                raise
            logger.warning("backup %s failed and its manifest could not be written either: %s", ref.dir,
                           first_line(exc))
    logger.info("backup %s complete: %s in %.1fs", ref.dir, human_bytes(manifest.size), manifest.duration_s or 0)
    return manifest


def backup_result(store: BackupStore, manifest: BackupManifest, counted: str) -> Result:
    """The Outcome body of a finished backup."""
    raw = sum(o.raw_size for o in manifest.objects)
    ratio = raw / manifest.size if manifest.size else 0
    summary = (f"backed up {manifest.ref.target}: {human_bytes(manifest.size)} (from {human_bytes(raw)}, {ratio:.1f}x)"
               f" in {manifest.duration_s:.1f}s, {counted} → {store.location}/{manifest.ref.dir}")
    metrics = {"backup_id": manifest.ref.backup_id, "size_bytes": manifest.size, "raw_bytes": raw,
               "compression_ratio": round(ratio, 2), "duration_s": manifest.duration_s,
               "sha256": {o.name: o.sha256 for o in manifest.objects}, "location": f"{store.location}/{manifest.ref.dir}",
               "tools": manifest.tools}
    actions = [f"wrote {manifest.ref.key(o.name)}" for o in manifest.objects] + [f"wrote {manifest.ref.key('manifest.json')}"]
    return Result("ok", summary, metrics, actions)
