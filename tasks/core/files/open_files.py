"""Which files processes have open: ``(st_dev, st_ino)`` of every open descriptor and every
working directory, from ``/proc/<pid>/fd`` (psutil where there is no ``/proc``).

A file some process holds open is never deleted: a tmp file being written, a socket's
backing file, a database in use. Processes of other users are only visible to root (or a
worker with CAP_SYS_PTRACE); ``unreadable`` counts the processes that could not be looked
into, so a run can say it could not see everything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class OpenFiles:
    inodes: set[tuple[int, int]] = field(default_factory=set)
    processes: int = 0
    unreadable: int = 0

    def holds(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino) in self.inodes


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def scan(proc: Path = Path("/proc"), *, skip_self: bool = False) -> OpenFiles:
    """Every open file and working directory of every process this user can see (but this
    one with ``skip_self``)."""
    found = OpenFiles()
    if not (proc / "self" / "fd").is_dir():
        return _scan_psutil(found)
    me = str(os.getpid())
    for pid in os.listdir(proc):
        if not pid.isdigit() or (skip_self and pid == me):
            continue
        base = f"{proc}/{pid}"
        try:
            fds = os.listdir(f"{base}/fd")
        except FileNotFoundError:
            continue  # exited meanwhile
        except PermissionError:
            found.unreadable += 1
            continue
        found.processes += 1
        for fd in fds:
            st = _stat(f"{base}/fd/{fd}")
            if st is not None:
                found.inodes.add((st.st_dev, st.st_ino))
        st = _stat(f"{base}/cwd")
        if st is not None:
            found.inodes.add((st.st_dev, st.st_ino))
    return found


def _scan_psutil(found: OpenFiles) -> OpenFiles:
    for p in psutil.process_iter():
        try:
            paths = [f.path for f in p.open_files()] + [p.cwd()]
        except (psutil.AccessDenied, psutil.ZombieProcess):
            found.unreadable += 1
            continue
        except psutil.NoSuchProcess:
            continue
        found.processes += 1
        for path in paths:
            st = _stat(path)
            if st is not None:
                found.inodes.add((st.st_dev, st.st_ino))
    return found
