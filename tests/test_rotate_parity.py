"""Parity with the real logrotate: the same tree, copied twice, rotated by ``/usr/sbin/logrotate
-s STATE -f`` and by maintd with the equivalent ``[[logs]]`` at the same clock; the same file
names and the same decompressed contents must result.

Deliberate differences, each named where a scenario meets it (and in
ops/runbooks/files.rotate_logs.md):
- SIZE_IS_ALWAYS_A_CONDITION: ``-f`` makes logrotate rotate whatever ``size`` says; maintd's
  schedule is the frequency and ``size`` always applies. The size scenario runs logrotate
  without ``-f`` (size criteria need no state).
- MISSING_IS_A_WARNING: without missingok, logrotate fails (exit 1); maintd's outcome is a
  warning naming the directory and pattern, the run itself succeeds.
- STALE_ROTATIONS_GO: rotations beyond the count already on disk (``rotate`` lowered, say)
  are deleted by maintd; logrotate deletes only the one shifted past the count and leaves
  others (with ``rotate 0`` it even shifts ``NAME.1`` to ``NAME.2`` and keeps it).
- DEFAULTS: maintd's defaults are notifempty, rotate 30, delete_after 30d; every scenario sets
  the logrotate defaults (ifempty, no maxage) explicitly, as ``maintd logs import`` does.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.core.files import rotate
from workers.config import LogsTarget

LOGROTATE = "/usr/sbin/logrotate"
DAY = 86400
pytestmark = pytest.mark.skipif(not os.access(LOGROTATE, os.X_OK), reason="logrotate not installed")


def lines(tag: str, n: int = 200) -> bytes:
    return b"".join(f"2026-11-24T10:{i % 60:02d}:00Z INFO {tag} request_id={i:06d} {{\"ok\": true}}\n".encode()
                    for i in range(n))


def put(root: Path, rel: str, data: bytes, age_days: float = 0) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(gzip.compress(data) if rel.endswith(".gz") else data)
    t = time.time() - age_days * DAY
    os.utime(p, (t, t))


def snapshot(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            out[str(p.relative_to(root))] = gzip.decompress(data) if p.name.endswith(".gz") else data
    return out


def logrotate(tmp: Path, tree: Path, directives: str, force: bool = True) -> subprocess.CompletedProcess[str]:
    conf = tmp / "logrotate.conf"
    conf.write_text(f"{tree}/logs/*.log {{\n{directives}\n}}\n")
    argv = [LOGROTATE, "-s", str(tmp / "state"), *(["-f"] if force else []), str(conf)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def maintd(tree: Path, **policy: Any) -> rotate.Result:
    base: dict[str, Any] = {"notifempty": False, "delete_after": "off", "compress": "none", "compress_after": "0s"}
    target = LogsTarget(name="parity", host="h1", path=tree / "logs", **{**base, **policy})
    return rotate.run(target, datetime.now().astimezone())


def twin(tmp_path: Path, files: dict[str, tuple[bytes, float]]) -> tuple[Path, Path]:
    a, b = tmp_path / "logrotate", tmp_path / "maintd"
    (a / "logs").mkdir(parents=True)
    for rel, (data, age) in files.items():
        put(a, rel, data, age)
    shutil.copytree(a, b, copy_function=shutil.copy2)
    return a, b


SCENARIOS: dict[str, dict[str, Any]] = {
    "rotate_count": dict(
        files={"logs/app.log": (lines("now"), 0), "logs/app.log.1.gz": (lines("one"), 1), "logs/app.log.2.gz": (lines("two"), 2)},
        directives="rotate 2\ncreate\ncompress", policy=dict(rotate=2, compress="gzip")),
    "maxage": dict(
        files={"logs/app.log": (lines("now"), 0), "logs/app.log.1.gz": (lines("one"), 1),
               "logs/app.log.2.gz": (lines("old"), 10), "logs/app.log.3.gz": (lines("older"), 20)},
        directives="rotate 5\ncreate\ncompress\nmaxage 3", policy=dict(rotate=5, compress="gzip", delete_after="3d")),
    "dateext": dict(
        files={"logs/app.log": (lines("now"), 0), "logs/app.log-20200101.gz": (lines("d1"), 3),
               "logs/app.log-20200102.gz": (lines("d2"), 2), "logs/app.log-20200103.gz": (lines("d3"), 1)},
        directives="rotate 3\ncreate\ncompress\ndateext\ndateformat -%Y%m%d",
        policy=dict(rotate=3, compress="gzip", dateext=True, dateformat="-%Y%m%d")),
    "delaycompress": dict(
        files={"logs/app.log": (lines("now"), 0), "logs/app.log.1": (lines("one"), 1), "logs/app.log.2.gz": (lines("two"), 2)},
        directives="rotate 3\ncreate\ncompress\ndelaycompress", policy=dict(rotate=3, compress="gzip", delaycompress=True)),
    "size_trigger": dict(  # SIZE_IS_ALWAYS_A_CONDITION: logrotate runs without -f here
        files={"logs/big.log": (lines("big", 400), 0), "logs/small.log": (lines("small", 3), 0)},
        directives="rotate 2\ncreate\nsize 10k", policy=dict(rotate=2, size="10k"), force=False),
    "notifempty": dict(
        files={"logs/full.log": (lines("full"), 0), "logs/empty.log": (b"", 0)},
        directives="rotate 2\ncreate\nnotifempty\ncompress", policy=dict(rotate=2, notifempty=True, compress="gzip")),
    "missingok": dict(
        files={"logs/readme.txt": (b"no logs here\n", 0)},
        directives="rotate 2\ncreate\nmissingok", policy=dict(rotate=2, missingok=True)),
    "olddir": dict(
        files={"logs/app.log": (lines("now"), 0), "logs/old/app.log.1.gz": (lines("one"), 1),
               "logs/old/app.log.2.gz": (lines("two"), 2)},
        directives="rotate 2\ncreate\ncompress\nolddir old", policy=dict(rotate=2, compress="gzip", olddir="old")),
    "rotate_zero": dict(  # STALE_ROTATIONS_GO: no older rotation here (logrotate would keep it, shifted)
        files={"logs/app.log": (lines("now"), 0)},
        directives="rotate 0\ncreate", policy=dict(rotate=0)),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_names_and_contents_as_logrotate(tmp_path: Path, name: str) -> None:
    sc = SCENARIOS[name]
    a, b = twin(tmp_path, sc["files"])
    before = snapshot(a)
    done = logrotate(tmp_path, a, sc["directives"], force=sc.get("force", True))
    assert done.returncode == 0, done.stderr
    result = maintd(b, **sc["policy"])
    assert result.status == "ok", result.summary
    got, want = snapshot(b), snapshot(a)
    assert sorted(got) == sorted(want), name
    for rel in want:
        assert got[rel] == want[rel], f"{name}: {rel} differs"
    if name != "missingok":
        assert want != before, f"{name}: the scenario rotated nothing"


def test_missing_without_missingok_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    """MISSING_IS_A_WARNING: logrotate exits 1; maintd warns, names the directory and pattern, changes nothing."""
    a, b = twin(tmp_path, {"logs/readme.txt": (b"x\n", 0)})
    assert logrotate(tmp_path, a, "rotate 2\ncreate").returncode != 0
    result = maintd(b, rotate=2)
    assert result.status == "warning"
    assert "*.log" in result.summary and str(b / "logs") in result.summary
    assert snapshot(a) == snapshot(b)


def test_size_is_a_condition_even_when_logrotate_is_forced(tmp_path: Path) -> None:
    """SIZE_IS_ALWAYS_A_CONDITION, shown: ``-f`` rotates the small file, maintd does not."""
    sc = SCENARIOS["size_trigger"]
    a, b = twin(tmp_path, sc["files"])
    assert logrotate(tmp_path, a, sc["directives"], force=True).returncode == 0
    maintd(b, **sc["policy"])
    assert "logs/small.log.1" in snapshot(a) and "logs/small.log.1" not in snapshot(b)


def test_stale_rotations_beyond_the_count_go(tmp_path: Path) -> None:
    """STALE_ROTATIONS_GO, shown: with ``rotate 0`` logrotate keeps an old ``NAME.1`` (as ``.2``), maintd deletes it."""
    a, b = twin(tmp_path, {"logs/app.log": (lines("now"), 0), "logs/app.log.1": (lines("one"), 1)})
    assert logrotate(tmp_path, a, "rotate 0\ncreate").returncode == 0
    maintd(b, rotate=0)
    assert "logs/app.log.2" in snapshot(a)
    assert sorted(snapshot(b)) == ["logs/app.log"]
