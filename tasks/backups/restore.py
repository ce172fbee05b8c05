"""``backup.restore`` (high impact, ad hoc only): restore a complete backup into its
target or a named alternative (database, path, redis target, directory).

Requires ``confirm`` equal to the target's name. Before anything is written, the
stored objects' sha256 is recomputed; a backup whose checksum does not match its
manifest is refused (and marked corrupt).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from tasks.backups import handlers
from tasks.backups.catalog import find, list_backups
from tasks.backups.manifest import Check, write_verification
from tasks.backups.store import BackupStore
from tasks.backups.stream import CorruptObject, stored_sha256
from tasks.backups.verify import hours
from tasks.checks.common import human_bytes
from workers.config_model import Config, Target
from workers.errors import PermanentError
from workers.outcome import Result

logger = logging.getLogger(__name__)


def restore(store: BackupStore, target: Target, config: Config, *, now: datetime, backup_id: str = "",
            into: str | None = None, confirm: str = "", flush: bool = False, timeout_s: float = 3600,
            dry_run: bool = False) -> Result:
    if not dry_run and confirm != target.name:
        raise PermanentError(f"backup.restore refuses to overwrite {handlers.destination(target, into)}: "
                             f"pass confirm={target.name!r} (the target's name) to proceed")
    records = list_backups(store, target.kind, target.name)
    record = find(records, backup_id)
    if record is None or record.manifest is None:
        which = f"backup {backup_id!r}" if backup_id else "complete backup"
        raise PermanentError(f"no {which} of {target.name} in {store.location}")
    manifest = record.manifest
    for obj in manifest.objects:
        key = record.ref.key(obj.name)
        digest, size = stored_sha256(store, key)
        if digest != obj.sha256 or size != obj.size:
            record.verification.checksum = Check(now, False, f"{key}: checksum mismatch before restore")
            if not dry_run:
                write_verification(store, record.ref, record.verification)
            raise CorruptObject(f"refusing to restore {store.location}/{key}: sha256 {digest[:12]}… ({size} bytes)"
                                f" does not match the manifest's {obj.sha256[:12]}… ({obj.size} bytes)")
    dest = handlers.destination(target, into)
    age = hours(now - record.started_at)
    metrics = {"backup_id": record.ref.backup_id, "backup_age": age, "size_bytes": manifest.size,
               "into": dest, "checksum": "ok"}
    if dry_run:
        return Result("ok", f"would restore {target.name} {record.ref.backup_id} ({age} old, "
                            f"{human_bytes(manifest.size)}, checksum ok) into {dest}", metrics,
                      [f"restore {store.location}/{record.ref.dir} into {dest}"])
    started = time.monotonic()
    actions = handlers.restore(store, record, target, config, into=into, flush=flush, timeout_s=timeout_s)
    duration = round(time.monotonic() - started, 3)
    metrics["duration_s"] = duration
    logger.warning("backup.restore: %s %s restored into %s in %.1fs", target.name, record.ref.backup_id, dest, duration)
    return Result("ok", f"restored {target.name} {record.ref.backup_id} ({age} old) into {dest} in {duration:.1f}s",
                  metrics, actions)
