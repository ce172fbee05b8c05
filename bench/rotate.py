"""Benchmark: files.rotate_logs against logrotate on the same log tree, in the same run.

    .venv/bin/python bench/rotate.py [--size 1G] [--files 20] [--dir /tmp]

Generates --size of realistic log lines (ISO timestamps, levels, request ids, JSON
fragments, Python stack traces) across --files files, copies the tree three times, then
rotates one copy with `/usr/sbin/logrotate -f` (`rotate 5`, `create`, `compress`: gzip -6)
and the others with maintd (gzip level 6; zstd with its default parameters
tuned for logs, and zstd level 3), each in its own process, in the
worker's import state (Celery and the task modules loaded). Prints wall times, output
sizes, the ratios, and the peak RSS of the maintd process. Checks every output decompresses
to its input's length. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workers.config.logs import parse_size  # noqa: E402

LEVELS = ["INFO"] * 70 + ["DEBUG"] * 15 + ["WARNING"] * 10 + ["ERROR"] * 5
PATHS = ["/api/v1/orders", "/api/v1/items/{n}", "/health", "/api/v1/users/{n}/sessions", "/static/app.{h}.js"]
TRACE = ('Traceback (most recent call last):\n  File "/opt/app/service/handlers.py", line {n}, in handle\n'
         '    result = self.backend.fetch(key)\n  File "/opt/app/service/backend.py", line 88, in fetch\n'
         '    raise TimeoutError(f"upstream {{key}} timed out")\nTimeoutError: upstream {h} timed out\n')

RUNNER = """
import os, resource, sys, time
from datetime import datetime
import tasks.files  # the worker's import state: Celery, the task modules
from tasks.core.files import rotate
from workers.config import LogsTarget
t = LogsTarget(name="bench", host="bench", path=sys.argv[1], rotate=5, compress=sys.argv[2],
               compress_level=int(sys.argv[3]) or None, notifempty=False, delete_after="off")
start = time.perf_counter()
r = rotate.run(t, datetime.now().astimezone())
took = time.perf_counter() - start
assert r.status == "ok", r.summary
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_file(path: str, size: int, seed: int) -> None:
    rng = random.Random(seed)
    t = 1_764_000_000.0
    written = 0
    with open(path, "w", buffering=1 << 20) as f:
        while written < size:
            chunk = []
            for _ in range(2000):
                t += rng.expovariate(50)
                n, h = rng.getrandbits(20), f"{rng.getrandbits(64):016x}"
                ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
                lvl = rng.choice(LEVELS)
                path = rng.choice(PATHS).format(n=n, h=h[:8])
                line = (f"{ts} {lvl:7} [worker-{n % 8}] request_id={h} method=GET path={path} "
                        f"status={rng.choice((200, 200, 200, 201, 304, 404, 500))} took_ms={rng.randint(1, 900)} "
                        f'extra={{"user_id": {n}, "tenant": "t{n % 37}", "cache": {str(n % 3 == 0).lower()}}}\n')
                if lvl == "ERROR":
                    line += TRACE.format(n=n % 400, h=h)
                chunk.append(line)
            text = "".join(chunk)
            f.write(text)
            written += len(text)


def tree_bytes(d: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in d.iterdir() if p.name.endswith(suffix))


def cpu_s() -> float:
    """CPU seconds of this process's waited-for children (and theirs: logrotate's gzip)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_logrotate(tree: Path, work: Path) -> tuple[float, float]:
    conf = work / "logrotate.conf"
    conf.write_text(f"{tree}/*.log {{\n  rotate 5\n  create\n  compress\n}}\n")
    start, cpu = time.perf_counter(), cpu_s()
    subprocess.run(["/usr/sbin/logrotate", "-s", str(work / "state"), "-f", str(conf)], check=True, timeout=3600)
    return time.perf_counter() - start, cpu_s() - cpu


def run_maintd(tree: Path, kind: str, level: int) -> tuple[float, float, int]:
    cpu = cpu_s()
    out = subprocess.run([sys.executable, "-c", RUNNER, str(tree), kind, str(level)], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=3600).stdout.split()
    return float(out[0]), cpu_s() - cpu, int(out[1]) * 1024


def check(tree: Path, suffix: str, sizes: dict[str, int]) -> None:
    cmd = {".gz": ["gzip", "-dc"], ".zst": ["zstd", "-dcq"]}[suffix]
    for p in sorted(tree.glob(f"*.log.1{suffix}")):
        with open(p, "rb") as f:
            n = len(subprocess.run(cmd, stdin=f, capture_output=True, check=True).stdout)
        assert n == sizes[p.name.split(".log")[0]], p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1G", help="total log bytes (default 1G)")
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    total, n = parse_size(args.size), args.files
    work = Path(tempfile.mkdtemp(prefix="maintd-bench-rotate-", dir=args.dir))
    try:
        src = work / "logrotate"
        src.mkdir()
        start = time.perf_counter()
        per = [int(total / n * (0.4 + 1.2 * i / (n - 1 or 1))) for i in range(n)]  # uneven sizes, as real dirs are
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(write_file, [str(src / f"svc{i:02d}.log") for i in range(n)], per, range(n)))
        sizes = {p.name[:-4]: p.stat().st_size for p in src.glob("*.log")}
        raw = sum(sizes.values())
        for name in ("gzip", "zstd", "zstd3"):
            shutil.copytree(src, work / name, copy_function=shutil.copy2)
        print(f"load average {os.getloadavg()[0]:.1f} before; {raw / 1e6:.0f} MB in {n} files generated and copied in {time.perf_counter() - start:.0f}s; "
              f"{os.cpu_count()} CPUs")
        lr, lr_cpu = run_logrotate(src, work)
        gz_s, gz_cpu, gz_rss = run_maintd(work / "gzip", "gzip", 6)
        zs_s, zs_cpu, zs_rss = run_maintd(work / "zstd", "zstd", 0)
        z3_s, z3_cpu, z3_rss = run_maintd(work / "zstd3", "zstd", 3)
        lr_b, gz_b, zs_b = tree_bytes(src, ".gz"), tree_bytes(work / "gzip", ".gz"), tree_bytes(work / "zstd", ".zst")
        z3_b = tree_bytes(work / "zstd3", ".zst")
        for name, suffix in (("gzip", ".gz"), ("zstd", ".zst"), ("zstd3", ".zst")):
            check(work / name, suffix, sizes)
        print(f"{'':22} {'wall s':>7} {'CPU s':>7} {'output MB':>10} {'ratio':>6} {'faster (wall)':>14} "
              f"{'less CPU':>9} {'size vs gzip -6':>16} {'peak RSS':>9}")
        print(f"{'logrotate (gzip -6)':22} {lr:7.2f} {lr_cpu:7.2f} {lr_b / 1e6:10.1f} {raw / lr_b:6.2f} {'1.00x':>14} "
              f"{'1.00x':>9} {'1.000':>16} {'-':>9}")
        for label, s, c, b, rss in (("maintd gzip level 6", gz_s, gz_cpu, gz_b, gz_rss),
                                    ("maintd zstd (default)", zs_s, zs_cpu, zs_b, zs_rss),
                                    ("maintd zstd level 3", z3_s, z3_cpu, z3_b, z3_rss)):
            print(f"{label:22} {s:7.2f} {c:7.2f} {b / 1e6:10.1f} {raw / b:6.2f} {lr / s:13.2f}x {lr_cpu / c:8.2f}x "
                  f"{b / lr_b:16.3f} {rss / 2**20:7.0f}MB")
        print(f"load average {os.getloadavg()[0]:.1f} after")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
