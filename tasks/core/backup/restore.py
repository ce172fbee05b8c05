"""``backup.restore`` (high impact, ad hoc only): restore a complete backup into its
target or a named alternative (database, path, redis target, directory).

Requires ``confirm`` equal to the target's name. Then the kind's preflight checks run
before anything is read in full or written (and in a dry run): PostgreSQL refuses an
in-place restore that could not be all-or-nothing; Redis refuses a broker target without
``allow_broker`` and a target or scratch server that cannot load the backup. Then the
stored objects' sha256 is recomputed; a backup whose checksum does not match its
manifest is refused (and marked corrupt).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from tasks.core.backup.inventory import find, list_backups
from tasks.core.backup.kinds import RestoreRequest, kind_of
from tasks.core.backup.manifest import Check, write_verification
from tasks.core.backup.store import BackupStore
from tasks.core.backup.stream import CorruptObject, stored_sha256
from tasks.core.units import hours, human_bytes
from workers.config import Config, Target
from workers.errors import PermanentError
from workers.records.outcome import Result

logger = logging.getLogger(__name__)


def restore(store: BackupStore, target: Target, config: Config, *, now: datetime, backup_id: str = "",
            into: str | None = None, confirm: str = "", flush: bool = False, timeout_s: float = 3600,
            dry_run: bool = False, allow_broker: bool = False) -> Result:
    if not dry_run and confirm != target.name:
        raise PermanentError(f"backup.restore refuses to overwrite {kind_of(target.kind).destination(target, into)}: "
                             f"pass confirm={target.name!r} (the target's name) to proceed")
    records = list_backups(store, target.kind, target.name)
    record = find(records, backup_id)
    if record is None or record.manifest is None:
        which = f"backup {backup_id!r}" if backup_id else "complete backup"
        raise PermanentError(f"no {which} of {target.name} in {store.location}")
    manifest = record.manifest
    request = RestoreRequest(config, into, flush, timeout_s, allow_broker)
    checks = kind_of(target.kind).preflight(record, target, request)
    for obj in manifest.objects:
        key = record.ref.key(obj.name)
        digest, size = stored_sha256(store, key)
        if digest != obj.sha256 or size != obj.size:
            record.verification.checksum = Check(now, False, f"{key}: checksum mismatch before restore")
            if not dry_run:
                write_verification(store, record.ref, record.verification)
            raise CorruptObject(f"refusing to restore {store.location}/{key}: sha256 {digest[:12]}… ({size} bytes)"
                                f" does not match the manifest's {obj.sha256[:12]}… ({obj.size} bytes)")
    dest = kind_of(target.kind).destination(target, into)
    age = hours(now - record.started_at)
    metrics = {"backup_id": record.ref.backup_id, "backup_age": age, "size_bytes": manifest.size,
               "into": dest, "checksum": "ok"}
    if dry_run:
        return Result("ok", f"would restore {target.name} {record.ref.backup_id} ({age} old, "
                            f"{human_bytes(manifest.size)}, checksum ok) into {dest}", metrics,
                      [f"restore {store.location}/{record.ref.dir} into {dest}", *checks])
    started = time.monotonic()
    actions = kind_of(target.kind).restore(store, record, target, request)
    duration = round(time.monotonic() - started, 3)
    metrics["duration_s"] = duration
    logger.warning("backup.restore: %s %s restored into %s in %.1fs", target.name, record.ref.backup_id, dest, duration)
    return Result("ok", f"restored {target.name} {record.ref.backup_id} ({age} old) into {dest} in {duration:.1f}s",
                  metrics, actions)
