"""``files.rotate_logs``: rotate one ``[[logs]]`` target as logrotate would, faster.

``run`` builds the plan (``plan.build``), returns it as the actions of a dry run, or executes
it: renames and cuts in order, then the signal and postrotate command once (only if
something rotated), then compression on a thread per core, then maxage and the directory
cap. One log's failure stops that log's steps, never the others'; failures make the
outcome critical, notes (missing logs, a repeated date, a lossy copytruncate) a warning.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import datetime
from pathlib import Path

from tasks.core.files import compress as compression
from tasks.core.files.cut import collapse_expected, collapse_supported, copy_and_cut
from tasks.core.files.family import listing, live_logs, rotations
from tasks.core.files.plan import Plan, Step, build
from workers.config import LogsTarget
from workers.doors.commands import Command
from workers.doors.commands import run as run_command
from workers.errors import MaintdError
from workers.records.outcome import Result, checkpoint, progress

logger = logging.getLogger(__name__)
POSTROTATE_TIMEOUT_S = 120.0


class _Run:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.target = plan.target
        self.done: list[str] = []
        self.failed: set[str] = set()  # logs whose steps stopped
        self.rotated = 0
        self.kept_bytes = 0
        self.deleted = 0
        self.bytes_in = self.bytes_out = 0
        self.compressed = 0

    def fail(self, step: Step, message: str) -> None:
        self.plan.errors.append(f"{step.describe()}: {message}")
        if step.log:
            self.failed.add(step.log)

    def step(self, s: Step) -> None:
        if s.log in self.failed:
            return
        checkpoint()
        try:
            self._do(s)
        except (OSError, MaintdError) as exc:
            self.fail(s, getattr(exc, "strerror", None) or str(exc))

    def _do(self, s: Step) -> None:
        assert s.path is not None or s.op == "run"
        if s.op == "mkdir":
            assert s.path is not None
            s.path.mkdir(parents=True, exist_ok=True)
        elif s.op == "delete":
            assert s.path is not None
            s.path.unlink(missing_ok=True)
            self.deleted += 1
        elif s.op == "rename":
            assert s.path is not None and s.to is not None
            os.rename(s.path, s.to)
        elif s.op == "move":
            self._move(s)
        elif s.op == "cut":
            self._cut(s)
        elif s.op == "signal":
            self._signal()
        elif s.op == "run":
            run_command(Command("postrotate", tuple(self.target.postrotate), POSTROTATE_TIMEOUT_S))
        self.done.append(s.describe())

    def _move(self, s: Step) -> None:
        assert s.path is not None and s.to is not None
        st = s.path.stat()
        os.rename(s.path, s.to)
        self.rotated += 1
        if self.target.create:
            try:
                fd = os.open(s.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, st.st_mode & 0o7777)
            except FileExistsError:  # the writer reopened (O_CREAT) first: its file stands
                return
            try:
                os.fchmod(fd, st.st_mode & 0o7777)
                if os.geteuid() == 0:
                    os.fchown(fd, st.st_uid, st.st_gid)
            finally:
                os.close(fd)

    def _cut(self, s: Step) -> None:
        assert s.path is not None and s.to is not None
        cut = copy_and_cut(s.path, s.to, collapse="lossless" in s.why)
        if cut is None:
            self.plan.skipped[s.path.name] = "copytruncate: no line ends at a block boundary yet (next run)"
            self.failed.add(s.log)  # nothing new to shift or compress for this log
            return
        self.rotated += 1
        self.kept_bytes += cut.kept
        if not cut.lossless:
            self.plan.notes.append(f"{s.path}: copy then truncate (no collapse range here): lines written meanwhile may be lost")

    def _signal(self) -> None:
        pidfile = self.target.pidfile
        assert pidfile is not None
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise MaintdError(f"pidfile {pidfile}: no process id in it ({exc})") from None
        os.kill(pid, signal.Signals[f"SIG{self.target.signal}"])

    def compress(self, steps: list[Step]) -> None:
        todo = [s.path for s in steps if s.log not in self.failed and s.path is not None and s.path.exists()]
        done, errors = compression.compress_many(todo, self.target.compress, self.target.compress_level,
                                                 checkpoint=checkpoint)
        for c in done:
            self.compressed += 1
            self.bytes_in += c.bytes_in
            self.bytes_out += c.bytes_out
            self.done.append(f"compress {c.source} -> {c.output.name} ({c.bytes_in} -> {c.bytes_out} B)")
        self.plan.errors += list(errors.values())

    def cap(self) -> None:
        """Delete the oldest rotations until the directory fits, by the sizes on disk now."""
        cap = self.target.max_dir_bytes
        if cap is None:
            return
        logs = live_logs(self.target)
        listed = listing(self.target.rotated_dir)
        rotated = [r for log in logs for r in rotations(self.target, log, listed)]
        total = sum(p.stat().st_size for p in logs) + sum(r.size for r in rotated)
        for r in sorted(rotated, key=lambda r: r.mtime):
            if total <= cap:
                break
            r.path.unlink(missing_ok=True)
            total -= r.size
            self.deleted += 1
            self.done.append(f"delete {r.path} (directory over max_dir_size {self.target.max_dir_size})")
        if total > cap:
            self.plan.notes.append(f"{self.target.path}: {total} B after rotation, over max_dir_size {self.target.max_dir_size}")


def execute(plan: Plan) -> _Run:
    """Take every step of ``plan`` in phase order."""
    r = _Run(plan)
    total, taken = len(plan.steps), 0

    def take(steps: list[Step]) -> None:
        nonlocal taken
        for s in steps:
            r.step(s)
            taken += 1
            progress(s.op, taken, total, "files")  # published at most once a second

    take(plan.phase("prepare") + plan.phase("rotate"))
    if r.rotated:
        take(plan.phase("notify"))
    squeeze = plan.phase("compress")
    progress("compress", taken, total, "files")
    r.compress(squeeze)
    taken += len(squeeze)
    progress("compress", taken, total, "files")
    take(plan.phase("expire"))
    r.cap()
    return r


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def run(target: LogsTarget, now: datetime, dry_run: bool = False) -> Result:
    """Rotate ``target`` at ``now`` (or, dry, list exactly what would be done)."""
    started = time.monotonic()
    # a dry run touches nothing, so it reads the filesystem type instead of trying a collapse
    probe = collapse_expected if dry_run else collapse_supported
    collapse = target.copytruncate and target.path.is_dir() and probe(target.path)
    plan = build(target, now, collapse=collapse or not target.copytruncate)
    if dry_run:
        actions = [s.describe() for s in plan.steps]
        status = "critical" if plan.errors else "warning" if plan.notes else "ok"
        summary = (f"{target.name}: would rotate {len(plan.rotating)} of {plan.logs} logs, compress "
                   f"{len(plan.phase('compress'))}, delete {len([s for s in plan.steps if s.op == 'delete'])}")
        return Result(status, "; ".join([summary, *plan.errors, *plan.notes]), _metrics(plan, None, started), actions)
    r = execute(plan)
    status = "critical" if plan.errors else "warning" if plan.notes else "ok"
    summary = (f"{target.name}: rotated {r.rotated} of {plan.logs} logs, compressed {r.compressed} "
               f"({_mb(r.bytes_in)} -> {_mb(r.bytes_out)}), deleted {r.deleted}")
    return Result(status, "; ".join([summary, *plan.errors[:5], *plan.notes[:5]]), _metrics(plan, r, started), r.done)


def _metrics(plan: Plan, r: _Run | None, started: float) -> dict[str, object]:
    out: dict[str, object] = {"logs": plan.logs, "live_bytes": plan.live_bytes, "skipped": dict(plan.skipped),
                              "errors": plan.errors[:20], "notes": plan.notes[:20]}
    if r is not None:
        out.update(rotated=r.rotated, compressed=r.compressed, bytes_in=r.bytes_in, bytes_out=r.bytes_out,
                   deleted=r.deleted, copytruncate_kept_bytes=r.kept_bytes,
                   dir_bytes=_dir_bytes(plan.target), seconds=round(time.monotonic() - started, 3))
    return out


def _dir_bytes(target: LogsTarget) -> int:
    total = 0
    for d in {target.path, target.rotated_dir}:
        for e in listing(Path(d)):
            if e.is_file(follow_symlinks=False):
                total += e.stat(follow_symlinks=False).st_size
    return total
