"""The metrics `maintd exporter` serves, read at each scrape: per beat entry the last run's
status, start and duration and the last success; per health-checked target its status and
score (``health.overview``'s fold); deferred runs; queue depths and consumers; live workers.
A source that cannot be read is ``maintd_exporter_source_up{source=...} 0`` and its metrics
are left out, so the scrape itself still answers."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workers.config import Config

logger = logging.getLogger(__name__)
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
