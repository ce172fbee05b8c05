"""Which files are live logs and which are their rotations, and what a rotation is named.

Live logs are the regular files (never symlinks) in ``path`` matching ``pattern``, minus
anything named like a rotation (``.N``, ``.gz``/``.zst``, a dateext suffix). A log's
rotations live in ``olddir`` (default: ``path``) as ``NAME.N[.gz|.zst]`` or, with
dateext, ``NAME<dateformat>[.gz|.zst]``. Pure apart from listing directories.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from workers.config import LogsTarget
from workers.config.logs import dateformat_regex

COMPRESSED = (".gz", ".zst", ".bz2", ".xz", ".zip")
_NUMBERED = re.compile(r"\.\d+$")


@dataclass(frozen=True)
class Rotated:
    """One rotation of a log: its path, its rank (1 = newest) and whether it is compressed."""

    path: Path
    stem: str  # the name without the compression suffix
    compressed: bool
    number: int | None  # NAME.N; None for a dated one
    size: int
    mtime: float


def _strip(name: str) -> tuple[str, bool]:
    for ext in COMPRESSED:
        if name.endswith(ext):
            return name[: -len(ext)], True
    return name, False


def live_logs(target: LogsTarget) -> list[Path]:
    """The live log files of ``target``, sorted by name (empty if the directory is missing)."""
    try:
        entries = list(os.scandir(target.path))
    except FileNotFoundError:
        return []
    dated = re.compile(".+" + dateformat_regex(target.dateformat) + "$") if target.dateext else None
    out = []
    for e in entries:
        name = e.name
        if not fnmatch.fnmatchcase(name, target.pattern) or name.startswith(".") or not e.is_file(follow_symlinks=False):
            continue
        if name.endswith(COMPRESSED) or _NUMBERED.search(name) or (dated and dated.match(name)):
            continue
        out.append(Path(e.path))
    return sorted(out)


def rotations(target: LogsTarget, log: Path, listing: list[os.DirEntry[str]]) -> list[Rotated]:
    """The rotations of ``log`` found in ``listing`` (its rotated dir), newest first."""
    if target.dateext:
        rx = re.compile(re.escape(log.name) + "(" + dateformat_regex(target.dateformat) + ")$")
    else:
        rx = re.compile(re.escape(log.name) + r"\.(\d+)$")
    found = []
    for e in listing:
        stem, compressed = _strip(e.name)
        m = rx.match(stem)
        if not m or not e.is_file(follow_symlinks=False):
            continue
        st = e.stat(follow_symlinks=False)
        found.append(Rotated(Path(e.path), stem, compressed, None if target.dateext else int(m.group(1)),
                             st.st_size, st.st_mtime))
    if target.dateext:  # names sort by date (logrotate's rule: the format must sort)
        return sorted(found, key=lambda r: r.stem, reverse=True)
    return sorted(found, key=lambda r: r.number or 0)


def listing(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(directory))
    except FileNotFoundError:
        return []


def dated_name(target: LogsTarget, log: Path, now: datetime) -> str:
    return log.name + now.strftime(target.dateformat)


def numbered_name(log: Path, number: int, compressed_suffix: str = "") -> str:
    return f"{log.name}.{number}{compressed_suffix}"
