"""Targets of host hygiene: ``[[tmp]]`` (files.clean_tmp) and ``[[audit]]``
(files.audit_permissions). Both live in one host's files (``PinnedTarget``)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from workers.config.targets import PinnedTarget
from workers.config.types import parse_age

# Names a pattern must *not* all match: one that matches every one of these matches everything.
_PROBES = ("a", "Z9", "core", ".hidden", "x.log", "file.tar.gz", "clo-1", "-", "a b", "ü")
# Roots too broad to clean whatever the pattern (a typo away from deleting a system).
_FORBIDDEN_ROOTS = {Path(p) for p in ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt",
                                      "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/var")}


def matches_everything(pattern: str) -> bool:
    return all(fnmatchcase(name, pattern) for name in _PROBES)


def _absolute(p: Path) -> Path:
    if not p.is_absolute():
        raise ValueError(f"path {str(p)!r} must be absolute")
    return p


class TmpTarget(PinnedTarget):
    """``[[tmp]]``: files under ``path`` whose name (or a parent directory's name below
    ``path``) matches ``pattern``, older than ``older_than``, the ``keep_newest`` newest kept."""

    path: Path
    pattern: str = Field(min_length=1)
    older_than: str = "1d"
    keep_newest: int = Field(default=0, ge=0)
    exclude: list[str] = Field(default_factory=list)  # fnmatch on the name or the path relative to `path`
    max_deletions: int = Field(default=100_000, ge=1)  # per run; the rest waits for the next run

    @field_validator("path")
    @classmethod
    def _root(cls, v: Path) -> Path:
        _absolute(v)
        normal = Path("/" + "/".join(part for part in v.parts[1:] if part not in ("", ".")))
        if ".." in v.parts:
            raise ValueError(f"path {str(v)!r} must not contain '..'")
        if normal in _FORBIDDEN_ROOTS:
            raise ValueError(f"path {str(v)!r} is a system root: refusing to clean it (name a directory"
                             " of temporary files, e.g. /tmp or /var/tmp/app)")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if "/" in v:
            raise ValueError(f"pattern {v!r}: a name pattern, without '/'")
        if matches_everything(v):
            raise ValueError(f"pattern {v!r} matches every file: name what belongs to the application"
                             " (e.g. 'clo-*')")
        return v

    @field_validator("older_than")
    @classmethod
    def _age(cls, v: str) -> str:
        parse_age(v)
        return v

    @property
    def lock_scope(self) -> str:
        """Two names for one directory on one host exclude each other."""
        return f"tmp:{self.host}:{self.path}"


class AuditTarget(PinnedTarget):
    """``[[audit]]``: directory trees whose permissions are audited (never followed through symlinks)."""

    paths: list[Path] = Field(min_length=1)
    exclude: list[str] = Field(default_factory=list)  # fnmatch on the full path
    secret_patterns: list[str] = Field(default_factory=lambda: [".env", ".env.*", "*.env", "*.key", "*.pem"])
    secret_paths: list[Path] = Field(default_factory=list)
    setuid_allow: list[str] = Field(default_factory=list)  # fnmatch on the full path
    owners: list[str] = Field(default_factory=list)  # expected owners (user names); empty: not checked
    min_score: float = Field(default=80, ge=0, le=100)  # seed 004: a score below 80 alerts

    @field_validator("paths", "secret_paths")
    @classmethod
    def _absolute_paths(cls, v: list[Path]) -> list[Path]:
        return [_absolute(p) for p in v]

    @model_validator(mode="after")
    def _not_root(self) -> AuditTarget:
        if any(p == Path("/") for p in self.paths) and not self.exclude:
            raise ValueError("auditing '/' needs 'exclude' (at least /proc and /sys)")
        return self
