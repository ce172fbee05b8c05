"""``health.metric``: one number an application exposes, graded by configured conditions.

Three sources (``[[metrics]] type``): a read-only SQL query against a ``[[postgres]]``
(READ ONLY transaction, ``statement_timeout``, rolled back) or ``[[sqlite]]`` target
(opened read-only with ``query_only``, interrupted at the timeout); a dotted JSON field of
an ``[[http]]`` target's response (GET, or POST with the configured JSON body); a field of a
``[[redis]]`` target's ``INFO``. The value is the run's ``value`` metric, so it becomes a
series (``maintd_metric_points``). A source that cannot be read is ``critical`` with the
reason; a query returning no row or NULL, or a field that is missing or not a number, is
``warning`` (the metric itself is broken, the application may be fine).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

import psycopg2
import redis
import requests

from tasks.core.health.common import wait_s
from tasks.core.health.http import _MISSING as MISSING
from tasks.core.health.http import MAX_BODY_BYTES, USER_AGENT, failure_reason, lookup
from workers.config import Config, HttpTarget, PostgresTarget, RedisTarget, SqliteTarget
from workers.config.reporting import MetricTarget
from workers.config.secrets import mask_secrets
from workers.doors import postgres as pg
from workers.doors import redis as redis_door
from workers.doors import sqlite as sqlite_door
from workers.errors import MaintdError, first_line
from workers.records.outcome import Result

logger = logging.getLogger(__name__)


class SourceError(Exception):
    """The source could not be read (critical)."""


class NoValue(Exception):
    """The source answered, but not with a number (warning)."""


def as_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise NoValue(f"{what} is {json.dumps(value)}, not a number")
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        raise NoValue(f"{what} is {str(value)[:60]!r}, not a number") from None


def read_postgres(metric: MetricTarget, target: PostgresTarget) -> float:
    try:
        conn = pg.connect(target.dsn, password=target.password, application_name="maintd:health.metric",
                          connect_timeout_s=min(target.connect_timeout_s, metric.timeout_s),
                          statement_timeout_s=metric.timeout_s, lock_timeout_s=min(5.0, metric.timeout_s),
                          autocommit=False)
    except MaintdError as exc:
        raise SourceError(str(exc)) from None
    try:
        conn.set_session(readonly=True)  # every statement runs in a READ ONLY transaction
        with conn.cursor() as cur:
            cur.execute(metric.query)
            row = cur.fetchone() if cur.description else None
        conn.rollback()
    except psycopg2.Error as exc:
        raise SourceError(f"query failed: {first_line(exc)}") from None
    finally:
        conn.close()
    if row is None:
        raise NoValue("the query returned no row")
    return as_number(row[0], "the query's first column")


def read_sqlite(metric: MetricTarget, target: SqliteTarget) -> float:
    if not target.path.exists():
        raise SourceError(f"{target.path} does not exist")
    deadline = time.monotonic() + wait_s(metric.timeout_s)
    try:
        with sqlite_door.session(target.path, read_only=True, busy_timeout_s=min(target.busy_timeout_s,
                                 metric.timeout_s), deadline=deadline) as conn:
            conn.execute("PRAGMA query_only = 1")
            row = conn.execute(str(metric.query)).fetchone()
    except sqlite3.Error as exc:
        reason = "query interrupted at the timeout" if "interrupted" in str(exc) else f"query failed: {exc}"
        raise SourceError(reason) from None
    if row is None:
        raise NoValue("the query returned no row")
    return as_number(row[0], "the query's first column")


def read_json(metric: MetricTarget, target: HttpTarget) -> float:
    timeout = wait_s(min(metric.timeout_s, target.timeout_s))
    url = target.url.reveal().rstrip("/") + metric.path if metric.path else target.url.reveal()
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    try:
        with requests.request(metric.method, url, json=metric.body, timeout=(timeout, timeout), stream=True,
                              verify=target.verify_tls, headers=headers) as resp:
            body = resp.raw.read(MAX_BODY_BYTES + 1, decode_content=True)
            status = resp.status_code
    except requests.RequestException as exc:
        raise SourceError(failure_reason(exc, timeout)) from None
    if status not in target.expect_status:
        raise SourceError(f"HTTP {status} (expected {', '.join(map(str, target.expect_status))})")
    if len(body) > MAX_BODY_BYTES:
        raise NoValue(f"response larger than {MAX_BODY_BYTES} bytes")
    try:
        doc = json.loads(body)
    except ValueError:
        raise NoValue("the response is not JSON") from None
    value = lookup(doc, str(metric.field))
    if value is MISSING:
        raise NoValue(f"field {metric.field!r} is not in the response")
    return as_number(value, f"field {metric.field!r}")


def read_redis_info(metric: MetricTarget, target: RedisTarget) -> float:
    client = redis_door.target_client(target, client_name="maintd:health.metric",
                                      timeout_s=wait_s(min(metric.timeout_s, target.timeout_s)))
    try:
        info = client.info("everything")
    except (redis.RedisError, OSError) as exc:
        raise SourceError(f"{type(exc).__name__}: {first_line(exc)}") from None
    finally:
        client.close()
    value = lookup(info, str(metric.field))
    if value is MISSING:
        raise NoValue(f"INFO has no field {metric.field!r}")
    return as_number(value, f"INFO field {metric.field!r}")


def read(metric: MetricTarget, config: Config) -> float:
    source = config.target(metric.source_kind, metric.source)
    if source is None:  # resolved at load; a config changed under a running worker
        raise SourceError(f"source {metric.source!r} is not configured")
    if isinstance(source, PostgresTarget):
        return read_postgres(metric, source)
    if isinstance(source, SqliteTarget):
        return read_sqlite(metric, source)
    if isinstance(source, HttpTarget):
        return read_json(metric, source)
    assert isinstance(source, RedisTarget)
    return read_redis_info(metric, source)


def grade(metric: MetricTarget, value: float) -> tuple[str, str | None]:
    """(status, the condition met) — critical's condition is asked first."""
    for status, condition in metric.conditions.items():
        if condition(value):
            return status, str(condition)
    return "ok", None


def check(metric: MetricTarget, config: Config) -> Result:
    """Read the metric once and grade it."""
    where = {"type": metric.type, "source": metric.source, "unit": metric.unit,
             "warning": metric.warning, "critical": metric.critical}
    label = f"{metric.name} ({metric.type} from {metric.source})"
    started = time.monotonic()
    try:
        value = read(metric, config)
    except SourceError as exc:
        reason = mask_secrets(str(exc), config.target(metric.source_kind, metric.source) or metric)
        logger.warning("health.metric[%s]: %s", metric.name, reason)
        return Result("critical", f"{label}: cannot read: {reason}"[:500], {**where, "error": reason})
    except NoValue as exc:
        return Result("warning", f"{label}: no value: {exc}"[:500], {**where, "error": str(exc)})
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    status, met = grade(metric, value)
    shown = f"{value:g}{metric.unit}"
    summary = f"{label} = {shown}" + (f" ({status}: {met})" if met else "")
    return Result(status, summary, {**where, "value": value, "read_ms": elapsed_ms})
