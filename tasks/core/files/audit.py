"""``files.audit_permissions`` (impact none; ``fix=true`` only ``chmod 600`` of secret files).

One pass over each configured tree (``lstat`` only: symlinks are never followed, other
filesystems are not entered, like ``find -xdev``) finds:

- ``world_writable``: files writable by others, and directories writable by others without
  the sticky bit (anyone could delete or replace what is in them);
- ``setuid``: regular files with setuid or setgid outside ``setuid_allow``;
- ``secret_readable``: secret files (names matching ``secret_patterns``, or ``secret_paths``)
  readable by group or others;
- ``owner``: entries owned by a user not in ``owners`` (when configured).

The **security score** starts at 100 and loses, per kind, ``weight × count`` up to a cap
(``WEIGHTS``; the runbook has the table). Below the target's ``min_score`` (seed 004: 80)
the run is critical; any finding otherwise is a warning.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Any

from workers.config import AuditTarget
from workers.records.outcome import Result, progress

# kind → (points per finding, cap): the seed's world-writable weight (10 each, at most 20),
# setuid outside the allow-list is worse (a privilege escalation path), secrets next.
WEIGHTS: dict[str, tuple[int, int]] = {
    "world_writable": (10, 20),
    "setuid": (15, 30),
    "secret_readable": (10, 30),
    "owner": (5, 20),
}
SUMMARY_FINDINGS = 20
METRIC_FINDINGS = 1000
_NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _any(patterns: list[str]) -> Callable[[str], bool]:
    if not patterns:
        return lambda _s: False
    rx = re.compile("|".join(f"(?:{translate(p)})" for p in patterns))
    return lambda s: rx.match(s) is not None


@dataclass
class Finding:
    kind: str
    path: str
    mode: int
    owner: str

    def line(self) -> str:
        what = {"world_writable": "world-writable", "setuid": "setuid/setgid", "secret_readable":
                "secret readable by group/others", "owner": "unexpected owner"}[self.kind]
        return f"{what}: {self.path} ({stat.filemode(self.mode)} {self.owner})"


@dataclass
class Audit:
    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WEIGHTS, 0))
    scanned: int = 0
    other_mounts: int = 0
    unreadable: int = 0

    @property
    def score(self) -> int:
        return max(0, 100 - sum(min(w * self.counts[k], cap) for k, (w, cap) in WEIGHTS.items()))


class Scanner:
    def __init__(self, target: AuditTarget) -> None:
        self.t = target
        self.excluded = _any(target.exclude)
        self.secret_name = _any(target.secret_patterns)
        self.secret_paths = {str(p) for p in target.secret_paths}
        self.allowed_setuid = _any(target.setuid_allow)
        self.owners = set(target.owners)
        self._names: dict[int, str] = {}
        self.audit = Audit()

    def owner(self, uid: int) -> str:
        name = self._names.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._names[uid] = name
        return name

    def add(self, kind: str, path: str, st: os.stat_result) -> None:
        self.audit.counts[kind] += 1
        self.audit.findings.append(Finding(kind, path, st.st_mode, self.owner(st.st_uid)))

    def entry(self, path: str, name: str, st: os.stat_result) -> None:
        mode = st.st_mode
        self.audit.scanned += 1
        if stat.S_ISLNK(mode):
            return  # a link's own mode means nothing; its target is audited where it lives (if inside)
        is_dir = stat.S_ISDIR(mode)
        if mode & stat.S_IWOTH and not (is_dir and mode & stat.S_ISVTX):
            self.add("world_writable", path, st)
        if not is_dir and stat.S_ISREG(mode):
            if mode & (stat.S_ISUID | stat.S_ISGID) and not self.allowed_setuid(path):
                self.add("setuid", path, st)
            if mode & (stat.S_IRGRP | stat.S_IROTH) and (self.secret_name(name) or path in self.secret_paths):
                self.add("secret_readable", path, st)
        if self.owners and self.owner(st.st_uid) not in self.owners:
            self.add("owner", path, st)

    def tree(self, root: str, checkpoint: Callable[[], None]) -> None:
        try:
            st = os.lstat(root)
        except FileNotFoundError:
            return
        self.entry(root, os.path.basename(root), st)
        if not stat.S_ISDIR(st.st_mode):
            return
        dev = st.st_dev
        stack = [root]
        while stack:
            top = stack.pop()
            checkpoint()
            progress("scan", self.audit.scanned, None, "files")  # published at most once a second
            try:
                it = os.scandir(top)
            except OSError:
                self.audit.unreadable += 1
                continue
            with it:
                for e in it:
                    path = e.path
                    if self.excluded(path):
                        continue
                    try:
                        est = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    self.entry(path, e.name, est)
                    if stat.S_ISDIR(est.st_mode):
                        if est.st_dev != dev:
                            self.audit.other_mounts += 1
                        else:
                            stack.append(path)


def scan(target: AuditTarget, checkpoint: Callable[[], None] = lambda: None) -> Audit:
    s = Scanner(target)
    for root in target.paths:
        s.tree(str(root).rstrip("/") or "/", checkpoint)
    for secret in target.secret_paths:  # configured secrets outside the trees are audited too
        if not any(str(secret).startswith(str(r).rstrip("/") + "/") for r in target.paths):
            try:
                st = os.lstat(secret)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
                s.add("secret_readable", str(secret), st)
    return s.audit


def chmod_600(path: str) -> bool:
    """``chmod 600`` through a descriptor opened without following a symlink (a file swapped for
    a link between the scan and the fix is left alone)."""
    try:
        fd = os.open(path, _NO_FOLLOW)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        os.fchmod(fd, 0o600)
        return True
    finally:
        os.close(fd)


def audit(target: AuditTarget, *, dry_run: bool, fix: bool = False,
          checkpoint: Callable[[], None] = lambda: None) -> Result:
    found = scan(target, checkpoint)
    secrets = [f for f in found.findings if f.kind == "secret_readable"]
    actions: list[str] = []
    fixed = 0
    if fix:
        for f in secrets:
            if dry_run:
                actions.append(f"chmod 600 {f.path}")
            elif chmod_600(f.path):
                fixed += 1
                actions.append(f"chmod 600 {f.path}")
    score = found.score
    metrics: dict[str, Any] = {
        "score": score, "min_score": target.min_score, "scanned": found.scanned, "counts": dict(found.counts),
        "findings_total": len(found.findings), "other_mounts": found.other_mounts, "unreadable_dirs": found.unreadable,
        "findings": [{"kind": f.kind, "path": f.path, "mode": stat.filemode(f.mode), "owner": f.owner}
                     for f in found.findings[:METRIC_FINDINGS]],
        "fixed": fixed, "weights": {k: list(v) for k, v in WEIGHTS.items()},
    }
    status = "critical" if score < target.min_score else "warning" if found.findings else "ok"
    if fix and not dry_run and fixed and status != "ok":
        note = f"; fixed {fixed} secret file(s) to 600 (the score is before the fix)"
    elif fix and dry_run and secrets:
        note = f"; would chmod 600 {len(secrets)} secret file(s)"
    else:
        note = ""
    head = (f"security score {score}/100 ({'below' if score < target.min_score else 'at or above'} {target.min_score:g})"
            f", {found.scanned} entries in {', '.join(str(p) for p in target.paths)}: "
            + (", ".join(f"{n} {k}" for k, n in found.counts.items() if n) or "no findings"))
    lines = [f.line() for f in found.findings[:SUMMARY_FINDINGS]]
    more = len(found.findings) - len(lines)
    body = (" — " + "; ".join(lines) + (f" (+{more} more in metrics)" if more > 0 else "")) if lines else ""
    return Result(status, head + note + body, metrics, actions)

