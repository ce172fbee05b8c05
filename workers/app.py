"""The Celery app. Its configuration is computed lazily from the maintd config, so
``from tasks import health`` in a plain shell works with only ``MAINTD_CONFIG`` set.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from typing import Any

from celery import Celery, bootsteps
from celery.schedules import crontab
from kombu import Exchange, Queue, binding

from workers.beat_scheduler import beat_settings
from workers.catalog import SPECS, TASK_MODULES, load_catalog, validate
from workers.config import Config, get_config
from workers.doors.redis import alive_client, forget_alive, mark_alive
from workers.errors import ConfigError
from workers.routing import EXCHANGE, all_queue_names, queue_for
from workers.schedule import expand

logger = logging.getLogger(__name__)
_EXCHANGE = Exchange(EXCHANGE, type="direct")

# Message headers (not task arguments: Flower and results never show them as kwargs) that tell
# a scheduled dispatch from an ad hoc one. Beat entries carry ENTRY_HEADER (the entry's name);
# a deferred run released again carries it on, with ORIGIN_HEADER naming the first dispatch.
ENTRY_HEADER = "maintd_entry"
ORIGIN_HEADER = "maintd_origin"


def result_backend_url(url: str) -> str:
    """SQLAlchemy spelling of a PostgreSQL URL for Celery's database backend."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "db+postgresql+psycopg2://" + url[len(prefix):]
    if url.startswith("db+"):
        return url
    raise ConfigError(f"results.url: unsupported scheme in {url.split('://')[0]!r} (want postgresql://)")


def longest_hard_limit(config: Config) -> int:
    specs = load_catalog().values()
    limits = [config.tasks[s.name].time_limit or s.time_limit if s.name in config.tasks else s.time_limit for s in specs]
    return max(limits, default=0)


def celery_settings(config: Config) -> dict[str, Any]:
    """The Celery baseline of DESIGN.md, from one config (checked against the catalog first)."""
    validate(config)
    if config.broker.url is None or config.results.url is None:
        raise ConfigError(
            "no [broker] url / [results] url configured: run `maintd up` for the embedded "
            "default, or set both in the config"
        )
    vt = config.broker.visibility_timeout
    longest = longest_hard_limit(config)
    if vt <= longest:
        raise ConfigError(
            f"broker.visibility_timeout: {vt}s must exceed the longest task hard limit ({longest}s)"
        )
    transport = {
        "visibility_timeout": vt,
        "socket_timeout": 15,
        "socket_connect_timeout": 5,
        "retry_on_timeout": True,
        "health_check_interval": 25,
        # Sweep for messages of dead workers often enough for short test timeouts too.
        "unacked_restore_interval": max(1, min(10, vt // 10)),
        "unacked_restore_throttle": 1 if vt < 600 else 10,
    }
    return {
        "broker_url": config.broker.url.reveal(),
        "result_backend": result_backend_url(config.results.url.reveal()),
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": vt},
        "visibility_timeout": vt,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "database_engine_options": {"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}},
        "database_table_names": {"task": "celery_taskmeta", "group": "celery_groupmeta"},
        "result_extended": True,
        # Celery's result rows are pruned (batched) by maintd.prune_history after this long.
        "result_expires": config.history.results_keep_days * 86400,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "timezone": "UTC",
        "enable_utc": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_retry_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "worker_deduplicate_successful_tasks": True,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_create_missing_queues": False,
        "task_queues": declare_queues(config),
        "task_default_queue": "db.none",
        "task_default_exchange": "maintd",
        "task_routes": (route_task,),
        "beat_schedule": celery_beat_schedule(config),
        "beat_cron_starting_deadline": 600,
        # RedBeat: any number of beats, one dispatching (workers/beat_scheduler.py)
        **beat_settings(config.broker.url.reveal(), config.beat.lock_ttl_s, config.beat.tick_s),
        "worker_hijack_root_logger": False,
        "include": list(TASK_MODULES),
    }


def declare_queues(config: Config) -> tuple[Queue, ...]:
    """Each queue is bound to its own direct exchange (what the router publishes to) and to the
    shared ``maintd`` exchange (unrouted tasks, producers that know only that name). The Redis
    transport reads an exchange's whole binding set at every publish: one exchange for a
    fleet's 200 queues made that a 200-member set per message (bench/scale.py)."""
    return tuple(declare_queue(n) for n in all_queue_names(config))


def declare_queue(name: str) -> Queue:
    """One maintd queue: bound to its own exchange and to the shared one (``declare_queues``)."""
    return Queue(name, [binding(_EXCHANGE, routing_key=name), binding(Exchange(name, type="direct"), routing_key=name)],
                 routing_key=name)


def route_task(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any],
               task: Any = None, **_: Any) -> dict[str, Any] | None:
    """Celery router: every maintd task is routed here; unknown targets fail at send."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    target_name = args[0] if args else kwargs.get("target")
    queue = queue_for(spec, target_name, get_config())
    # A host's queue the app was not configured with (a long-lived producer whose config gained
    # a pinned host since) is declared here rather than refused.
    known = app.amqp.queues
    return {"queue": known[queue] if queue in known else declare_queue(queue), "routing_key": queue,
            "exchange": queue}


def celery_beat_schedule(config: Config) -> dict[str, dict[str, Any]]:
    out = {}
    for e in expand(config):
        minute, hour, dom, month, dow = e.cron.split()
        out[e.name] = {
            "task": e.task,
            "schedule": crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow),
            "args": (e.target,) if e.target else (),
            "options": {"expires": e.expires_s, "headers": {ENTRY_HEADER: e.name}},
        }
    return out


def _lazy_settings() -> dict[str, Any]:
    return celery_settings(get_config())


ALIVE_EVERY_S = 10
ALIVE_TTL_S = 30


class AliveMark(bootsteps.StartStopStep):
    """A consumer step: every ``ALIVE_EVERY_S`` the worker's own event loop sets its liveness
    mark (``maintd:alive:<node>``, expiring after ``ALIVE_TTL_S``), so a node whose loop is
    stuck stops being "alive" — what `celery inspect ping` proves, without the reply keys."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self.tref: Any = None
        self.client: Any = None
        self.parent: Any = None
        super().__init__(parent, **kwargs)

    def start(self, parent: Any) -> None:
        self.client = alive_client(get_config())
        self.node = parent.hostname
        self.parent = parent
        self.mark()
        self.tref = parent.timer.call_repeatedly(ALIVE_EVERY_S, self.mark, priority=10)

    def mark(self) -> None:
        try:
            mark_alive(self.client, self.node, ALIVE_TTL_S,
                       {"pid": os.getpid(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "queues": self.queues()})
        except Exception as exc:  # noqa: BLE001 - the next mark retries; the TTL says the rest
            logger.warning("liveness mark for %s failed: %s", self.node, exc)

    def queues(self) -> list[str]:
        """The queues this node consumes now (`maintd status` finds queues nobody consumes)."""
        consumer = getattr(self.parent, "task_consumer", None)
        return sorted(q.name for q in consumer.queues) if consumer is not None else []

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        if self.client is not None:
            try:
                forget_alive(self.client, self.node)
            except Exception as exc:  # noqa: BLE001 - it expires anyway
                logger.warning("liveness mark for %s not removed: %s", self.node, exc)


# MaintdAMQP: a maintd message shows its target by name (argsrepr), see workers/verdict.py
app = Celery("maintd", set_as_current=True, amqp="workers.verdict:MaintdAMQP")
app.add_defaults(_lazy_settings)
app.steps["consumer"].add(AliveMark)
