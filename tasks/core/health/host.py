"""``health.host`` (host-pinned): CPU, memory, every real mount's disk usage and load per
CPU of the machine the worker runs on, via psutil.

Load is graded on the 5-minute average per CPU (the 1-minute one flaps on every cron
burst); CPU is sampled over ``CPU_SAMPLE_S``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tasks.core.findings import Findings
from workers.config import HostTarget, Thresholds
from workers.records.outcome import Result

logger = logging.getLogger(__name__)

CPU_SAMPLE_S = 1.0
# Filesystems that are not disks: their "usage" is memory or a read-only image.
PSEUDO_FS = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
    "efivarfs", "fuse.lxcfs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "proc", "pstore",
    "ramfs", "rpc_pipefs", "securityfs", "squashfs", "sysfs", "tmpfs", "tracefs", "udf",
})


@dataclass(frozen=True)
class HostSnapshot:
    hostname: str
    cpu_percent: float
    memory_percent: float
    cpus: int
    load: tuple[float, float, float]
    disks: dict[str, float] = field(default_factory=dict)  # mount -> percent used
    missing_mounts: list[str] = field(default_factory=list)
    uptime_s: float = 0.0
    disk_used_bytes: dict[str, int] = field(default_factory=dict)  # mount -> bytes used (capacity trends)

    @property
    def load_per_cpu(self) -> float:
        return round(self.load[1] / max(1, self.cpus), 2)

LOG_DIRS_BUDGET_S = 5.0  # all [[logs]] directories of the host together


def real_mounts() -> list[str]:
    """Mount points of real filesystems (one per device), "/" when none are found."""
    by_device: dict[str, str] = {}
    for part in psutil.disk_partitions(all=False):
        if part.fstype in PSEUDO_FS or part.mountpoint.startswith(("/snap/", "/boot/efi")):
            continue
        current = by_device.get(part.device)
        # A device mounted twice (bind mounts) is one disk: keep its shortest mount point.
        if current is None or len(part.mountpoint) < len(current):
            by_device[part.device] = part.mountpoint
    return sorted(set(by_device.values())) or ["/"]


def collect(target: HostTarget) -> HostSnapshot:
    mounts = list(target.mounts) or real_mounts()
    disks: dict[str, float] = {}
    used: dict[str, int] = {}
    missing: list[str] = []
    for mount in mounts:
        try:
            usage = psutil.disk_usage(mount)
            disks[mount], used[mount] = round(usage.percent, 1), int(usage.used)
        except OSError:
            missing.append(mount)
    cpu = psutil.cpu_percent(interval=CPU_SAMPLE_S)
    return HostSnapshot(
        hostname=socket.gethostname(), cpu_percent=round(cpu, 1),
        memory_percent=round(psutil.virtual_memory().percent, 1), cpus=psutil.cpu_count() or 1,
        load=tuple(round(x, 2) for x in os.getloadavg()),  # type: ignore[arg-type]
        disks=disks, missing_mounts=missing, uptime_s=round(time.time() - psutil.boot_time()),
        disk_used_bytes=used,
    )


def assess(snap: HostSnapshot, thresholds: Thresholds) -> Result:
    """Grade a snapshot: pure, so the thresholds are tested with tables of cases."""
    found = Findings()
    found.grade("cpu", snap.cpu_percent, thresholds.cpu_percent, unit="%")
    found.grade("memory", snap.memory_percent, thresholds.memory_percent, unit="%")
    for mount, used in sorted(snap.disks.items()):
        found.grade(f"disk {mount}", used, thresholds.disk_percent, unit="%")
    for mount in snap.missing_mounts:
        found.add("critical", f"mount {mount} not found")
    found.grade("load per cpu (5m)", snap.load_per_cpu, thresholds.load_per_cpu)

    fullest = max(snap.disks.items(), key=lambda kv: kv[1], default=None)
    disk = f"disk {fullest[1]:.0f}% ({fullest[0]})" if fullest else "no disks"
    if len(snap.disks) > 1:
        disk += f" of {len(snap.disks)} mounts"
    headline = (f"host {snap.hostname}: cpu {snap.cpu_percent:.0f}%, memory {snap.memory_percent:.0f}%, {disk}, "
                f"load {snap.load[1]:.2f}/{snap.cpus} cpus")
    metrics: dict[str, Any] = {
        "hostname": snap.hostname, "cpu_percent": snap.cpu_percent, "memory_percent": snap.memory_percent,
        "disk_percent": fullest[1] if fullest else None, "disks": snap.disks,
        "disk_used_bytes": snap.disk_used_bytes,
        "missing_mounts": snap.missing_mounts, "load_1": snap.load[0], "load_5": snap.load[1],
        "load_15": snap.load[2], "cpus": snap.cpus, "load_per_cpu": snap.load_per_cpu, "uptime_s": snap.uptime_s,
    }
    return found.result(headline, metrics)


def dir_bytes(path: Path, deadline: float, max_entries: int = 200_000) -> int | None:
    """Bytes of the regular files under ``path`` (symlinks not followed); None when it cannot
    be read or the walk would not end in time (a size trend then has a gap, not a wrong point)."""
    total, seen, stack = 0, 0, [path]
    try:
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > max_entries or time.monotonic() > deadline:
                        return None
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
    except OSError:
        return None
    return total


def check(target: HostTarget, thresholds: Thresholds, log_dirs: dict[str, Path] | None = None) -> Result:
    """Measure the machine this worker runs on (the target's host, by routing), and the size of
    the ``[[logs]]`` directories that live on it (for the capacity forecast)."""
    result = assess(collect(target), thresholds)
    deadline = time.monotonic() + LOG_DIRS_BUDGET_S
    sizes = {name: dir_bytes(path, deadline) for name, path in sorted((log_dirs or {}).items())}
    extra = {"log_dirs": {k: v for k, v in sizes.items() if v is not None}} if sizes else {}
    return Result(result.status, result.summary, {**result.metrics, **extra, "target_host": target.host})
