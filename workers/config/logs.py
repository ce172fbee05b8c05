"""``[[logs]]`` rotation policy: logrotate's directives as typed fields.

``LogsTarget`` (``workers.config.targets``) is a pinned target with this policy mixed in.
How often a log rotates is the target's schedule (``[schedule] "files.rotate_logs[NAME]"``):
each run rotates every matching file, as ``logrotate -f`` does, subject to ``size``,
``minsize`` and ``notifempty``.
"""

from __future__ import annotations

import re
import signal as signals
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from workers.config.types import Strict, parse_age

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# strftime specifiers logrotate's dateformat allows, and the digits each one yields
DATE_SPECIFIERS = {"Y": r"\d{4}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}", "M": r"\d{2}",
                   "S": r"\d{2}", "V": r"\d{2}", "s": r"\d+"}


def parse_size(text: str | int) -> int:
    """Bytes of ``"100k"``, ``"10M"``, ``"1G"``, ``"1.5GB"`` or a plain number (logrotate's units, powers of 1024)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"size {text!r}: expected a number with an optional k/M/G/T unit, e.g. '100M'")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def age_seconds(text: str) -> float:
    """Seconds of an age (``"30d"``, ``"12h"``), ``0`` for ``"0"``/``"0s"``; ``"off"`` is infinite."""
    if text == "off":
        return float("inf")
    if re.fullmatch(r"\s*0+\s*[a-z]*\s*", text):
        return 0.0
    return parse_age(text).total_seconds()


def dateformat_regex(fmt: str) -> str:
    """A regular expression matching what ``fmt`` yields (for finding dated rotations)."""
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            out.append(DATE_SPECIFIERS[fmt[i + 1]])
            i += 2
        else:
            out.append(re.escape(fmt[i]))
            i += 1
    return "".join(out)


class LogRotation(Strict):
    """Fields of ``[[logs]]`` beyond name/host/path/pattern, named after logrotate's directives."""

    rotate: int = Field(30, ge=0)  # rotated files kept per log
    delete_after: str = "30d"  # logrotate maxage; "off" keeps them for ever
    size: str | None = None  # rotate only files at least this large
    minsize: str | None = None  # and never one smaller than this
    missingok: bool = False  # no directory or no matching file is ok (else a warning)
    notifempty: bool = True  # never rotate an empty file
    copytruncate: bool = False  # copy then cut the live file in place (for writers that never reopen)
    create: bool = True  # after a rename, create an empty file with the old one's mode and owner
    postrotate: list[str] = Field(default_factory=list)  # argv run after rotating, never a shell string
    pidfile: Path | None = None  # signal this process after rotating
    signal: str = "HUP"
    dateext: bool = False
    dateformat: str = "-%Y%m%d"
    delaycompress: bool = False
    compress: Literal["gzip", "zstd", "none"] = "gzip"
    compress_level: int | None = Field(None, ge=1, le=19)
    compress_after: str = "0s"  # compress a rotated file once its last write is this old
    olddir: Path | None = None  # rotated files go here (relative to path, or absolute)
    max_dir_size: str | None = None  # oldest rotated files go until the directory fits

    @field_validator("delete_after", "compress_after")
    @classmethod
    def _age(cls, v: str) -> str:
        age_seconds(v)
        return v

    @field_validator("size", "minsize", "max_dir_size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None:
            parse_size(v)
        return v

    @field_validator("postrotate")
    @classmethod
    def _argv(cls, v: list[str]) -> list[str]:
        if v and not Path(v[0]).is_absolute():
            raise ValueError(f"postrotate[0] {v[0]!r} must be an absolute path to a program (an argv, never a shell string)")
        return v

    @field_validator("signal")
    @classmethod
    def _signal(cls, v: str) -> str:
        name = v.upper() if v.upper().startswith("SIG") else f"SIG{v.upper()}"
        if name not in signals.Signals.__members__:
            raise ValueError(f"signal {v!r}: not a signal name (HUP, USR1, ...)")
        return name[3:]

    @field_validator("dateformat")
    @classmethod
    def _dateformat(cls, v: str) -> str:
        for spec in re.findall(r"%(.)", v):
            if spec not in DATE_SPECIFIERS:
                raise ValueError(f"dateformat {v!r}: %{spec} not allowed (only %Y %m %d %H %M %S %V %s)")
        if "/" in v or not re.search(r"%", v):
            raise ValueError(f"dateformat {v!r}: needs a % specifier and no '/'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> LogRotation:
        if self.compress_level is not None and self.compress == "gzip" and self.compress_level > 9:
            raise ValueError("compress_level: gzip takes 1..9")
        return self

    @property
    def size_bytes(self) -> int | None:
        return parse_size(self.size) if self.size else None

    @property
    def minsize_bytes(self) -> int | None:
        return parse_size(self.minsize) if self.minsize else None

    @property
    def max_dir_bytes(self) -> int | None:
        return parse_size(self.max_dir_size) if self.max_dir_size else None

    @property
    def suffix(self) -> str:
        return {"gzip": ".gz", "zstd": ".zst", "none": ""}[self.compress]
