"""The Celery app. Its configuration is computed lazily from the maintd config, so
``from tasks import health`` in a plain shell works with only ``MAINTD_CONFIG`` set.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from workers.catalog import TASK_MODULES, load_catalog
from workers.config_model import Config
from workers.errors import ConfigError


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
    """The Celery baseline of DESIGN.md, from one config."""
    from workers.routing import declare_queues, route_task
    from workers.schedule import celery_beat_schedule

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
        "result_expires": 30 * 86400,
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
        "worker_hijack_root_logger": False,
        "include": list(TASK_MODULES),
    }


def _lazy_settings() -> dict[str, Any]:
    from workers.settings import get_config

    return celery_settings(get_config())


app = Celery("maintd", set_as_current=True)
app.add_defaults(_lazy_settings)
