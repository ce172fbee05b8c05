"""``[[metrics]]`` (``health.metric``: one number from SQL, a JSON field or Redis INFO, with
thresholds), ``[health]`` (``health.overview``'s score thresholds) and ``[reports]`` (where
``reports.weekly`` writes, and the limits ``reports.capacity`` projects against).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from workers.config.targets import KIND_OF, Target
from workers.config.types import NAME_PATTERN, Strict, TargetName

_NUMBER = r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
_CONDITION = re.compile(rf"^\s*(?:(?P<op><=|>=|<|>)\s*(?P<x>{_NUMBER})"
                        rf"|(?P<range>between|outside)\s+(?P<lo>{_NUMBER})\s*(?:and|,|\.\.)?\s*(?P<hi>{_NUMBER}))\s*$")


@dataclass(frozen=True)
class Condition:
    """When a value is alerted: ``> 5``, ``<= 0.9``, ``between 10 20`` (inside the range,
    ends included), ``outside 10 20`` (below 10 or above 20)."""

    op: str
    low: float
    high: float

    def __call__(self, value: float) -> bool:
        if self.op == ">":
            return value > self.low
        if self.op == ">=":
            return value >= self.low
        if self.op == "<":
            return value < self.low
        if self.op == "<=":
            return value <= self.low
        if self.op == "between":
            return self.low <= value <= self.high
        return value < self.low or value > self.high  # outside

    def __str__(self) -> str:
        if self.op in ("between", "outside"):
            return f"{self.op} {self.low:g} and {self.high:g}"
        return f"{self.op} {self.low:g}"


def parse_condition(text: str) -> Condition:
    m = _CONDITION.match(text)
    if not m:
        raise ValueError(f"condition {text!r}: expected '> N', '>= N', '< N', '<= N', 'between A B' or 'outside A B'")
    if m.group("op"):
        x = float(m.group("x"))
        return Condition(m.group("op"), x, x)
    lo, hi = float(m.group("lo")), float(m.group("hi"))
    if lo > hi:
        raise ValueError(f"condition {text!r}: the range's low end {lo:g} is above its high end {hi:g}")
    return Condition(m.group("range"), lo, hi)


def _condition(v: str | None) -> str | None:
    if v is not None:
        parse_condition(v)
    return v


class MetricTarget(Target):
    """``[[metrics]]``: one number, read-only, graded by ``warning``/``critical`` conditions.

    ``kind = "sql"``: ``query`` against the ``[[postgres]]`` or ``[[sqlite]]`` target named by
    ``source`` (first column of the first row; READ ONLY transaction, ``timeout_s`` statement
    timeout). ``kind = "json"``: the dotted ``field`` of the ``[[http]]`` target's response
    (``method`` GET, or POST with ``body``). ``kind = "redis_info"``: the ``field`` of the
    ``[[redis]]`` target's ``INFO`` (``used_memory``, ``db0.keys``).
    """

    type: Literal["sql", "json", "redis_info"]
    source: TargetName
    query: str | None = None
    field: str | None = None
    method: Literal["GET", "POST"] = "GET"
    body: Any = None
    path: str = ""  # json: appended to the [[http]] target's URL (another endpoint on the same service)
    warning: str | None = None
    critical: str | None = None
    unit: str = ""
    timeout_s: float = Field(default=10, gt=0, le=45)
    # Filled from the source at load (Config): a metric runs where its source is reachable.
    host: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    source_kind: str = ""

    @field_validator("warning", "critical")
    @classmethod
    def _conditions(cls, v: str | None) -> str | None:
        return _condition(v)

    @model_validator(mode="after")
    def _fields_of_kind(self) -> MetricTarget:
        if self.type == "sql":
            if not (self.query and self.query.strip()):
                raise ValueError("metric type 'sql' needs 'query'")
            if ";" in self.query.strip().rstrip(";"):
                raise ValueError("metric 'query': one statement only (no ';' inside)")
        elif not self.field:
            raise ValueError(f"metric type {self.type!r} needs 'field'")
        if self.body is not None and self.method != "POST":
            raise ValueError("metric 'body' is sent only with method = 'POST'")
        if self.warning is None and self.critical is None:
            raise ValueError("metric needs 'warning' or 'critical' (or both): a condition like '> 5'")
        return self

    @property
    def conditions(self) -> dict[str, Condition]:
        return {s: parse_condition(c) for s, c in (("critical", self.critical), ("warning", self.warning)) if c}

    @property
    def pinned_host(self) -> str | None:
        return self.host


# A target kind of its own (``health.metric`` runs once per metric), registered here rather than
# in ``targets`` so that module stays about the things maintd maintains.
KIND_OF[MetricTarget] = "metrics"
SOURCE_KINDS = {"sql": ("postgres", "sqlite"), "json": ("http",), "redis_info": ("redis",)}


def resolve_metric_sources(config: Any) -> None:
    """Point each ``[[metrics]]`` at its source target (kind, role and host), or fail naming it."""
    for i, metric in enumerate(config.metrics):
        kinds = SOURCE_KINDS[metric.type]
        found = [(k, t) for k in kinds for t in getattr(config, k) if t.name == metric.source]
        if not found:
            raise ValueError(f"metrics[{i}] ({metric.name}): source {metric.source!r} is not a configured"
                             f" {' or '.join(f'[[{k}]]' for k in kinds)} target")
        kind, target = found[0]
        object.__setattr__(metric, "source_kind", kind)
        object.__setattr__(metric, "role", target.role)
        object.__setattr__(metric, "host", target.pinned_host)


class HealthSection(Strict):
    """``[health]``: ``health.overview`` alerts on its score too (002: < 95 warning, < 90
    critical; 004: < 80). Unset: the overall status alone decides."""

    score_warning: float | None = Field(default=None, ge=0, le=100)
    score_critical: float | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> HealthSection:
        if self.score_warning is not None and self.score_critical is not None \
                and self.score_critical > self.score_warning:
            raise ValueError(f"score_critical {self.score_critical:g} must not be above score_warning"
                             f" {self.score_warning:g} (a lower score is worse)")
        return self


class ReportsSection(Strict):
    """``[reports]``: ``reports.weekly`` writes its HTML and text here; ``reports.capacity``
    projects each series against these limits (the seeds': disk 80/90 %, 100 GB storage,
    500 MB SQLite)."""

    dir: Path = Path(".maintd/reports")
    keep: int = Field(default=26, ge=1, le=1000)  # weekly reports kept in dir
    disk_percent_limit: float = Field(default=90, gt=0, le=100)
    database_bytes_limit: float = Field(default=100e9, gt=0)
    sqlite_bytes_limit: float = Field(default=500e6, gt=0)
    redis_memory_percent_limit: float = Field(default=90, gt=0, le=100)
    logs_bytes_limit: float = Field(default=10e9, gt=0)
    warning_days: float = Field(default=30, gt=0)
    critical_days: float = Field(default=7, gt=0)
    history_days: int = Field(default=90, ge=7, le=3650)  # capacity fits over this much history
