"""The typed configuration: one pydantic model per TOML table, strict (unknown keys fail).

Loading, ``${ENV}`` interpolation, ``*_file`` secrets and error formatting live in
``workers.settings``; this module only declares shapes and per-field rules.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workers.secrets import Secret, SecretUrl
from workers.windows import MaintenanceWindow, parse_windows

Role = Literal["db", "app"]
Impact = Literal["none", "low", "medium", "high"]
Severity = Literal["ok", "warning", "critical"]
IMPACTS: tuple[str, ...] = ("none", "low", "medium", "high")
ROLES: tuple[str, ...] = ("db", "app")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
TargetName = Annotated[str, Field(pattern=NAME_PATTERN)]


def default_host() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class MaintdSection(Strict):
    host: Annotated[str, Field(pattern=NAME_PATTERN)] = Field(default_factory=default_host)
    data_dir: Path = Path(".maintd")


class BrokerSection(Strict):
    url: SecretUrl | None = None
    # Must exceed the longest task hard time limit; identical in every process.
    visibility_timeout: int = Field(default=21600, ge=30)


class ResultsSection(Strict):
    url: SecretUrl | None = None


class FlowerSection(Strict):
    address: str = "127.0.0.1"
    port: int = Field(default=5555, ge=1, le=65535)
    user: str = "admin"
    password: Secret | None = None
    read_only: bool = True


class StoreSection(Strict):
    kind: Literal["local", "s3"] = "local"
    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    sse: str | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> StoreSection:
        if self.kind == "local" and self.path is None:
            raise ValueError("store kind 'local' needs 'path'")
        if self.kind == "s3" and not self.bucket:
            raise ValueError("store kind 's3' needs 'bucket'")
        return self


class RetentionSection(Strict):
    max_age_days: int = Field(default=30, ge=1)
    keep_min: int = Field(default=3, ge=1)


class Target(Strict):
    """Fields every target has. ``role`` picks the worker pool that serves it."""

    name: TargetName
    role: Role = "db"
    window: list[str] = Field(default_factory=list)

    @field_validator("window", mode="before")
    @classmethod
    def _window_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("window")
    @classmethod
    def _window_syntax(cls, v: list[str]) -> list[str]:
        parse_windows(v)  # raises WindowSyntaxError (a ValueError) with the reason
        return v

    @property
    def windows(self) -> tuple[MaintenanceWindow, ...]:
        return parse_windows(self.window)

    @property
    def kind(self) -> str:
        return KIND_OF[type(self)]

    @property
    def pinned_host(self) -> str | None:
        """The host whose files this target lives in (None for network targets)."""
        return None


class PinnedTarget(Target):
    role: Role = "app"
    host: Annotated[str, Field(pattern=NAME_PATTERN)]

    @property
    def pinned_host(self) -> str | None:
        return self.host


class RetentionPolicy(Strict):
    table: str
    column: str
    older_than: str
    archive_table: str | None = None
    where: str | None = None
    allow_empty: bool = False


class PostgresTarget(Target):
    dsn: SecretUrl
    password: Secret | None = None
    connect_timeout_s: float = Field(default=5, gt=0, le=120)
    statement_timeout_s: float = Field(default=300, gt=0)
    lock_timeout_s: float = Field(default=5, gt=0)
    vacuum_full_tables: list[str] = Field(default_factory=list)
    analyze_tables: list[str] = Field(default_factory=list)
    retention: list[RetentionPolicy] = Field(default_factory=list)


class RedisTarget(Target):
    url: SecretUrl
    password: Secret | None = None
    broker: bool = False
    timeout_s: float = Field(default=5, gt=0, le=120)


class HttpTarget(Target):
    role: Role = "app"
    url: SecretUrl
    max_latency_ms: float = Field(default=2000, gt=0)
    timeout_s: float = Field(default=10, gt=0, le=300)
    expect_status: list[int] = Field(default_factory=lambda: [200])
    expect: dict[str, Any] = Field(default_factory=dict)
    verify_tls: bool = True


class SqliteTarget(PinnedTarget):
    path: Path
    max_size_mb: float | None = Field(default=None, gt=0)
    busy_timeout_s: float = Field(default=5, gt=0)


class HostTarget(PinnedTarget):
    """``[[hosts]]``: a machine whose CPU, memory, disks and load are checked."""

    host: Annotated[str, Field(pattern=NAME_PATTERN)] = ""
    mounts: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _host_defaults_to_name(self) -> HostTarget:
        if not self.host:
            object.__setattr__(self, "host", self.name)
        return self


class CertificateTarget(Target):
    role: Role = "app"
    path: Path | None = None
    address: str | None = None
    host: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    timeout_s: float = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> CertificateTarget:
        if (self.path is None) == (self.address is None):
            raise ValueError("give exactly one of 'path' (PEM file) or 'address' (host:port)")
        if self.path is not None and not self.host:
            raise ValueError("a certificate file needs 'host' (the machine it lives on)")
        if self.address is not None and not _HOSTPORT(self.address):
            raise ValueError(f"address {self.address!r} is not host:port")
        return self

    @property
    def pinned_host(self) -> str | None:
        return self.host if self.path is not None else None


def _HOSTPORT(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


class LogsTarget(PinnedTarget):
    path: Path
    pattern: str = "*.log"
    compress_after: str = "1d"
    delete_after: str = "30d"


KIND_OF: dict[type, str] = {
    PostgresTarget: "postgres",
    RedisTarget: "redis",
    HttpTarget: "http",
    SqliteTarget: "sqlite",
    HostTarget: "hosts",
    CertificateTarget: "certificates",
    LogsTarget: "logs",
}


Pair = tuple[float, float]


class Thresholds(Strict):
    """(warning, critical) pairs. Where lower is worse, warning > critical."""

    cpu_percent: Pair = (80, 90)
    memory_percent: Pair = (85, 95)
    disk_percent: Pair = (80, 90)
    load_per_cpu: Pair = (1.5, 3.0)
    pg_connect_ms: Pair = (500, 2000)
    pg_connections_percent: Pair = (80, 90)
    pg_long_transaction_s: Pair = (300, 1800)
    pg_cache_hit_ratio: Pair = (0.95, 0.90)
    pg_replication_lag_s: Pair = (30, 300)
    redis_latency_ms: Pair = (50, 250)
    redis_memory_percent: Pair = (80, 90)
    redis_hit_rate: Pair = (0.90, 0.80)
    redis_clients: Pair = (1000, 5000)
    certificate_days: Pair = (30, 7)
    sqlite_size_mb: Pair = (1024, 4096)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        lower_is_worse = {"pg_cache_hit_ratio", "redis_hit_rate", "certificate_days"}
        for name in type(self).model_fields:
            warn, crit = getattr(self, name)
            if name in lower_is_worse and warn < crit:
                raise ValueError(f"{name}: warning {warn} must be above critical {crit} (lower is worse)")
            if name not in lower_is_worse and warn > crit:
                raise ValueError(f"{name}: warning {warn} must not exceed critical {crit}")
        return self


class AlertChannel(Strict):
    kind: Literal["slack", "webhook", "email", "log"]
    name: str = ""
    min_severity: Literal["warning", "critical"] = "warning"
    timeout_s: float = Field(default=10, gt=0, le=120)
    url: SecretUrl | None = None
    secret: Secret | None = None  # webhook: HMAC-SHA256 key
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: Secret | None = None
    from_addr: str | None = None
    to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _kind_fields(self) -> AlertChannel:
        if self.kind in ("slack", "webhook") and self.url is None:
            raise ValueError(f"alert channel kind {self.kind!r} needs 'url'")
        if self.kind == "email" and not (self.smtp_host and self.from_addr and self.to):
            raise ValueError("alert channel kind 'email' needs 'smtp_host', 'from_addr' and 'to'")
        if not self.name:
            object.__setattr__(self, "name", self.kind)
        return self


class AlertingSection(Strict):
    remind_every_hours: float = Field(default=4, gt=0)
    delivery_attempts: int = Field(default=3, ge=1, le=10)
    backoff_s: float = Field(default=1.0, ge=0)


class TaskOverride(Strict):
    impact: Impact | None = None
    soft_time_limit: int | None = Field(default=None, gt=0)
    time_limit: int | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0, le=20)


def validate_cron(expr: str) -> str:
    if expr.strip().lower() == "off":
        return "off"
    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ValueError(f"malformed cron {expr!r}: expected 5 fields 'min hour dom mon dow'")
    return expr


class Config(Strict):
    maintd: MaintdSection = Field(default_factory=MaintdSection)
    broker: BrokerSection = Field(default_factory=BrokerSection)
    results: ResultsSection = Field(default_factory=ResultsSection)
    flower: FlowerSection = Field(default_factory=FlowerSection)
    store: StoreSection | None = None
    retention: RetentionSection = Field(default_factory=RetentionSection)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    alerting: AlertingSection = Field(default_factory=AlertingSection)
    alerts: list[AlertChannel] = Field(default_factory=list)
    schedule: dict[str, str] = Field(default_factory=dict)
    tasks: dict[str, TaskOverride] = Field(default_factory=dict)
    postgres: list[PostgresTarget] = Field(default_factory=list)
    redis: list[RedisTarget] = Field(default_factory=list)
    http: list[HttpTarget] = Field(default_factory=list)
    sqlite: list[SqliteTarget] = Field(default_factory=list)
    hosts: list[HostTarget] = Field(default_factory=list)
    certificates: list[CertificateTarget] = Field(default_factory=list)
    logs: list[LogsTarget] = Field(default_factory=list)

    @field_validator("schedule")
    @classmethod
    def _crons(cls, v: dict[str, str]) -> dict[str, str]:
        return {k: validate_cron(expr) for k, expr in v.items()}

    def all_targets(self) -> list[Target]:
        out: list[Target] = []
        for kind in KIND_OF.values():
            out.extend(getattr(self, kind))
        return out

    def target(self, kind: str, name: str) -> Target | None:
        for t in getattr(self, kind, []):
            if t.name == name:
                return t
        return None

    def hosts_of(self, role: str | None = None) -> list[str]:
        """Hosts that have pinned targets (so need host queues), sorted."""
        found = {t.pinned_host for t in self.all_targets() if t.pinned_host and (role is None or t.role == role)}
        return sorted(h for h in found if h)
