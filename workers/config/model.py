"""The typed configuration: one pydantic model per TOML table, strict (unknown keys fail).

Loading, ``${ENV}`` interpolation, ``*_file`` secrets and error formatting live in
``workers.config``; base types are in ``workers.config.types`` and target models in
``workers.config.targets`` (re-exported here, so ``from workers.config.model import X`` works for all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from croniter import croniter
from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from workers.config.beat import BeatSection
from workers.config.compression import ZstdTuning
from workers.config.hygiene import AuditTarget, TmpTarget
from workers.config.oversight import IncidentsSection, PingUrl, WatchdogSection
from workers.config.reporting import (
    HealthSection,
    MetricTarget,
    ReportsSection,
    resolve_metric_sources,
)
from workers.config.secrets import Secret, SecretUrl, WebhookUrl
from workers.config.targets import (
    KIND_OF,
    AdmissionLimits,
    CertificateTarget,
    FilesTarget,
    HostTarget,
    HttpTarget,
    LogsTarget,
    PinnedTarget,
    PostgresTarget,
    RedisTarget,
    RetentionPolicy,
    SqliteTarget,
    Target,
    check_where,
)
from workers.config.types import (
    IMPACTS,
    NAME_PATTERN,
    ROLES,
    Impact,
    Role,
    Severity,
    Strict,
    TargetName,
    default_host,
    parse_age,
)

KIND_OF.update({TmpTarget: "tmp", AuditTarget: "audit"})  # hygiene targets live in their own module


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
    # Backups (tasks/core/backup): S3 transfer and compression settings.
    sse_kms_key_id: str | None = None  # with sse = "aws:kms"
    addressing_style: Literal["auto", "path", "virtual"] = "auto"  # auto: path style when endpoint_url is set
    connect_timeout_s: float = Field(default=10, gt=0, le=300)
    read_timeout_s: float = Field(default=60, gt=0, le=3600)
    max_attempts: int = Field(default=5, ge=1, le=20)  # botocore retries (standard mode), per request
    part_size_mb: int = Field(default=16, ge=5, le=5120)  # multipart part; memory held is ~3 parts
    compression_level: int = Field(default=1, ge=1, le=19)  # zstd: 1 keeps up with pg_dump on one core; 6+ for smaller archives
    compression_threads: int = Field(default=2, ge=0, le=16)  # zstd worker threads (0: in the caller)
    # e.g. { min_match = 7, search_log = 1, chain_log = 14, hash_log = 16 } with level 6: no larger than
    # pg_dump -Fc at ~1.6x less CPU than plain level 6 (runbook backup.postgres.md)
    compression_tuning: ZstdTuning = Field(default_factory=ZstdTuning)
    # S3's limit on parts per multipart upload (10,000 on AWS and MinIO; lower on some S3-compatible
    # stores). Parts grow with the size estimate of the backup so an object never needs more.
    max_parts: int = Field(default=10000, ge=2, le=10000)

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
    # Backups (tasks/core/backup): tiers kept beyond max_age_days (0: no tier), freshness, orphans.
    daily: int = Field(default=0, ge=0)
    weekly: int = Field(default=0, ge=0)
    monthly: int = Field(default=0, ge=0)
    max_backup_age: str = "24h"  # backup.verify: the newest complete backup must be younger (runbook: 24 h)
    restore_test_max_age: str = "8d"  # backup.verify warns when no restore test is this recent
    incomplete_after: str = "1d"  # failed/incomplete backups older than this are pruned
    # backup.verify re-hashes each backup whose last checksum is older than this (and the newest always).
    reverify_after: str = "7d"

    @field_validator("reverify_after")
    @classmethod
    def _reverify_after(cls, v: str) -> str:
        if parse_age(v).total_seconds() < 3600:
            raise ValueError(f"reverify_after {v!r}: at least 1h (every backup is read in full when due)")
        return v

    @field_validator("max_backup_age", "restore_test_max_age", "incomplete_after")
    @classmethod
    def _ages(cls, v: str) -> str:
        parse_age(v)
        return v




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
    # A scheduled entry whose firings end this many times in a row without doing their work
    # (skipped: lock held ad hoc, expired waiting; deferred and never run) raises a warning.
    skip_streak: int = Field(default=3, ge=1, le=100)


class TaskOverride(Strict):
    impact: Impact | None = None
    soft_time_limit: int | None = Field(default=None, gt=0)
    time_limit: int | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0, le=20)
    # false: a run lost with its worker is never re-run on its own (see TaskSpec.repeatable)
    repeatable: bool | None = None

    @field_validator("time_limit")
    @classmethod
    def _soft_below_hard(cls, v: int | None, info: ValidationInfo) -> int | None:
        soft = info.data.get("soft_time_limit")
        if v is not None and soft is not None and soft >= v:
            raise ValueError(f"soft_time_limit ({soft}s) must be below time_limit ({v}s): the soft limit"
                             " lets the run end cleanly first")
        return v


class HistorySection(Strict):
    """``[history]``: how long maintd keeps its own records (``maintd.prune_history``)."""

    keep_days: int = Field(default=90, ge=1)  # runs and alert deliveries; the newest per task and target stay
    results_keep_days: int = Field(default=30, ge=1)  # Celery's result rows (celery_taskmeta)
    batch_size: int = Field(default=5000, ge=100, le=100000)  # rows per DELETE (short transactions)


def validate_cron(expr: str) -> str:
    if expr.strip().lower() == "off":
        return "off"
    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ValueError(f"malformed cron {expr!r}: expected 5 fields 'min hour dom mon dow'")
    return expr


class Config(Strict):
    maintd: MaintdSection = Field(default_factory=MaintdSection)
    broker: BrokerSection = Field(default_factory=BrokerSection)
    beat: BeatSection = Field(default_factory=BeatSection)
    results: ResultsSection = Field(default_factory=ResultsSection)
    flower: FlowerSection = Field(default_factory=FlowerSection)
    store: StoreSection | None = None
    retention: RetentionSection = Field(default_factory=RetentionSection)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    alerting: AlertingSection = Field(default_factory=AlertingSection)
    history: HistorySection = Field(default_factory=HistorySection)
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
    tmp: list[TmpTarget] = Field(default_factory=list)
    audit: list[AuditTarget] = Field(default_factory=list)
    watchdog: WatchdogSection = Field(default_factory=WatchdogSection)
    incidents: IncidentsSection = Field(default_factory=IncidentsSection)
    metrics: list[MetricTarget] = Field(default_factory=list)
    health: HealthSection = Field(default_factory=HealthSection)
    reports: ReportsSection = Field(default_factory=ReportsSection)
    # (source name, text) of the TOML this was parsed from: later checks name file and line.
    _origin: tuple[str, str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _metric_sources(self) -> Config:
        resolve_metric_sources(self)
        return self

    @property
    def origin(self) -> tuple[str, str] | None:
        return self._origin

    def with_origin(self, source: str, text: str) -> Config:
        self._origin = (source, text)
        return self

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


__all__ = [
    "IMPACTS", "KIND_OF", "NAME_PATTERN", "ROLES", "AdmissionLimits", "AlertChannel", "AlertingSection",
    "BrokerSection", "CertificateTarget", "Config", "FilesTarget", "FlowerSection", "HistorySection", "HostTarget",
    "HttpTarget", "Impact", "LogsTarget", "MaintdSection", "PinnedTarget", "PostgresTarget", "RedisTarget",
    "ResultsSection", "RetentionPolicy", "RetentionSection", "Role", "Severity", "SqliteTarget", "StoreSection",
    "Strict", "Target", "TargetName", "TaskOverride", "Thresholds", "WebhookUrl", "check_where", "default_host",
    "parse_age", "validate_cron", "IncidentsSection", "HealthSection", "MetricTarget", "ReportsSection", "PingUrl",
    "WatchdogSection", "TmpTarget", "AuditTarget",
]
