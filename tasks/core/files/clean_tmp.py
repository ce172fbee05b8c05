"""``files.clean_tmp``: delete old temporary files under one root, safely.

- Never follows a symlink and never leaves the root: the tree is walked and changed through
  directory descriptors opened with ``O_NOFOLLOW`` (a directory swapped for a symlink between
  the plan and the deletion makes its open fail: that entry is skipped), and never across
  a mount point (like ``find -xdev``). A symlink that matches is removed itself, never its target.
- A file is a candidate when its name, or the name of a directory between it and the root,
  matches ``pattern`` and nothing in ``exclude`` matches its name or relative path; the
  ``keep_newest`` newest candidates stay whatever their age; the others go when their mtime
  is older than ``older_than``. Directories a deletion leaves empty (inside a matching one) go too.
- Never deletes a file a process holds open, nor a directory that is one's working
  directory (``open_files``). Sockets, FIFOs and devices are left alone.
- Dry run: the exact list of what would go, as the actions.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from tasks.core.files import open_files
from tasks.core.units import human_bytes
from workers.config import TmpTarget, parse_age
from workers.errors import PermanentError
from workers.records.outcome import Result

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Item:
    rel: tuple[str, ...]  # path parts below the root
    dev: int
    ino: int
    mtime: float
    size: int
    is_dir: bool = False

    @property
    def path(self) -> str:
        return "/".join(self.rel)


@dataclass
class Plan:
    files: list[Item] = field(default_factory=list)  # to delete, deepest first within a directory
    dirs: list[Item] = field(default_factory=list)  # to remove once emptied, deepest first
    kept_newest: int = 0
    in_use: list[str] = field(default_factory=list)
    skipped_special: int = 0
    other_mounts: int = 0
    seen: int = 0


def _excluded(target: TmpTarget, name: str, rel: str) -> bool:
    return any(fnmatchcase(name, p) or fnmatchcase(rel, p) for p in target.exclude)


def plan(target: TmpTarget, *, now: float | None = None, held: open_files.OpenFiles | None = None) -> Plan:
    """What a run would delete now (nothing is changed)."""
    now = time.time() if now is None else now
    cutoff = now - parse_age(target.older_than).total_seconds()
    held = held if held is not None else open_files.scan()
    try:
        root_fd = os.open(target.path, _DIR_FLAGS)
    except FileNotFoundError:
        return Plan()
    except OSError as exc:
        raise PermanentError(f"tmp {target.name}: cannot open {target.path}: {exc.strerror}") from None
    out = Plan()
    candidates: list[Item] = []
    matched_dirs: list[tuple[Item, list[Item]]] = []
    try:
        root_dev = os.fstat(root_fd).st_dev
        _walk(target, root_fd, (), False, root_dev, out, candidates, matched_dirs)
    finally:
        os.close(root_fd)
    candidates.sort(key=lambda i: (-i.mtime, i.path))
    out.kept_newest = min(target.keep_newest, len(candidates))
    going: set[tuple[str, ...]] = set()
    for item in candidates[target.keep_newest:]:
        if item.mtime >= cutoff:
            continue
        if (item.dev, item.ino) in held.inodes:
            out.in_use.append(item.path)
            continue
        if len(out.files) >= target.max_deletions:
            break
        out.files.append(item)
        going.add(item.rel)
    # A matched directory goes when everything in it goes (children listed before parents).
    for d, children in matched_dirs:
        if (d.dev, d.ino) in held.inodes:
            continue
        if all(c.rel in going for c in children) and (children or d.mtime < cutoff):
            out.dirs.append(d)
            going.add(d.rel)
    return out


def _walk(target: TmpTarget, fd: int, rel: tuple[str, ...], inside_match: bool, root_dev: int, out: Plan,
          candidates: list[Item], matched_dirs: list[tuple[Item, list[Item]]]) -> list[Item]:
    """Entries of the directory ``fd`` (recursively); returns the direct children seen."""
    children: list[Item] = []
    with os.scandir(fd) as entries:
        listing = list(entries)
    for entry in listing:
        name = entry.name
        sub = (*rel, name)
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        out.seen += 1
        if _excluded(target, name, "/".join(sub)):
            children.append(Item(sub, st.st_dev, st.st_ino, st.st_mtime, 0, True))  # stays: parent stays too
            continue
        matched = inside_match or fnmatchcase(name, target.pattern)
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev != root_dev:
                out.other_mounts += 1
                children.append(Item(sub, st.st_dev, st.st_ino, st.st_mtime, 0, True))
                continue
            item = Item(sub, st.st_dev, st.st_ino, st.st_mtime, 0, True)
            children.append(item)
            try:
                sub_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # gone, replaced by a symlink, or unreadable: it stays
            try:
                if (os.fstat(sub_fd).st_ino, os.fstat(sub_fd).st_dev) != (st.st_ino, st.st_dev):
                    continue
                grand = _walk(target, sub_fd, sub, matched, root_dev, out, candidates, matched_dirs)
            finally:
                os.close(sub_fd)
            if matched:
                matched_dirs.append((item, grand))
        elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            item = Item(sub, st.st_dev, st.st_ino, st.st_mtime, st.st_size if stat.S_ISREG(st.st_mode) else 0)
            children.append(item)
            if matched:
                candidates.append(item)
        else:
            out.skipped_special += 1
            children.append(Item(sub, st.st_dev, st.st_ino, st.st_mtime, 0, True))
    return children


def _open_parent(root_fd: int, rel: tuple[str, ...]) -> int:
    """The directory holding ``rel``, reached from the root one component at a time, no symlinks."""
    fd = os.dup(root_fd)
    for part in rel[:-1]:
        try:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = nxt
    return fd


def _remove(root_fd: int, item: Item, cutoff: float, held: open_files.OpenFiles) -> bool:
    """Delete ``item`` if it is still the same file, still old, still not held open."""
    try:
        parent = _open_parent(root_fd, item.rel)
    except OSError:
        return False
    try:
        st = os.stat(item.rel[-1], dir_fd=parent, follow_symlinks=False)
        if (st.st_dev, st.st_ino) != (item.dev, item.ino) or held.holds(st):
            return False
        if item.is_dir:
            os.rmdir(item.rel[-1], dir_fd=parent)
        else:
            if st.st_mtime >= cutoff:
                return False  # written since the plan
            os.unlink(item.rel[-1], dir_fd=parent)
        return True
    except OSError:
        return False
    finally:
        os.close(parent)


def clean(target: TmpTarget, *, dry_run: bool, remaining_s: Callable[[], float] = lambda: 1e9,
          checkpoint: Callable[[], None] = lambda: None, now: float | None = None) -> Result:
    now = time.time() if now is None else now
    cutoff = now - parse_age(target.older_than).total_seconds()
    root = str(target.path).rstrip("/")
    if not os.path.lexists(target.path):
        return Result("warning", f"{root} does not exist on {os.uname().nodename}: nothing to clean (check the"
                                 " [[tmp]] path)", {"root": root, "root_exists": False}, [])
    held = open_files.scan()
    p = plan(target, now=now, held=held)
    size = sum(i.size for i in p.files)
    metrics: dict[str, object] = {
        "root": root, "seen": p.seen, "planned_files": len(p.files), "planned_dirs": len(p.dirs),
        "planned_bytes": size, "kept_newest": p.kept_newest, "in_use": len(p.in_use),
        "in_use_paths": [f"{root}/{x}" for x in p.in_use[:20]], "skipped_special": p.skipped_special,
        "other_mounts": p.other_mounts, "processes_unreadable": held.unreadable,
    }
    what = (f"{len(p.files)} file(s) ({human_bytes(size)})"
            + (f" and {len(p.dirs)} emptied director{'y' if len(p.dirs) == 1 else 'ies'}" if p.dirs else ""))
    notes = [f"{len(p.in_use)} in use kept"] if p.in_use else []
    if held.unreadable:
        notes.append(f"{held.unreadable} processes' open files not visible (run as root to see them)")
    tail = f" ({'; '.join(notes)})" if notes else ""
    if dry_run:
        actions = [f"rm {root}/{i.path}" for i in p.files] + [f"rmdir {root}/{d.path}" for d in p.dirs]
        return Result("ok", f"would delete {what} under {root} matching {target.pattern!r} older than"
                            f" {target.older_than}{tail}", metrics, actions)
    if not p.files and not p.dirs:
        return Result("ok", f"nothing to delete under {root} ({p.seen} entries seen){tail}", metrics, [])
    root_fd = os.open(target.path, _DIR_FLAGS)
    deleted, freed, actions, out_of_time = 0, 0, [], False
    try:
        for n, item in enumerate([*p.files, *p.dirs]):
            if n % 100 == 0:
                checkpoint()
                if remaining_s() <= 0:
                    out_of_time = True
                    break
            if _remove(root_fd, item, cutoff, held):
                deleted += 1
                freed += item.size
                actions.append(f"{'rmdir' if item.is_dir else 'rm'} {root}/{item.path}")
    finally:
        os.close(root_fd)
    metrics.update(deleted=deleted, freed_bytes=freed, changed_meanwhile=len(p.files) + len(p.dirs) - deleted)
    status = "warning" if out_of_time else "ok"
    stop = "; stopped at the time budget, the rest goes next run" if out_of_time else ""
    return Result(status, f"deleted {deleted} of {len(p.files) + len(p.dirs)} planned under {root},"
                          f" freed {human_bytes(freed)}{tail}{stop}", metrics, actions)

