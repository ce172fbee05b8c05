"""Target models: one per kind of thing maintd maintains (``[[postgres]]``, ``[[redis]]``, ...)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from workers.config.logs import LogRotation
from workers.config.secrets import Secret, SecretUrl
from workers.config.types import NAME_PATTERN, Role, Strict, TargetName, parse_age
from workers.config.windows import MaintenanceWindow, parse_windows


class Target(Strict):
    """Fields every target has. ``role`` picks the worker pool that serves it."""

    name: TargetName
    role: Role = "db"
    window: list[str] = Field(default_factory=list)
    # A health check of this target turning critical opens an incident (incident.capture).
    incident: bool = False

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

    @property
    def lock_scope(self) -> str:
        """What one maintenance change at a time is counted on: the thing itself (a database,
        a Redis database, a file on a host), not the target's name, so two names for one thing
        exclude each other. Kinds without a better identity use their name."""
        return f"{self.kind}:{self.name}"


def _url_scope(url: str, default_port: int) -> str | None:
    """``host:port/path`` of a URL (no credentials); None when it does not parse as one."""
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port or default_port
    except ValueError:
        return None
    if "://" not in url:
        return None
    return f"{host or 'localhost'}:{port}{parts.path or '/'}"


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

    @field_validator("archive_table")
    @classmethod
    def _archive_elsewhere(cls, v: str | None, info: ValidationInfo) -> str | None:
        table = info.data.get("table")
        if v is not None and table and _qualified(v) == _qualified(table):
            raise ValueError(f"archive_table {v!r} is the table itself: rows would be deleted and inserted"
                             " back into the same table")
        return v

    @property
    def max_age(self) -> timedelta:
        return parse_age(self.older_than)



def _qualified(name: str) -> str:
    """A table name as written in the config (names are as stored, case included) with the
    schema made explicit: an unqualified name is in ``public``, the default search_path."""
    name = name.strip()
    return name if "." in name else f"public.{name}"


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
    # PostgreSQL maintenance (tasks/core/postgres): thresholds default to the runbooks' numbers.
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
    # Free space assumed on the restore server (restore_dsn) when maintd cannot statvfs it; without
    # restore_dsn the restore test uses the target's own server and free_disk_floor_mb.
    restore_free_disk_floor_mb: float | None = Field(default=None, ge=0)

    @property
    def lock_scope(self) -> str:
        """``postgres:host:port/dbname`` from the DSN. At run time the lock is a PostgreSQL
        advisory lock, which the server keeps per database: two names (or two spellings of the
        host) for one database exclude each other whatever this says; this is what ``maintd
        schedule`` groups entries by."""
        raw = self.dsn.reveal()
        if "://" not in raw:  # libpq keyword/value DSN
            kv = dict(tok.partition("=")[::2] for tok in raw.split() if "=" in tok)
            return f"postgres:{kv.get('host', 'localhost')}:{kv.get('port', '5432')}/{kv.get('dbname', '')}"
        return f"postgres:{_url_scope(raw, 5432) or self.name}"


class RedisTarget(Target):
    url: SecretUrl
    password: Secret | None = None
    broker: bool = False
    timeout_s: float = Field(default=5, gt=0, le=120)
    # redis.stats: what the server is for ("cache" expects an LRU/LFU/TTL eviction policy, "store"
    # noeviction; broker = true means "broker", noeviction too), SLOWLOG RESET after reading it
    # (opt-in: it changes server state), LATENCY DOCTOR, and the bounded biggest-keys sample.
    use: Literal["cache", "store", "broker"] | None = None
    reset_slowlog: bool = False
    latency_doctor: bool = False
    bigkeys_sample: int = Field(default=1000, ge=0, le=100_000)  # keys sampled with MEMORY USAGE (0: off)
    bigkeys_budget_s: float = Field(default=2, gt=0, le=60)

    @property
    def lock_scope(self) -> str:
        """``redis:host:port/db`` from the URL (the name for a unix socket)."""
        try:
            parts = urlsplit(self.url.reveal())
            host, port = (parts.hostname or "").lower(), parts.port or 6379
        except ValueError:
            host, port = "", 0
        if not host or parts.scheme == "unix":
            return f"redis:{self.name}"
        return f"redis:{host}:{port}/{parts.path.strip('/') or '0'}"


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
    # sqlite.optimize: VACUUM only when the free pages exceed this share of the file.
    vacuum_min_freelist_ratio: float = Field(default=0.20, ge=0, le=1)
    # VACUUM holds writers off while it rewrites the file: it runs only when its estimate (from a
    # timed snapshot copy) fits in this many seconds (default: busy_timeout_s, what writers wait).
    vacuum_max_lock_s: float | None = Field(default=None, gt=0)
    # VACUUM INTO a copy and swap it in atomically, when no other process has the file open
    # (an application stopped in the window); in-place VACUUM otherwise.
    vacuum_into: bool = False

    @property
    def lock_scope(self) -> str:
        return f"sqlite:{self.host}:{self.path}"


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


class LogsTarget(PinnedTarget, LogRotation):
    """``[[logs]]``: log files on one host (``pattern`` in ``path``), rotated as logrotate would."""

    path: Path
    pattern: str = "*.log"

    @property
    def rotated_dir(self) -> Path:
        return self.path / self.olddir if self.olddir is not None else self.path


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

