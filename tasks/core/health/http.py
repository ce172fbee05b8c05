"""``health.http``: status code, latency vs ``max_latency_ms`` and optional expectations
on JSON fields of the body (dotted paths: ``overall_status``, ``services.0.status``).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import InsecureRequestWarning

from tasks.core.findings import Findings, unreachable
from tasks.core.health.common import wait_s
from workers.config import HttpTarget, Thresholds
from workers.config.secrets import mask_secrets
from workers.errors import first_line
from workers.records.outcome import Result

logger = logging.getLogger(__name__)

USER_AGENT = "maintd-health/1"
MAX_BODY_BYTES = 1 << 20  # a health document is small; never read a large download
CRITICAL_LATENCY_FACTOR = 2.0  # critical at twice max_latency_ms
_MISSING = object()


@dataclass(frozen=True)
class HttpResponse:
    status_code: int
    latency_ms: float
    body: bytes
    content_type: str = ""
    truncated: bool = False


class BodyTimeout(Exception):
    """The body did not arrive within the check's deadline."""


def flatten(expect: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted paths to expected values. TOML turns ``services.0.status = ...`` into nested
    tables, so nesting and dotted keys mean the same thing here."""
    out: dict[str, Any] = {}
    for key, value in expect.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def lookup(doc: Any, path: str) -> Any:
    """The value at dotted ``path`` (list items by index), or ``_MISSING``."""
    node = doc
    for part in path.split("."):
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                return _MISSING
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def matches(actual: Any, expected: Any) -> bool:
    """Equality (bools are not numbers); a list of expected values means any of them."""
    if isinstance(expected, list) and not isinstance(actual, list):
        return any(matches(actual, e) for e in expected)
    return actual == expected and isinstance(actual, bool) == isinstance(expected, bool)


def fetch(target: HttpTarget) -> HttpResponse:
    """GET the URL within the timeout (connect, each read, and the whole body)."""
    timeout = wait_s(target.timeout_s)
    started = time.monotonic()
    deadline = started + timeout
    with warnings.catch_warnings():
        if not target.verify_tls:  # the operator chose this; do not repeat it every five minutes
            warnings.simplefilter("ignore", InsecureRequestWarning)
        return _get(target, timeout, started, deadline)


def _get(target: HttpTarget, timeout: float, started: float, deadline: float) -> HttpResponse:
    with requests.get(target.url.reveal(), timeout=(timeout, timeout), verify=target.verify_tls, stream=True,
                      allow_redirects=True, headers={"User-Agent": USER_AGENT, "Accept": "application/json"}) as resp:
        chunks, size, truncated = [], 0, False
        for chunk in resp.iter_content(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                truncated = True
                break
            if time.monotonic() > deadline:
                raise BodyTimeout(f"body not complete within {timeout:g}s")
        latency_ms = (time.monotonic() - started) * 1000
        return HttpResponse(resp.status_code, round(latency_ms, 1), b"".join(chunks)[:MAX_BODY_BYTES],
                            resp.headers.get("Content-Type", ""), truncated)


def failure_reason(exc: BaseException, timeout: float) -> str:
    """A short, URL-free reason for a failed request."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connect timed out after {timeout:g}s"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"no response within {timeout:g}s"
    if isinstance(exc, BodyTimeout):
        return str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error: {_root_cause(exc)}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"connection failed: {_root_cause(exc)}"
    return f"{type(exc).__name__}: {first_line(exc)}"


def _root_cause(exc: BaseException) -> str:
    """The innermost OS/TLS error in urllib3's chain of wrappers."""
    node: BaseException | None = exc
    found: BaseException | None = None
    seen: set[int] = set()
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, OSError) and (node.strerror or type(node).__module__ == "ssl"):
            found = node
        reason = getattr(node, "reason", None)
        if isinstance(reason, BaseException):
            node = reason
        elif node.args and isinstance(node.args[0], BaseException):
            node = node.args[0]
        else:
            node = node.__cause__ or node.__context__
    if found is None:
        return first_line(exc)
    if isinstance(found, OSError) and found.strerror and type(found).__module__ != "ssl":
        return found.strerror
    return first_line(found)


def assess(resp: HttpResponse, target: HttpTarget) -> Result:
    """Grade one response against the target's expectations."""
    found = Findings()
    if resp.status_code not in target.expect_status:
        wanted = "/".join(str(s) for s in target.expect_status)
        found.add("critical", f"HTTP {resp.status_code} (expected {wanted})")
    found.grade("latency", resp.latency_ms,
                (target.max_latency_ms, target.max_latency_ms * CRITICAL_LATENCY_FACTOR), unit=" ms")
    expectations = flatten(target.expect)
    met = 0
    if expectations:
        doc: Any = _MISSING
        if resp.truncated:
            found.add("critical", f"body larger than {MAX_BODY_BYTES // 1024} KB: expectations not checked")
        else:
            try:
                doc = json.loads(resp.body.decode("utf-8", errors="replace"))
            except ValueError:
                found.add("critical", f"body is not JSON ({resp.content_type or 'no content type'}): "
                                      "expectations not checked")
        if doc is not _MISSING:
            for path, expected in expectations.items():
                actual = lookup(doc, path)
                if actual is _MISSING:
                    found.add("critical", f"field {path} missing (expected {expected!r})")
                elif not matches(actual, expected):
                    found.add("critical", f"{path} is {actual!r}, expected {expected!r}")
                else:
                    met += 1
    headline = f"HTTP {resp.status_code} in {resp.latency_ms:.0f} ms from {target.url.masked}"
    if expectations:
        headline += f", {met}/{len(expectations)} expectations met"
    metrics = {"status_code": resp.status_code, "latency_ms": resp.latency_ms, "bytes": len(resp.body),
               "content_type": resp.content_type, "expectations": len(expectations),
               "expectations_met": met, "reachable": True}
    return found.result(headline, metrics)


def check(target: HttpTarget, thresholds: Thresholds) -> Result:
    """Request ``target`` once and grade the response; unreachable is critical."""
    where = {"url": target.url.masked}
    try:
        resp = fetch(target)
    except (requests.RequestException, BodyTimeout, OSError) as exc:
        reason = mask_secrets(failure_reason(exc, wait_s(target.timeout_s)), target)
        logger.warning("health.http[%s]: %s", target.name, reason)
        return unreachable(f"HTTP {target.url.masked}", reason, where)
    result = assess(resp, target)
    return Result(result.status, result.summary, {**result.metrics, **where})
