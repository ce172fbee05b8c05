"""maintd's records in the results database: runs, deferred runs, alert state and
deliveries (one ``Records`` per database URL), and the outcome types every run ends in.

One accessor: ``records(config)``. The schema lives in ``schema`` and is migrated at
first connect; each table's statements live in the module named for it. Reports, the
watchdog and ``maintd status`` add their queries here, not beside their callers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg2.extensions

from workers.config import Config, get_config
from workers.config.secrets import SecretUrl
from workers.errors import ConfigError
from workers.records.alerts import AlertLog
from workers.records.celery_results import CeleryResults
from workers.records.connection import ResultsDatabase
from workers.records.deferred import DeferredRuns
from workers.records.incidents import IncidentLog
from workers.records.metrics import MetricSeries
from workers.records.reports import ReportQueries
from workers.records.runs import RunLog
from workers.records.watch import WatchLog

T = TypeVar("T")
__all__ = ["Records", "records"]


class Records:
    """Every table of the results database, over one reconnecting connection."""

    def __init__(self, url: SecretUrl | str) -> None:
        self.db = ResultsDatabase(url)
        self.runs = RunLog(self.db)
        self.deferred = DeferredRuns(self.db)
        self.alerts = AlertLog(self.db)
        self.watch = WatchLog(self.db)
        self.incidents = IncidentLog(self.db)
        self.celery_results = CeleryResults(self.db)
        self.metrics = MetricSeries(self.db)
        self.reports = ReportQueries(self.db)

    def execute(self, fn: Callable[[psycopg2.extensions.cursor], T], transaction: bool = True) -> T:
        return self.db.execute(fn, transaction)

    def close(self) -> None:
        self.db.close()


_open: dict[str, Records] = {}
_mutex = threading.Lock()


def records(config: Config | None = None) -> Records:
    """The records of ``config``'s results database (the process-wide config by default)."""
    url = (config or get_config()).results.url
    if url is None:
        raise ConfigError("no [results] url configured: maintd's records live in the results database")
    key = url.reveal()
    with _mutex:
        if key not in _open:
            _open[key] = Records(url)
        return _open[key]
