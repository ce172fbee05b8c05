"""``maintd exporter``: maintd's own state for Prometheus (prometheus-client).

Every scrape reads the results database (through ``workers.records``) and the broker
(through ``workers.doors.redis``): per beat entry the last run's status, start and duration
and the last success; per health-checked target its status and score (``health.overview``'s
fold); deferred runs; queue depths and consumers; live workers. A source that cannot be read
is reported as ``maintd_exporter_source_up{source=...} 0`` and leaves its metrics out,
so the scrape itself still answers.

Access: loopback by default. With ``[flower] password`` set, every request needs Flower's
basic-auth credentials; without one, only a loopback address may be served (``--no-auth``
skips auth, on loopback only, as ``maintd flower --no-auth`` does).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workers.config import Config
from workers.errors import ConfigError, MaintdError

logger = logging.getLogger(__name__)
DEFAULT_ADDRESS, DEFAULT_PORT = "127.0.0.1", 9808
ENTRY_LABELS = ["entry", "task", "target"]


class MaintdCollector(Collector):
    """Reads maintd's records and broker at each scrape (nothing cached between scrapes)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def describe(self) -> list[Metric]:
        return []  # registering must not query: the families come from collect()

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily("maintd_exporter_source_up", "1 when the source could be read at this scrape",
                               labels=["source"])
        for source, read in (("records", self._records), ("broker", self._broker)):
            try:
                families = list(read())
            except Exception as exc:  # noqa: BLE001 - one source down must not fail the scrape
                logger.warning("exporter: reading %s failed: %s", source, exc)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield up
        yield GaugeMetricFamily("maintd_exporter_scrape_duration_seconds", "Time spent reading maintd's state",
                                value=time.perf_counter() - started)

    def _records(self) -> Iterable[Metric]:
        from tasks.core.health.overview import CHECKS, SCORE, fold
        from workers.records import records
        from workers.schedule import expand

        book = records(self.config)
        entries = expand(self.config)
        last = book.runs.last_of_entries([(e.name, e.task, e.target) for e in entries])
        status = GaugeMetricFamily("maintd_entry_last_run_status", "1 for the status of the entry's last scheduled run",
                                   labels=[*ENTRY_LABELS, "status"])
        start = GaugeMetricFamily("maintd_entry_last_run_start_timestamp_seconds",
                                  "When the entry's last scheduled run started", labels=ENTRY_LABELS)
        duration = GaugeMetricFamily("maintd_entry_last_run_duration_seconds",
                                     "How long the entry's last finished scheduled run took", labels=ENTRY_LABELS)
        success = GaugeMetricFamily("maintd_entry_last_success_timestamp_seconds",
                                    "When the last ok or warning run of the entry's task and target ended",
                                    labels=ENTRY_LABELS)
        for e in entries:
            labels = [e.name, e.task, e.target or ""]
            row = last.get(e.name) or {}
            if row.get("status"):
                status.add_metric([*labels, row["status"]], 1)
                start.add_metric(labels, row["started_at"].timestamp())
                if row.get("duration_s") is not None:
                    duration.add_metric(labels, float(row["duration_s"]))
            if row.get("last_success_at"):
                success.add_metric(labels, row["last_success_at"].timestamp())
        yield from (status, start, duration, success)

        doc = fold(book.runs.latest(list(CHECKS)), self.config, datetime.now(UTC))
        health = GaugeMetricFamily("maintd_target_health_status", "1 for the target's health status",
                                   labels=["task", "target", "status"])
        score = GaugeMetricFamily("maintd_target_health_score",
                                  "100 healthy, 50 degraded or stale, 0 unhealthy (absent: no result yet)",
                                  labels=["task", "target"])
        for s in doc["services"]:
            state = "stale" if s["stale"] else s["status"]
            health.add_metric([s["task"], s["target"], state], 1)
            if state in SCORE:
                score.add_metric([s["task"], s["target"]], SCORE[state])
        yield from (health, score)
        yield GaugeMetricFamily("maintd_health_score", "health.overview's score over every target (0-100)",
                                value=float(doc["score"]))

        deferred = GaugeMetricFamily("maintd_deferred_runs", "Runs waiting for their window, a back-off or a lock",
                                     labels=["task", "waiting_for"])
        counts: dict[tuple[str, str], int] = {}
        for d in book.deferred.pending():
            key = (str(d["task"]), str(d.get("waiting_for") or "time"))
            counts[key] = counts.get(key, 0) + 1
        for (task, waiting), n in sorted(counts.items()):
            deferred.add_metric([task, waiting], n)
        yield deferred

    def _broker(self) -> Iterable[Metric]:
        from workers.cli.queues import queue_states
        from workers.doors.redis import alive_client, alive_nodes

        nodes = alive_nodes(alive_client(self.config))
        depth = GaugeMetricFamily("maintd_queue_messages", "Messages waiting in the queue", labels=["queue"])
        consumers = GaugeMetricFamily("maintd_queue_consumers", "Live worker nodes consuming the queue",
                                      labels=["queue"])
        for q in queue_states(self.config, nodes):
            depth.add_metric([q.name], q.messages)
            consumers.add_metric([q.name], len(q.consumers))
        yield from (depth, consumers)
        yield GaugeMetricFamily("maintd_workers_alive", "Worker nodes whose liveness mark is fresh", value=len(nodes))


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def basic_auth(app: WSGIApp, user: str, password: str) -> WSGIApp:
    """``app`` behind HTTP basic auth (constant-time comparison; 401 with a challenge otherwise)."""
    expected = f"{user}:{password}".encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        given = b""
        if header.startswith("Basic "):
            try:
                given = base64.b64decode(header[6:].strip(), validate=True)
            except (binascii.Error, ValueError):
                given = b""
        if not hmac.compare_digest(given, expected):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="maintd"'),
                                                ("Content-Type", "text/plain")])
            return [b"authentication required\n"]
        return app(environ, start_response)

    return guarded


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("exporter: " + format, *args)


def build_server(config: Config, address: str, port: int, no_auth: bool = False) -> WSGIServer:
    """The exporter's HTTP server (not yet serving): ``/metrics`` (any path) in Prometheus text."""
    from workers.processes.flower import check_credentials, is_loopback

    password = config.flower.password.reveal() if config.flower.password else None
    if no_auth or password is None:
        if not is_loopback(address):
            raise ConfigError(f"exporter: serving {address} needs basic auth: set [flower] password (the exporter"
                              " uses Flower's credentials) or bind a loopback address")
        password = None
    else:
        check_credentials(config.flower.user, password)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MaintdCollector(config))
    app: WSGIApp = make_wsgi_app(registry)
    if password is not None:
        app = basic_auth(app, config.flower.user, password)
    try:
        return make_server(address, port, app, server_class=_Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise MaintdError(f"exporter: cannot serve on {address}:{port}: {exc.strerror or exc}") from None


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("exporter", help="serve maintd's state as Prometheus metrics (loopback by default)")
    s.add_argument("--address", default=DEFAULT_ADDRESS, help=f"listen address (default {DEFAULT_ADDRESS})")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"listen port (default {DEFAULT_PORT})")
    s.add_argument("--no-auth", action="store_true", help="serve without basic auth (loopback only)")
    s.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from workers.config import get_config

    config = get_config()
    server = build_server(config, args.address, args.port, args.no_auth)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    auth = "no auth" if args.no_auth or config.flower.password is None else f"basic auth, user {config.flower.user}"
    print(f"maintd exporter at http://{host}:{port}/metrics ({auth})", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
