"""The typed configuration: one pydantic model per TOML table, strict (unknown keys fail).

Loading, ``${ENV}`` interpolation, ``*_file`` secrets and error formatting live in
``workers.settings``; this module only declares shapes and per-field rules.
"""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

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
    # Backups (tasks/backups): S3 transfer and compression settings.
    sse_kms_key_id: str | None = None  # with sse = "aws:kms"
    addressing_style: Literal["auto", "path", "virtual"] = "auto"  # auto: path style when endpoint_url is set
    connect_timeout_s: float = Field(default=10, gt=0, le=300)
    read_timeout_s: float = Field(default=60, gt=0, le=3600)
    max_attempts: int = Field(default=5, ge=1, le=20)  # botocore retries (standard mode), per request
    part_size_mb: int = Field(default=16, ge=5, le=5120)  # multipart part; memory held is ~3 parts
    compression_level: int = Field(default=1, ge=1, le=19)  # zstd: 1 keeps up with pg_dump on one core; 6+ for smaller archives
    compression_threads: int = Field(default=2, ge=0, le=16)  # zstd worker threads (0: in the caller)

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
    # Backups (tasks/backups): tiers kept beyond max_age_days (0: no tier), freshness, orphans.
    daily: int = Field(default=0, ge=0)
    weekly: int = Field(default=0, ge=0)
    monthly: int = Field(default=0, ge=0)
    max_backup_age: str = "24h"  # backup.verify: the newest complete backup must be younger (runbook: 24 h)
    restore_test_max_age: str = "8d"  # backup.verify warns when no restore test is this recent
    incomplete_after: str = "1d"  # failed/incomplete backups older than this are pruned

    @field_validator("max_backup_age", "restore_test_max_age", "incomplete_after")
    @classmethod
    def _ages(cls, v: str) -> str:
        parse_age(v)
        return v


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
    """``[[postgres.retention]]``: archive-then-delete rows older than ``older_than``.

    Names are written as stored, unquoted (``audit_logs``, ``public.audit_logs``); ``where``
    is SQL written by the operator (trusted like the DSN), checked to be one balanced
    boolean expression: no ``;``, no comments, parentheses balanced outside quotes.
    """

    table: str = Field(min_length=1)
    column: str = Field(min_length=1)
    older_than: str
    archive_table: str | None = Field(default=None, min_length=1)
    where: str | None = None
    allow_empty: bool = False
    batch_size: int = Field(default=1000, ge=1)  # first batch; adapts to target_batch_s
    min_batch_size: int = Field(default=100, ge=1)
    max_batch_size: int = Field(default=50000, ge=1)
    target_batch_s: float = Field(default=0.5, gt=0, le=60)
    pause_s: float = Field(default=0.0, ge=0, le=60)  # between batches: lets writers and replicas breathe
    # "sweep": delete by block ranges (one pass over the table: best when much of it expires or the
    # column has no index); "limit": the oldest N rows per batch through the column's index (best
    # when a small part expires); "auto" picks from the planner's estimate.
    strategy: Literal["auto", "sweep", "limit"] = "auto"

    @field_validator("older_than")
    @classmethod
    def _older_than(cls, v: str) -> str:
        parse_age(v)
        return v

    @field_validator("where")
    @classmethod
    def _where(cls, v: str | None) -> str | None:
        if v is not None:
            check_where(v)
        return v

    @model_validator(mode="after")
    def _batches(self) -> RetentionPolicy:
        if not self.min_batch_size <= self.batch_size <= self.max_batch_size:
            raise ValueError("need min_batch_size <= batch_size <= max_batch_size")
        return self

    @property
    def max_age(self) -> timedelta:
        return parse_age(self.older_than)


_AGE = re.compile(r"^\s*(\d+)\s*(s|m|min|h|d|w)\s*$")
_AGE_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """``"365d"``, ``"12h"``, ``"30m"``, ``"2w"``, ``"90s"`` → timedelta (positive)."""
    m = _AGE.match(text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"age {text!r}: expected a positive number and a unit s/m/h/d/w, e.g. '365d'")
    return timedelta(seconds=int(m.group(1)) * _AGE_UNITS[m.group(2)])


def check_where(text: str) -> None:
    """Refuse a ``where`` that could end or escape the expression it is wrapped in."""
    if "\\" in text:  # E'..\'..' escapes would let a quote end where this scan does not see it
        raise ValueError("where: backslashes are not allowed")
    depth, quote = 0, ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in ("'", '"'):
            quote = ch
        elif ch == ";":
            raise ValueError("where: ';' is not allowed (one boolean expression only)")
        elif text.startswith("--", i) or text.startswith("/*", i):
            raise ValueError("where: SQL comments are not allowed")
        elif ch == "$" and re.match(r"\$[A-Za-z_]*\$", text[i:]):
            raise ValueError("where: dollar quoting is not allowed")
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("where: unbalanced ')'")
    if quote or depth:
        raise ValueError("where: unbalanced quotes or parentheses")
    if not text.strip():
        raise ValueError("where: empty")


class AdmissionLimits(Strict):
    """``[postgres.admission]``: live-load limits checked before each table or batch of heavy work."""

    max_active_sessions: int = Field(default=50, ge=0)
    max_lock_waits: int = Field(default=5, ge=0)
    max_transaction_age_s: float = Field(default=1800, gt=0)
    max_replication_lag_s: float = Field(default=300, gt=0)
    backoff_s: float = Field(default=300, ge=0)  # a deferred run is released again after this


class PostgresTarget(Target):
    dsn: SecretUrl
    password: Secret | None = None
    connect_timeout_s: float = Field(default=5, gt=0, le=120)
    statement_timeout_s: float = Field(default=300, gt=0)
    lock_timeout_s: float = Field(default=5, gt=0)
    vacuum_full_tables: list[str] = Field(default_factory=list)
    analyze_tables: list[str] = Field(default_factory=list)
    retention: list[RetentionPolicy] = Field(default_factory=list)
    # PostgreSQL maintenance (tasks/pg): thresholds default to the runbooks' numbers.
    admission: AdmissionLimits = Field(default_factory=AdmissionLimits)
    vacuum_min_dead_tuples: int = Field(default=1000, ge=0)
    vacuum_min_dead_ratio: float = Field(default=0.10, ge=0)
    vacuum_budget_s: float = Field(default=1800, gt=0)
    vacuum_full_min_bloat_ratio: float = Field(default=0.5, gt=0, le=1)
    vacuum_full_min_size_mb: float = Field(default=100, ge=0)
    # Free space assumed on the server's data filesystem when maintd cannot statvfs it (remote server).
    free_disk_floor_mb: float | None = Field(default=None, ge=0)
    reindex_min_bloat_ratio: float = Field(default=0.5, gt=0, le=1)
    reindex_min_size_mb: float = Field(default=10, ge=0)
    reindex_blocking: bool = False  # allow plain (blocking) REINDEX where CONCURRENTLY is impossible
    unused_index_min_size_mb: float = Field(default=1, ge=0)
    slow_query_mean_ms: tuple[float, float] = (500, 2000)
    slow_queries_top: int = Field(default=10, ge=1, le=100)
    terminate_users: list[str] = Field(default_factory=list)  # long_queries may terminate these (opt-in)
    terminate_applications: list[str] = Field(default_factory=list)
    xid_age_percent: tuple[float, float] = (50, 75)  # of the 2^31 wraparound horizon: (warning, critical)
    # Backups: where backup.restore_test creates its scratch database (default: this server), and
    # a directory holding pg_dump/pg_restore to use instead of the best-fitting one found.
    restore_dsn: SecretUrl | None = None
    restore_password: Secret | None = None
    pg_bin_dir: Path | None = None


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


class FilesTarget(PinnedTarget):
    """``[[files]]``: directories and files on one host, backed up as a compressed tar."""

    paths: list[Path] = Field(min_length=1)
    exclude: list[str] = Field(default_factory=list)  # fnmatch patterns on the full path

    @field_validator("paths")
    @classmethod
    def _absolute(cls, v: list[Path]) -> list[Path]:
        for p in v:
            if not p.is_absolute():
                raise ValueError(f"path {str(p)!r} must be absolute")
        return v


KIND_OF: dict[type, str] = {
    PostgresTarget: "postgres",
    RedisTarget: "redis",
    HttpTarget: "http",
    SqliteTarget: "sqlite",
    HostTarget: "hosts",
    CertificateTarget: "certificates",
    LogsTarget: "logs",
    FilesTarget: "files",
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


class WebhookUrl(SecretUrl):
    """A webhook URL: its path and query are the credential (a Slack incoming webhook is
    its token), so it shows as ``scheme://host[:port]/…`` only."""

    @property
    def masked(self) -> str:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(self._value)
            host, port = parts.hostname or "", parts.port
        except ValueError:
            return "***"
        host = f"[{host}]" if ":" in host else host
        rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
        return f"{parts.scheme}://{host}{f':{port}' if port else ''}{rest}"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        # Also accept a plain SecretUrl (code building a channel), re-wrapped so it masks this way.
        return core_schema.no_info_after_validator_function(
            lambda v: v if isinstance(v, cls) else cls(v.reveal() if isinstance(v, Secret) else v),
            core_schema.union_schema([core_schema.is_instance_schema(Secret), core_schema.str_schema()]),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: str(v)),
        )


class AlertChannel(Strict):
    kind: Literal["slack", "webhook", "email", "log"]
    name: str = ""
    min_severity: Literal["warning", "critical"] = "warning"
    timeout_s: float = Field(default=10, gt=0, le=120)
    url: WebhookUrl | None = None
    secret: Secret | None = None  # webhook: HMAC-SHA256 key
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: Secret | None = None
    from_addr: str | None = None
    to: list[str] = Field(default_factory=list)
    # PEM CA certificate(s) to trust instead of the system store (HTTPS, SMTP TLS). Usually given
    # as ``ca_file = "/etc/maintd/private-ca.pem"`` (the generic ``*_file`` mechanism reads it).
    ca: str | None = None

    @field_validator("ca")
    @classmethod
    def _ca_pem(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import ssl

        if "-----BEGIN CERTIFICATE-----" not in v:
            raise ValueError("ca: not a PEM certificate (expected -----BEGIN CERTIFICATE-----)")
        try:
            ssl.create_default_context(cadata=v)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"ca: cannot load the PEM certificate: {exc}") from None
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> AlertChannel:
        if self.kind in ("slack", "webhook") and self.url is None:
            raise ValueError(f"alert channel kind {self.kind!r} needs 'url'")
        if self.kind == "email" and not (self.smtp_host and self.from_addr and self.to):
            raise ValueError("alert channel kind 'email' needs 'smtp_host', 'from_addr' and 'to'")
        if self.kind == "email" and self.username and not (self.starttls or self.ssl):
            raise ValueError("alert channel kind 'email': 'username' needs 'starttls' or 'ssl'"
                             " (credentials are never sent in clear text)")
        if not self.name:
            object.__setattr__(self, "name", self.kind)
        return self


class AlertingSection(Strict):
    remind_every_hours: float = Field(default=4, gt=0)
    delivery_attempts: int = Field(default=3, ge=1, le=10)
    backoff_s: float = Field(default=1.0, ge=0)
    # All channels of one alert are tried in parallel; retries stop at this deadline so a dead
    # endpoint cannot push a task past its soft time limit.
    delivery_deadline_s: float = Field(default=20, gt=0, le=300)


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
    schedule: dict[str, Annotated[str, AfterValidator(validate_cron)]] = Field(default_factory=dict)
    tasks: dict[str, TaskOverride] = Field(default_factory=dict)
    postgres: list[PostgresTarget] = Field(default_factory=list)
    redis: list[RedisTarget] = Field(default_factory=list)
    http: list[HttpTarget] = Field(default_factory=list)
    sqlite: list[SqliteTarget] = Field(default_factory=list)
    hosts: list[HostTarget] = Field(default_factory=list)
    certificates: list[CertificateTarget] = Field(default_factory=list)
    logs: list[LogsTarget] = Field(default_factory=list)
    files: list[FilesTarget] = Field(default_factory=list)

    @property
    def backups(self) -> list[Target]:
        """Targets that are backed up (the ``backups`` target kind of backup.verify/prune/...)."""
        return [*self.postgres, *self.sqlite, *self.redis, *self.files]

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
