"""``[watchdog]`` (the dead-man switch over the schedule) and ``[incidents]`` (what
``incident.capture`` snapshots, and which checks open an incident when they turn critical).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from fnmatch import fnmatch
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator

from workers.config.secrets import WebhookUrl
from workers.config.types import Severity, Strict, parse_age

FINDING_KINDS = ("missed", "late", "stuck", "failing", "too_short")


class PingUrl(WebhookUrl):
    """A dead-man ping URL (Healthchecks-style): its path is the credential (the check's
    UUID), so it shows as ``scheme://host[:port]/…`` (``WebhookUrl.masked``)."""

    def with_suffix(self, suffix: str) -> PingUrl:
        """The URL with ``/suffix`` appended to its path (``/fail``), query kept."""
        parts = urlsplit(self._value)
        return PingUrl(urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + suffix,
                                   parts.query, parts.fragment)))


class WatchdogSeverities(Strict):
    missed: Severity = "critical"
    late: Severity = "warning"
    stuck: Severity = "critical"
    failing: Severity = "critical"
    too_short: Severity = "warning"


def _age(v: str | None) -> str | None:
    if v is not None:
        parse_age(v)
    return v


def _literal_brackets(pattern: str) -> str:
    """fnmatch with ``[`` and ``]`` taken literally (entries are ``task[target]``); ``*`` and
    ``?`` stay wildcards."""
    return "".join("[[]" if c == "[" else "[]]" if c == "]" else c for c in pattern)


class WatchdogSection(Strict):
    """``watchdog.schedule``: missed, late, stuck, repeatedly failing and too-short runs."""

    # Pinged after every watchdog run (success), ``<url>/fail`` when it found problems.
    ping_url: PingUrl | None = None
    ping_timeout_s: float = Field(default=10, gt=0, le=60)
    ping_fail_on: Literal["warning", "critical"] = "warning"  # findings this severe send /fail
    # A slot's run may start this long after its beat message expired before it is "missed".
    grace: str = "5m"
    # A run starting this long after its slot is "late" (default: 20% of the entry's
    # interval, at least 1 minute, at most 15 minutes).
    late_after: str | None = None
    # A run still ``running`` this long past its hard time limit is "stuck".
    stuck_grace: str = "5m"
    failing_after: int = Field(default=3, ge=2, le=100)  # consecutive failed runs
    too_short_ratio: float = Field(default=0.1, gt=0, lt=1)  # of the median duration of earlier ok runs
    too_short_min_runs: int = Field(default=5, ge=2, le=100)  # earlier ok runs needed for a median
    too_short_min_median_s: float = Field(default=5, ge=0)  # quicker tasks are never "too short"
    too_short_tasks: list[str] = Field(default_factory=lambda: [
        "backup.postgres", "backup.sqlite", "backup.redis", "backup.files", "backup.restore_test"])
    ignore: list[str] = Field(default_factory=list)  # fnmatch patterns on "task" or "task[target]"
    severity: WatchdogSeverities = Field(default_factory=WatchdogSeverities)
    stale_after_intervals: float = Field(default=3, ge=1, le=100)  # `maintd status --check`

    _ages = field_validator("grace", "late_after", "stuck_grace")(_age)

    @property
    def grace_s(self) -> float:
        return parse_age(self.grace).total_seconds()

    @property
    def stuck_grace_s(self) -> float:
        return parse_age(self.stuck_grace).total_seconds()

    def late_after_s(self, interval_s: float) -> float:
        if self.late_after is not None:
            return parse_age(self.late_after).total_seconds()
        return min(900.0, max(60.0, 0.2 * interval_s))

    def ignored(self, task: str, entry: str) -> bool:
        return any(fnmatch(task, p) or fnmatch(entry, p) for p in map(_literal_brackets, self.ignore))

    def too_short_applies(self, task: str) -> bool:
        return any(fnmatch(task, p) for p in self.too_short_tasks)


class IncidentsSection(Strict):
    """``incident.capture``: what a snapshot holds and which critical checks trigger one."""

    # Checks (task names) whose change to critical opens an incident for every target; a
    # single target opts in with ``incident = true`` in its own table.
    checks: list[str] = Field(default_factory=list)
    # Targets whose state is snapshot (absent: every configured one; [] none but the trigger's).
    postgres: list[str] | None = None
    redis: list[str] | None = None
    # Files (globs) on the capturing worker's host whose last lines are kept.
    logs: list[str] = Field(default_factory=list)
    log_lines: int = Field(default=200, ge=1, le=5000)
    log_files_per_pattern: int = Field(default=3, ge=1, le=50)
    probe_timeout_s: float = Field(default=10, gt=0, le=120)
    top_processes: int = Field(default=10, ge=1, le=100)

    @property
    def probe_deadline(self) -> timedelta:
        """Every probe of one capture runs in parallel and must end within this."""
        return timedelta(seconds=self.probe_timeout_s * 2 + 5)


def oversight_errors(cfg: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Targets named in ``[incidents]`` must be configured (``file:line`` errors by the loader)."""
    errors: list[tuple[tuple[Any, ...], str]] = []
    for kind in ("postgres", "redis"):
        names = {t.name for t in getattr(cfg, kind)}
        for i, name in enumerate(getattr(cfg.incidents, kind) or []):
            if name not in names:
                errors.append((("incidents", kind, i), f"unknown {kind} target {name!r}"))
    return errors


def oversight_task_errors(cfg: Any, known: Collection[str]) -> list[tuple[tuple[Any, ...], str]]:
    """Task names in ``[incidents] checks`` must exist."""
    return [(("incidents", "checks", i), f"unknown task {name!r} (see `maintd tasks`)")
            for i, name in enumerate(cfg.incidents.checks) if name not in known]
