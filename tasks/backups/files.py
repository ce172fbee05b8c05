"""``backup.files``: a tar (pax) of the configured paths, streamed through zstd into the
store, on the host the files live on. Members are stored relative to ``/``; extraction
uses tarfile's ``data`` filter (no absolute paths, no escapes, no device files).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import platform
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from tasks.backups.catalog import BackupRecord
from tasks.backups.coordinate import BackupSession, Compression, backup_result, coordinate
from tasks.backups.store import BackupStore
from tasks.backups.stream import open_verified
from workers.config_model import FilesTarget
from workers.errors import PermanentError, TransientError
from workers.outcome import Result

logger = logging.getLogger(__name__)
OBJECT = "files.tar.zst"
FORMAT = "tar"


def walk(roots: list[Path], exclude: list[str]) -> Iterator[Path]:
    """Every path to archive under ``roots`` (directories before their contents), symlinks not followed."""
    def excluded(p: str) -> bool:
        return any(fnmatch.fnmatch(p, pat) for pat in exclude)

    for root in roots:
        if excluded(str(root)):
            continue
        yield root
        if root.is_dir() and not root.is_symlink():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not excluded(os.path.join(dirpath, d)))
                for name in [*dirnames, *sorted(filenames)]:
                    full = os.path.join(dirpath, name)
                    if not excluded(full):
                        yield Path(full)


def root_of(path: str, roots: list[str]) -> str | None:
    for r in roots:
        if path == r or path.startswith(r.rstrip("/") + "/"):
            return r
    return None


def backup(target: FilesTarget, store: BackupStore, *, host: str, task_id: str, compression: Compression,
           dry_run: bool = False) -> Result:
    missing = [str(p) for p in target.paths if not p.exists()]
    if missing:
        raise PermanentError(f"files {target.name}: missing on {host}: {', '.join(missing)}")
    roots = [str(p) for p in target.paths]
    if dry_run:
        n = sum(1 for p in walk(target.paths, target.exclude) if p.is_file() and not p.is_symlink())
        return Result("ok", f"would archive {n} files of {target.name} from {', '.join(roots)}", {"files": n},
                      [f"tar {' '.join(roots)} | zstd -{compression.level} → {store.location}/files/{target.name}/"
                       f"<date>/<backup_id>/{OBJECT}, then manifest.json"])

    def produce(session: BackupSession) -> None:
        counts: dict[str, dict[str, Any]] = {r: {"files": 0, "bytes": 0, "method": "exact"} for r in roots}
        vanished = 0
        session.manifest.source = {"paths": roots, "exclude": target.exclude, "host": host}
        session.manifest.tools["tar"] = f"python {platform.python_version()} tarfile (pax)"
        with session.data_object(OBJECT, FORMAT) as out, \
                tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for path in walk(target.paths, target.exclude):
                try:
                    info = tar.gettarinfo(str(path), arcname=str(path).lstrip("/"))
                except FileNotFoundError:
                    vanished += 1  # deleted between listing and reading: not an error
                    continue
                except PermissionError:
                    raise PermanentError(f"files {target.name}: permission denied reading {path}") from None
                if info is None:  # sockets and the like
                    continue
                if info.isreg():
                    try:
                        with open(path, "rb") as fh:
                            tar.addfile(info, fh)
                    except PermissionError:
                        raise PermanentError(f"files {target.name}: permission denied reading {path}") from None
                    except OSError as exc:  # shrank while read: the tar member is broken, retry the backup
                        raise TransientError(f"files {target.name}: {path} changed while read ({exc})") from None
                    root = root_of(str(path), roots)
                    if root:
                        counts[root]["files"] += 1
                        counts[root]["bytes"] += info.size
                else:
                    tar.addfile(info)
        session.manifest.counts = counts
        session.manifest.source["vanished"] = vanished

    manifest = coordinate(store, "files", target.name, produce, host=host, task_id=task_id, compression=compression)
    files = sum(int(c["files"]) for c in manifest.counts.values())
    return backup_result(store, manifest, f"{files} files")


def _counts(tar: tarfile.TarFile, roots: list[str], extract_to: Path | None) -> dict[str, dict[str, int]]:
    out = {r: {"files": 0, "bytes": 0} for r in roots}
    for member in tar:
        if extract_to is not None:
            tar.extract(member, extract_to, filter="data")
        if member.isreg():
            root = root_of("/" + member.name, roots)
            if root:
                out[root]["files"] += 1
                out[root]["bytes"] += member.size
    return out


def _problems(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, int]]) -> list[str]:
    problems = []
    for root, entry in sorted(expected.items()):
        got = actual.get(root, {"files": 0, "bytes": 0})
        if got["files"] != int(entry["files"]) or got["bytes"] != int(entry["bytes"]):
            problems.append(f"{root}: {got['files']} files / {got['bytes']} bytes restored, manifest says "
                            f"{entry['files']} / {entry['bytes']}")
    return problems


def _read(store: BackupStore, record: BackupRecord, extract_to: Path | None) -> dict[str, dict[str, int]]:
    assert record.manifest is not None
    roots = list(record.manifest.counts)
    with closing(open_verified(store, record.ref.key(OBJECT), record.manifest.object(OBJECT))) as reader:
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                counts = _counts(tar, roots, extract_to)
        except tarfile.TarError as exc:
            reader.finish()  # a checksum mismatch explains a broken tar better than tarfile does
            raise PermanentError(f"{record.ref.key(OBJECT)}: not a readable tar: {exc}") from None
        reader.finish()
    return counts


def check_format(store: BackupStore, record: BackupRecord) -> str:
    assert record.manifest is not None
    counts = _read(store, record, None)
    problems = _problems(record.manifest.counts, counts)
    if problems:
        raise PermanentError(f"{record.ref.key(OBJECT)}: {problems[0]}")
    return f"tar ok: {sum(c['files'] for c in counts.values())} files"


def restore_test(store: BackupStore, record: BackupRecord) -> dict[str, Any]:
    assert record.manifest is not None
    with tempfile.TemporaryDirectory(prefix="maintd-files-") as tmp:
        started = time.monotonic()
        counts = _read(store, record, Path(tmp))
        duration = time.monotonic() - started
    return {"duration_s": round(duration, 3), "problems": _problems(record.manifest.counts, counts),
            "files": sum(c["files"] for c in counts.values()), "scratch": "temp directory"}


def restore(store: BackupStore, record: BackupRecord, into: str | None) -> list[str]:
    """Extract into ``into`` (a directory) or back to the original paths (``/``)."""
    dest = Path(into or "/")
    if not dest.is_absolute():
        raise PermanentError(f"restore destination {dest} must be an absolute path")
    dest.mkdir(parents=True, exist_ok=True)
    counts = _read(store, record, dest)
    files = sum(c["files"] for c in counts.values())
    return [f"extracted {files} files of {record.ref.backup_id} under {dest}"]
