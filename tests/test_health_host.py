"""health.host's check on this machine (real psutil readings) and its grading table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from tasks.core.health import host as hc
from workers.config import HostTarget, Thresholds

# Other suites share this machine: "ok" is only asserted with limits nothing reaches.
NEVER = (1e9, 1e9)
CALM = Thresholds(cpu_percent=NEVER, memory_percent=NEVER, disk_percent=NEVER, load_per_cpu=NEVER)


def target(**kw: object) -> HostTarget:
    return HostTarget.model_validate({"name": "testhost", **kw})


def test_real_machine_metrics() -> None:
    result = hc.check(target(), CALM)
    assert result.status == "ok", result.summary
    m = result.metrics
    assert 0 <= m["cpu_percent"] <= 100 and 0 < m["memory_percent"] <= 100
    assert m["disks"] and all(0 <= v <= 100 for v in m["disks"].values())
    assert m["disk_percent"] == max(m["disks"].values())
    assert m["cpus"] == psutil.cpu_count() and m["load_per_cpu"] >= 0 and m["uptime_s"] > 0
    assert m["target_host"] == "testhost"
    assert result.summary.startswith(f"host {m['hostname']}: cpu ") and "load" in result.summary


def test_real_mounts_skip_pseudo_filesystems() -> None:
    mounts = hc.real_mounts()
    assert mounts
    kinds = {p.mountpoint: p.fstype for p in psutil.disk_partitions(all=True)}
    assert not any(kinds.get(m) in hc.PSEUDO_FS for m in mounts)


def test_each_mount_graded_and_named() -> None:
    result = hc.check(target(), replace_thresholds(disk_percent=(0.0001, 0.0002)))
    assert result.status == "critical"
    mount = next(iter(result.metrics["disks"]))
    assert f"disk {mount}" in result.summary


def test_configured_mounts_and_a_missing_one(tmp_path: Path) -> None:
    result = hc.check(target(mounts=[str(tmp_path), "/no/such/mount-xyz"]), CALM)
    assert result.status == "critical"
    assert str(tmp_path) in result.metrics["disks"]
    assert "mount /no/such/mount-xyz not found" in result.summary


def replace_thresholds(**kw: object) -> Thresholds:
    return Thresholds.model_validate({**CALM.model_dump(), **kw})


BASE = hc.HostSnapshot(hostname="app1", cpu_percent=20, memory_percent=50, cpus=4, load=(1.0, 2.0, 2.0),
                       disks={"/": 40.0, "/var": 50.0})


@pytest.mark.parametrize(("changes", "status", "reason"), [
    ({}, "ok", None),
    ({"cpu_percent": 80.0}, "warning", "cpu 80% >= 80%"),
    ({"cpu_percent": 95.0}, "critical", "cpu 95% >= 90%"),
    ({"memory_percent": 84.9}, "ok", None),
    ({"memory_percent": 85.0}, "warning", "memory 85% >= 85%"),
    ({"memory_percent": 96.0}, "critical", "memory 96% >= 95%"),
    ({"disks": {"/": 40.0, "/var": 81.0}}, "warning", "disk /var 81% >= 80%"),
    ({"disks": {"/": 91.0, "/var": 81.0}}, "critical", "disk / 91% >= 90%"),
    ({"load": (9.0, 6.0, 1.0)}, "warning", "load per cpu (5m) 1.5 >= 1.5"),  # 6 / 4 cpus
    ({"load": (1.0, 12.0, 1.0)}, "critical", "load per cpu (5m) 3 >= 3"),
    ({"load": (40.0, 2.0, 1.0)}, "ok", None),  # a 1-minute spike alone does not page
    ({"missing_mounts": ["/data"]}, "critical", "mount /data not found"),
])
def test_assess_table(changes: dict[str, object], status: str, reason: str | None) -> None:
    result = hc.assess(replace(BASE, **changes), Thresholds())  # type: ignore[arg-type]
    assert result.status == status, result.summary
    if reason:
        assert reason in result.metrics["problems"][0]


def test_assess_summary() -> None:
    assert hc.assess(BASE, Thresholds()).summary == (
        "host app1: cpu 20%, memory 50%, disk 50% (/var) of 2 mounts, load 2.00/4 cpus")
