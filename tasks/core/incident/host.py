"""The host part of a snapshot (the machine of the worker that captures): CPU, memory and
load, the processes using the most CPU and memory, disk and inode use per mount (psutil)."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import psutil

from tasks.core.health.host import real_mounts
from tasks.core.incident.mask import mask_text

CPU_SAMPLE_S = 0.5
ATTRS = ["pid", "ppid", "name", "username", "status", "create_time", "num_threads", "memory_info", "memory_percent",
         "cmdline"]


def processes(top: int, *owners: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(top by CPU, top by memory, number of processes); CPU sampled over ``CPU_SAMPLE_S``."""
    procs = []
    for p in psutil.process_iter(ATTRS):
        try:
            p.cpu_percent(None)
            procs.append(p)
        except psutil.Error:
            continue
    time.sleep(CPU_SAMPLE_S)
    now = time.time()
    rows = []
    for p in procs:
        try:
            cpu = p.cpu_percent(None)
        except psutil.Error:
            continue
        info = p.info
        mem = info.get("memory_info")
        cmd = " ".join(" ".join(info.get("cmdline") or []).split()) or f"[{info.get('name')}]"
        rows.append({"pid": info["pid"], "ppid": info.get("ppid"), "name": info.get("name"),
                     "user": info.get("username"), "status": info.get("status"), "cpu_percent": round(cpu, 1),
                     "rss_mb": round(mem.rss / 2**20, 1) if mem else None,
                     "memory_percent": round(info.get("memory_percent") or 0.0, 1),
                     "threads": info.get("num_threads"),
                     "age_s": round(now - info["create_time"]) if info.get("create_time") else None,
                     "cmdline": mask_text(cmd, *owners, sql=False)[:300]})
    by_cpu = sorted(rows, key=lambda r: -r["cpu_percent"])[:top]
    by_mem = sorted(rows, key=lambda r: -(r["rss_mb"] or 0))[:top]
    return by_cpu, by_mem, len(rows)


def disks() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for mount in real_mounts():
        try:
            usage = psutil.disk_usage(mount)
            st = os.statvfs(mount)
        except OSError as exc:
            out.append({"mount": mount, "error": exc.strerror or str(exc)})
            continue
        inodes = round(100.0 * (st.f_files - st.f_ffree) / st.f_files, 1) if st.f_files else None
        out.append({"mount": mount, "percent": round(usage.percent, 1), "total_gb": round(usage.total / 2**30, 2),
                    "free_gb": round(usage.free / 2**30, 2), "inodes_percent": inodes})
    return out


def snapshot(top: int, *owners: Any) -> dict[str, Any]:
    psutil.cpu_percent(None)
    by_cpu, by_mem, count = processes(top, *owners)
    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    return {"hostname": socket.gethostname(), "cpus": psutil.cpu_count() or 1,
            "cpu_percent": round(psutil.cpu_percent(None), 1), "load": [round(x, 2) for x in os.getloadavg()],
            "memory_percent": round(vm.percent, 1), "memory_available_mb": round(vm.available / 2**20),
            "swap_percent": round(swap.percent, 1), "processes": count, "top_cpu": by_cpu, "top_memory": by_mem,
            "disks": disks()}
