"""Writing reports to ``[reports] dir`` and sending them through the alert channels, and the
two tasks' bodies (``weekly``, ``capacity``).

A report goes to every channel whatever its ``min_severity`` (it is asked for, weekly, not an
alarm): email carries the HTML inline and attached, Slack and webhooks the text summary with
the file's path. Files are written whole (a temporary name, then renamed): a reader never
sees half a report. The oldest beyond ``[reports] keep`` are removed.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tasks.core.reports import capacity, render, weekly
from workers.alerts.delivery import deliver, record
from workers.alerts.model import Alert
from workers.config import Config
from workers.errors import ConfigError
from workers.records import Records
from workers.records.outcome import Result

logger = logging.getLogger(__name__)


def write(directory: Path, name: str, content: str, keep: int, prefix: str) -> Path:
    """Write ``content`` to ``directory/name`` atomically; prune the oldest ``prefix*`` files."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".partial")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        final = directory / name
        os.replace(tmp, final)
    except OSError as exc:
        raise ConfigError(f"[reports] dir {directory}: cannot write {name}: {exc.strerror or exc}") from None
    old = sorted(p for p in directory.glob(f"{prefix}*{Path(name).suffix}") if p.is_file())
    for stale in old[:-keep] if len(old) > keep else []:
        stale.unlink(missing_ok=True)
    return final


def send(config: Config, book: Records, task: str, status: str, text: str, host: str,
         html: str | None, attachment: str | None) -> list[str]:
    """Deliver to every channel; returns the channels that did not get it."""
    if not config.alerts:
        return []
    severity = status if status in ("ok", "warning", "critical") else "critical"
    alert = Alert(task=task, target="", severity=severity, previous=None, kind="report", status=status,
                  summary=text, host=host, at=datetime.now(UTC).isoformat(timespec="seconds"), html=html,
                  attachment_name=attachment)
    deliveries = deliver(config, alert, list(range(len(config.alerts))))
    record(book, alert, deliveries)
    return [f"{d.channel}: {d.error}" for d in deliveries if not d.delivered]


def weekly_run(config: Config, book: Records, now: datetime, host: str, since: datetime | None = None,
               deliver_to_channels: bool = True) -> Result:
    """Render the week before ``now``, write it to ``[reports] dir``, send it."""
    since = since or now - weekly.WEEK
    data = weekly.gather(book, config, since, now, host)
    title = f"maintd weekly report — {now:%Y-%m-%d}"
    page = render.html(data, title)
    stem = f"weekly-{now:%Y-%m-%dT%H%M}"
    path = write(config.reports.dir, f"{stem}.html", page, config.reports.keep, "weekly-")
    text = render.text(data, title, str(path.resolve()))
    write(config.reports.dir, f"{stem}.txt", text, config.reports.keep, "weekly-")
    failed = send(config, book, "reports.weekly", data.status, text, host, page, path.name) \
        if deliver_to_channels else []
    metrics = {"report": str(path.resolve()), "bytes": len(page.encode()), "since": since.isoformat(),
               "until": now.isoformat(), "failures": sum(int(f["runs"]) for f in data.failures),
               "open_findings": len(data.open_findings), "capacity_series": len(data.capacity),
               "channels": len(config.alerts), "undelivered": failed}
    summary = text.splitlines()[0] + f"; written to {path}"
    if failed:
        return Result("warning", f"{summary}; not delivered to {len(failed)} channel(s): {failed[0]}"[:1000],
                      metrics, [f"wrote {path}"])
    return Result(data.status, summary, metrics, [f"wrote {path}"])


def capacity_run(config: Config, book: Records, now: datetime, host: str) -> Result:
    """Project every series; write the charts page to ``[reports] dir``."""
    projections = capacity.assess(book, config, now)
    title = f"maintd capacity forecast — {now:%Y-%m-%d}"
    data = weekly.WeeklyData(now - timedelta(days=config.reports.history_days), now, host, capacity=projections)
    page = render.capacity_html(data, title)
    path = write(config.reports.dir, f"capacity-{now:%Y-%m-%dT%H%M}.html", page, config.reports.keep, "capacity-")
    return capacity.result(projections, config, str(path.resolve()))
