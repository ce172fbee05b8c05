"""The rotation plan of one ``[[logs]]`` target: every step, in order, before any is taken.

A dry run prints exactly this; a real run executes it (``rotate.execute``). Per log:
deletions past ``rotate``, renames shifting ``NAME.N`` to ``NAME.N+1`` (highest first), the
rotation itself (rename + create, or the lossless cut), then once per target the signal
and postrotate command, then compression (parallel), then ``delete_after`` (maxage) and
the directory size cap, oldest rotations first. Pure apart from reading the directories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tasks.core.files.family import Rotated, dated_name, listing, live_logs, rotations
from workers.config import LogsTarget
from workers.config.logs import age_seconds

PHASES = ("prepare", "rotate", "notify", "compress", "expire", "cap")


@dataclass(frozen=True)
class Step:
    phase: str
    op: str  # mkdir delete rename move cut signal run compress
    path: Path | None = None
    to: Path | None = None
    why: str = ""
    log: str = ""  # the live log the step belongs to ("" for target-wide steps)

    def describe(self) -> str:
        what = {
            "mkdir": f"mkdir {self.path}",
            "delete": f"delete {self.path}",
            "rename": f"rename {self.path} -> {self.to}",
            "move": f"rotate {self.path} -> {self.to}",
            "cut": f"copytruncate {self.path} -> {self.to}",
            "signal": f"signal {self.to}",
            "run": f"run {self.to}",
            "compress": f"compress {self.path}",
        }[self.op]
        return f"{what} ({self.why})" if self.why else what


@dataclass
class Plan:
    target: LogsTarget
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings: missing logs, collisions
    errors: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # log name -> why not rotated
    logs: int = 0
    live_bytes: int = 0

    @property
    def rotating(self) -> list[Step]:
        return [s for s in self.steps if s.op in ("move", "cut")]

    def phase(self, name: str) -> list[Step]:
        return [s for s in self.steps if s.phase == name]


def _why_not(target: LogsTarget, size: int) -> str | None:
    if size == 0 and target.notifempty:
        return "empty (notifempty)"
    if target.size_bytes is not None and size < target.size_bytes:
        return f"{size} B < size {target.size}"
    if target.minsize_bytes is not None and size < target.minsize_bytes:
        return f"{size} B < minsize {target.minsize}"
    return None


@dataclass
class _Entry:
    """A rotation as it will be after the rename phase."""

    path: Path
    compressed: bool
    size: int
    mtime: float
    log: str


def _after(target: LogsTarget, log: Path, fam: list[Rotated], new: Path | None, plan: Plan,
           mtime: float, size: int) -> list[_Entry]:
    """Plan the shifts and count deletions of one log; return its rotations, newest first, as they will be."""
    entries: list[_Entry] = []
    if new is not None:
        entries.append(_Entry(new, False, size, mtime, log.name))
    if not target.dateext and new is not None:
        for r in sorted(fam, key=lambda r: -(r.number or 0)):
            n = (r.number or 0) + 1
            suffix = r.path.name[len(r.stem):]
            if n > target.rotate:
                plan.steps.append(Step("prepare", "delete", r.path, why=f"rotate {target.rotate}", log=log.name))
            else:
                to = r.path.with_name(f"{log.name}.{n}{suffix}")
                plan.steps.append(Step("prepare", "rename", r.path, to, log=log.name))
        kept = [r for r in fam if (r.number or 0) + 1 <= target.rotate]
        entries += [_Entry(r.path.with_name(f"{log.name}.{(r.number or 0) + 1}{r.path.name[len(r.stem):]}"),
                           r.compressed, r.size, r.mtime, log.name) for r in kept]
        return entries
    entries += [_Entry(r.path, r.compressed, r.size, r.mtime, log.name) for r in fam]
    for e in entries[target.rotate:]:  # dated, or numbered with no rotation this run
        plan.steps.append(Step("expire", "delete", e.path, why=f"rotate {target.rotate}", log=log.name))
    return entries[: target.rotate]


def build(target: LogsTarget, now: datetime, collapse: bool = True) -> Plan:
    """The plan for ``target`` at ``now``. ``collapse``: the filesystem supports the lossless cut."""
    plan = Plan(target)
    logs = live_logs(target)
    plan.logs = len(logs)
    if not logs and not target.missingok:
        where = target.path if target.path.is_dir() else f"{target.path} (no such directory)"
        plan.notes.append(f"no file matches {target.pattern!r} in {where} (set missingok = true if that is expected)")
    rdir = target.rotated_dir
    if logs and not rdir.is_dir():
        plan.steps.append(Step("prepare", "mkdir", rdir, why="olddir"))
    listed = listing(rdir)
    kept: list[_Entry] = []
    for log in logs:
        st = log.stat()
        plan.live_bytes += st.st_size
        fam = rotations(target, log, listed)
        why = _why_not(target, st.st_size)
        new: Path | None = None
        if why is None:
            new = rdir / (dated_name(target, log, now) if target.dateext else f"{log.name}.1")
            if target.dateext and any(r.stem == new.name for r in fam):
                plan.notes.append(f"{log}: already rotated as {new.name} (dateformat {target.dateformat!r} repeats)")
                why, new = "already rotated at this date", None
            elif not target.copytruncate and rdir.is_dir() and os.stat(rdir).st_dev != st.st_dev:
                plan.errors.append(f"{log}: olddir {rdir} is on another filesystem; a rename cannot move it "
                                   "(use copytruncate or an olddir on the same filesystem)")
                why, new = "olddir on another filesystem", None
        if why is not None:
            plan.skipped[log.name] = why
        entries = _after(target, log, fam, new, plan, st.st_mtime, st.st_size)
        if new is not None:
            op, how = ("cut", "lossless cut" if collapse else "copy then truncate: may lose lines") \
                if target.copytruncate else ("move", "create" if target.create else "")
            plan.steps.append(Step("rotate", op, log, new, why=how, log=log.name))
            if target.rotate == 0:
                plan.steps.append(Step("expire", "delete", new, why="rotate 0", log=log.name))
        kept += _plan_compress_and_age(target, entries, new is not None, now, plan)
    if plan.rotating:
        if target.pidfile is not None:
            plan.steps.append(Step("notify", "signal", target.pidfile, Path(f"SIG{target.signal} pid in {target.pidfile}")))
        if target.postrotate:
            plan.steps.append(Step("notify", "run", None, Path(" ".join(target.postrotate))))
    _plan_cap(target, kept, plan)
    return plan


def _plan_compress_and_age(target: LogsTarget, entries: list[_Entry], fresh: bool, now: datetime,
                           plan: Plan) -> list[_Entry]:
    """Plan compression and maxage for one log's rotations; return those that stay. ``fresh``:
    the first entry is this run's rotation (maxage never takes it, as in logrotate)."""
    if target.rotate == 0:
        return []
    ts = now.timestamp()
    expire_before = None if target.delete_after == "off" else ts - age_seconds(target.delete_after)
    compress_before = ts - age_seconds(target.compress_after)
    stay = []
    for i, e in enumerate(entries):
        if expire_before is not None and e.mtime < expire_before and not (fresh and i == 0):
            plan.steps.append(Step("expire", "delete", e.path, why=f"older than {target.delete_after}", log=e.log))
            continue
        if (target.compress != "none" and not e.compressed and not (target.delaycompress and i == 0)
                and e.mtime <= compress_before):
            plan.steps.append(Step("compress", "compress", e.path, why=target.compress, log=e.log))
        stay.append(e)
    return stay


def _plan_cap(target: LogsTarget, kept: list[_Entry], plan: Plan) -> None:
    cap = target.max_dir_bytes
    if cap is None:
        return
    total = plan.live_bytes + sum(e.size for e in kept)
    for e in sorted(kept, key=lambda e: e.mtime):
        if total <= cap:
            break
        plan.steps.append(Step("cap", "delete", e.path, why=f"directory over max_dir_size {target.max_dir_size}, "
                               "by sizes before compression; the run measures after it and may delete fewer", log=e.log))
        total -= e.size
    if total > cap:
        plan.notes.append(f"{target.path}: live logs alone are {total} B, over max_dir_size {target.max_dir_size}")
