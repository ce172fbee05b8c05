"""Benchmark: files.audit_permissions' scan against `find` (the runbooks' tool) on the same
generated tree in the same run, interleaved.

    .venv/bin/python bench/audit_permissions.py [--files 1000000] [--runs 3] [--keep DIR]

The tree: ``--files`` empty files in 1000 directories of 1000 (names like an application's:
logs, configs, keys), a few planted findings of every kind. The peer is one `find -xdev` with
the same four tests (world-writable without sticky, setuid/setgid, group/other-readable
secrets by name) printing the matches. Both see a warm page cache (a first untimed pass of
each). Prints medians and the ratio (maintd / find); the goal is < 30 s for 1 M files.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.core.files import audit  # noqa: E402
from workers.config import AuditTarget  # noqa: E402

NAMES = ("app.log", "settings.toml", "index.html", "data.json", "module.py", "README.md", "server.key", "cert.pem")


def make_tree(root: Path, n: int) -> int:
    per_dir = 1000
    planted = 0
    for i in range(n):
        d = root / f"d{i // per_dir // 100:02d}" / f"s{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        kind = i % 50_000  # planted findings, every 50,000 files: world-writable, setuid, readable key
        name = f"{i}-{'leak.key' if kind == 2 else NAMES[i % len(NAMES)]}"
        fd = os.open(d / name, os.O_CREAT | os.O_WRONLY, 0o600 if name.endswith((".key", ".pem")) else 0o644)
        os.close(fd)
        if kind < 3:
            os.chmod(d / name, (0o666, 0o4755, 0o644)[kind])
            planted += 1
    return planted


FIND_EXPR = ["(", "(", "-perm", "-0002", "!", "-type", "l", "!", "(", "-type", "d", "-perm", "-1000", ")", ")",
             "-o", "(", "-type", "f", "-perm", "/6000", ")",
             "-o", "(", "-type", "f", "(", "-name", ".env", "-o", "-name", ".env.*", "-o", "-name", "*.env", "-o",
             "-name", "*.key", "-o", "-name", "*.pem", ")", "-perm", "/044", ")", ")"]


def run_find(root: Path) -> tuple[float, int]:
    started = time.perf_counter()
    out = subprocess.run(["find", str(root), "-xdev", *FIND_EXPR, "-print"], capture_output=True, check=True)
    return time.perf_counter() - started, len(out.stdout.splitlines())


def run_maintd(root: Path) -> tuple[float, int]:
    target = AuditTarget(name="bench", host="h", paths=[root])
    started = time.perf_counter()
    found = audit.scan(target)
    return time.perf_counter() - started, len(found.findings)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="reuse/keep the tree in this directory")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="maintd-bench-audit-"))
    tree = base / "tree"
    try:
        if not tree.exists():
            started = time.perf_counter()
            make_tree(tree, args.files)
            print(f"made {args.files} files in {time.perf_counter() - started:.1f}s under {tree}")
        run_find(tree)
        run_maintd(tree)  # warm both
        ours, peer = [], []
        for _ in range(args.runs):
            t, n_find = run_find(tree)
            peer.append(t)
            t, n_ours = run_maintd(tree)
            ours.append(t)
        ours_m, peer_m = statistics.median(ours), statistics.median(peer)
        print(f"files: {args.files}  findings: maintd {n_ours}, find {n_find}"
              f"{'' if n_ours == n_find else '  (MISMATCH)'}")
        print(f"find -xdev (4 tests): median {peer_m:.2f}s  runs {[round(x, 2) for x in peer]}")
        print(f"maintd audit scan:    median {ours_m:.2f}s  runs {[round(x, 2) for x in ours]}")
        print(f"ratio maintd/find: {ours_m / peer_m:.2f}x  goal < 30 s for 1 M files: "
              f"{'met' if ours_m * 1_000_000 / args.files < 30 else 'NOT met'}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
