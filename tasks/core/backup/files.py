"""``backup.files``: a tar (pax) of the configured paths, streamed through zstd into the
store, on the host the files live on. Members are stored relative to ``/``.

Ordinary trees hold absolute symlinks (``/etc/ssl/certs/*.pem``, ``/opt/app/current``),
FIFOs and setgid directories, which tarfile's ``data`` filter refuses or strips. So:
- backup: regular files, directories, symlinks (as links, never followed) and hard links
  are archived with their modes and owners; FIFOs, sockets and devices are skipped and
  reported (``manifest.source.skipped_special``);
- restore (``RestoreFilter``): symlinks are recreated as symlinks whatever they point to,
  but nothing is ever written *through* a symlink: every member's parent must resolve
  inside the restore root, a symlink found where the backup has a file or directory is
  replaced, hard links must point inside the root; special members are skipped and
  reported; modes are kept (setuid/setgid/sticky included) and, as root, owners (by name,
  else by number) — as ``tar --preserve-permissions --same-owner`` does.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import platform
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from tasks.core.backup.coordinate import BackupSession, Compression, backup_result, coordinate
from tasks.core.backup.inventory import BackupRecord
from tasks.core.backup.store import BackupStore
from tasks.core.backup.stream import open_verified
from workers.config import FilesTarget
from workers.errors import PermanentError, TransientError
from workers.records.outcome import Result

logger = logging.getLogger(__name__)
OBJECT = "files.tar.zst"
FORMAT = "tar"
REPORT_MAX = 20  # special files named in a report (all are counted)


def special_kind(info: tarfile.TarInfo) -> str | None:
    """What kind of special file a member is (None for files, directories and links)."""
    if info.isreg() or info.isdir() or info.issym() or info.islnk():
        return None
    return {tarfile.FIFOTYPE: "fifo", tarfile.CHRTYPE: "character device",
            tarfile.BLKTYPE: "block device"}.get(info.type, "special file")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class RestoreFilter:
    """A tarfile extraction filter for restores (see the module docstring)."""

    def __init__(self, dest: Path) -> None:
        self.root = os.path.realpath(dest)
        self.skipped: list[str] = []

    def __call__(self, member: tarfile.TarInfo, _dest: str) -> tarfile.TarInfo | None:
        name = member.name
        if name.startswith("/") or ".." in name.split("/"):
            raise tarfile.OutsideDestinationError(member, name)
        kind = special_kind(member)
        if kind is not None:
            self.skipped.append(f"/{name} ({kind})")
            return None
        target = os.path.join(self.root, name)
        parent = os.path.realpath(os.path.dirname(target))  # resolves symlinks already extracted or present
        if not _inside(parent, self.root):
            raise tarfile.OutsideDestinationError(member, parent)
        final = os.path.join(parent, os.path.basename(target))
        if member.islnk():
            linked = os.path.realpath(os.path.join(self.root, member.linkname))
            if member.linkname.startswith("/") or not _inside(linked, self.root):
                raise tarfile.LinkOutsideDestinationError(member, linked)
        if os.path.islink(final) and not member.issym() or member.islnk() and os.path.lexists(final):
            os.unlink(final)  # never write through a link that is there now: the backup says what this is
        return member


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


def size_estimate(roots: list[Path], exclude: list[str]) -> int:
    """Bytes of the regular files to archive (an ``lstat`` pass): sizes the store's parts."""
    total = 0
    for path in walk(roots, exclude):
        try:
            st = path.lstat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
    return total


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
    skipped: list[str] = []

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
                kind = "socket" if info is None else special_kind(info)
                if info is None or kind is not None:  # nothing to restore from: named, not archived
                    skipped.append(f"{path} ({kind})")
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
        session.manifest.source["skipped_special"] = {"count": len(skipped), "paths": skipped[:REPORT_MAX]}

    estimate = size_estimate(target.paths, target.exclude) if store.sizes_parts else None  # an lstat pass
    manifest = coordinate(store, "files", target.name, produce, host=host, task_id=task_id, compression=compression,
                          size_hint=estimate)
    files = sum(int(c["files"]) for c in manifest.counts.values())
    result = backup_result(store, manifest, f"{files} files" + (f", {len(skipped)} special files skipped (not "
                                                                 f"restorable: {', '.join(skipped[:3])})" if skipped else ""))
    if skipped:
        result.metrics["skipped_special"] = skipped[:REPORT_MAX]
    return result


class _Read:
    """What reading (and maybe extracting) an archive found: counts per root, skipped members."""

    def __init__(self, roots: list[str]) -> None:
        self.counts = {r: {"files": 0, "bytes": 0} for r in roots}
        self.roots = roots
        self.skipped: list[str] = []
        self.symlinks = 0

    def tally(self, tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        for member in tar:
            if member.isreg():
                root = root_of("/" + member.name, self.roots)
                if root:
                    self.counts[root]["files"] += 1
                    self.counts[root]["bytes"] += member.size
            elif member.issym():
                self.symlinks += 1
            yield member


def _problems(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, int]]) -> list[str]:
    problems = []
    for root, entry in sorted(expected.items()):
        got = actual.get(root, {"files": 0, "bytes": 0})
        if got["files"] != int(entry["files"]) or got["bytes"] != int(entry["bytes"]):
            problems.append(f"{root}: {got['files']} files / {got['bytes']} bytes restored, manifest says "
                            f"{entry['files']} / {entry['bytes']}")
    return problems


def _read(store: BackupStore, record: BackupRecord, extract_to: Path | None) -> _Read:
    assert record.manifest is not None
    found = _Read(list(record.manifest.counts))
    key = record.ref.key(OBJECT)
    with closing(open_verified(store, key, record.manifest.object(OBJECT))) as reader:
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                if extract_to is None:
                    for _member in found.tally(tar):
                        pass
                else:
                    keep = RestoreFilter(extract_to)
                    tar.extractall(keep.root, members=found.tally(tar), filter=keep)
                    found.skipped = keep.skipped
        except tarfile.FilterError as exc:
            raise PermanentError(f"{key}: refused to extract {exc}") from None
        except tarfile.TarError as exc:
            reader.finish()  # a checksum mismatch explains a broken tar better than tarfile does
            raise PermanentError(f"{key}: not a readable tar: {exc}") from None
        except OSError as exc:
            raise PermanentError(f"{key}: extraction under {extract_to} stopped: {exc}") from None
        reader.finish()
    return found


def check_format(store: BackupStore, record: BackupRecord) -> str:
    assert record.manifest is not None
    found = _read(store, record, None)
    problems = _problems(record.manifest.counts, found.counts)
    if problems:
        raise PermanentError(f"{record.ref.key(OBJECT)}: {problems[0]}")
    return f"tar ok: {sum(c['files'] for c in found.counts.values())} files, {found.symlinks} symlinks"


def restore_test(store: BackupStore, record: BackupRecord) -> dict[str, Any]:
    assert record.manifest is not None
    with tempfile.TemporaryDirectory(prefix="maintd-files-") as tmp:
        started = time.monotonic()
        found = _read(store, record, Path(tmp))
        duration = time.monotonic() - started
    return {"duration_s": round(duration, 3), "problems": _problems(record.manifest.counts, found.counts),
            "files": sum(c["files"] for c in found.counts.values()), "symlinks": found.symlinks,
            "skipped_special": found.skipped[:REPORT_MAX], "scratch": "temp directory"}


def restore(store: BackupStore, record: BackupRecord, into: str | None) -> list[str]:
    """Extract into ``into`` (a directory) or back to the original paths (``/``)."""
    dest = Path(into or "/")
    if not dest.is_absolute():
        raise PermanentError(f"restore destination {dest} must be an absolute path")
    dest.mkdir(parents=True, exist_ok=True)
    found = _read(store, record, dest)
    files = sum(c["files"] for c in found.counts.values())
    owners = "modes and owners" if os.geteuid() == 0 else "modes (owners need root)"
    actions = [f"extracted {files} files and {found.symlinks} symlinks of {record.ref.backup_id} under {dest},"
               f" {owners} kept"]
    if found.skipped:
        actions.append(f"skipped {len(found.skipped)} special files: {', '.join(found.skipped[:REPORT_MAX])}")
    return actions
