"""Benchmark: backup.files (its lstat pass for the size estimate, then a pax tar through
multithreaded zstd into a directory store, with sha256) against the runbooks'
`tar -cf - DIR | zstd` (GNU tar, zstd CLI) on the same generated tree in the same run,
interleaved; then backup.verify's re-hash of that backup against `zstd -dc | tar -t`.

    .venv/bin/python bench/files.py [--files 20000] [--mb 200] [--runs 3]

The tree is an application directory: text files of varied sizes (config, logs, templates
made from templates, so they compress like real ones), some binary, symlinks (absolute and
relative), a FIFO. Prints medians and the ratio. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.core.backup import files, verify  # noqa: E402
from tasks.core.backup.coordinate import Compression  # noqa: E402
from tasks.core.backup.local import LocalStore  # noqa: E402
from workers.config import FilesTarget  # noqa: E402

LINES = ["{ts} INFO request id={n} path=/api/v1/items/{n} status=200 took={ms}ms",
         "{ts} WARN slow query on table orders: {ms}ms (rows={n})",
         "setting_{n} = \"value-{n}\"  # default {ms}", "<div class=\"row\" data-id=\"{n}\">{{{{ item.name }}}}</div>"]


def make_tree(root: Path, n_files: int, total_mb: int, rng: random.Random) -> int:
    per = total_mb * 1024 * 1024 // n_files
    written = 0
    for i in range(n_files):
        d = root / f"d{i % 97:02d}" / f"s{i % 13}"
        d.mkdir(parents=True, exist_ok=True)
        size = max(64, int(rng.expovariate(1 / per)))
        if i % 10 == 0:
            data = rng.randbytes(size)
        else:
            parts, length = [], 0
            while length < size:
                line = rng.choice(LINES).format(ts=f"2026-03-0{rng.randint(1, 9)}T0{rng.randint(0, 9)}:00:00Z",
                                                n=rng.randint(1, 10**6), ms=rng.randint(1, 999))
                parts.append(line)
                length += len(line) + 1
            data = ("\n".join(parts) + "\n").encode()[:size]
        (d / f"f{i}.txt").write_bytes(data)
        written += len(data)
    (root / "current").symlink_to(root / "d00")
    (root / "latest").symlink_to("d01")
    os.mkfifo(root / "app.fifo")
    return written


def timed(fn: Callable[..., object], *args: object, **kw: object) -> float:
    started = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - started


def sh(command: str) -> None:
    subprocess.run(command, shell=True, check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="maintd-bench-files-") as tmp:
        base = Path(tmp)
        tree = base / "srv" / "app"
        size = make_tree(tree, args.files, args.mb, random.Random(8))
        target = FilesTarget(name="app", paths=[tree], host="bench")
        walk_s, maintd_s, tar_s, maintd_size, tar_size, rehash_s, list_s = [], [], [], 0, 0, [], []
        fresh = verify.Freshness(timedelta(days=1), timedelta(days=30))
        for run in range(args.runs):
            store = LocalStore(base / f"store{run}")
            walk_s.append(timed(files.size_estimate, [tree], []))
            maintd_s.append(timed(files.backup, target, store, host="bench", task_id="b", compression=Compression(1, 2)))
            [obj] = list((base / f"store{run}").rglob(files.OBJECT))
            maintd_size = obj.stat().st_size
            out = base / f"tar{run}.tar.zst"
            tar_s.append(timed(sh, f"tar -cf - -C / {str(tree).lstrip('/')} 2>/dev/null | zstd -1 -T2 -q -o {out}"))
            tar_size = out.stat().st_size
            rehash_s.append(timed(verify.verify, store, target, fresh, now=datetime.now(UTC), timeout_s=600))
            list_s.append(timed(sh, f"zstd -dc {out} | tar -tf - > /dev/null"))
            shutil.rmtree(base / f"store{run}")
            out.unlink()
        med = statistics.median
        print(f"tree: {args.files} files, {size / 1048576:.0f} MB, {args.runs} interleaved runs (median)")
        print("| | wall time | output |")
        print("|---|---|---|")
        print(f"| `tar -cf - | zstd -1 -T2` | {med(tar_s):.2f} s | {tar_size / 1048576:.1f} MB |")
        print(f"| maintd backup.files (zstd 1, 2 threads, sha256) | {med(maintd_s):.2f} s | "
              f"{maintd_size / 1048576:.1f} MB |")
        print(f"| the size-estimate lstat pass (S3 stores only; not in the line above) | {med(walk_s):.2f} s | |")
        print(f"| ratio maintd / tar | {med(maintd_s) / med(tar_s):.2f}x | {maintd_size / tar_size:.3f} |")
        print(f"| `zstd -dc | tar -t` | {med(list_s):.2f} s | |")
        print(f"| maintd backup.verify re-hash (sha256 + every member) | {med(rehash_s):.2f} s | |")
        print(f"| ratio verify / list | {med(rehash_s) / med(list_s):.2f}x | |")


if __name__ == "__main__":
    main()
