"""health.overview: folding the latest health results into the runbooks' health document,
as a table of cases and over the real run history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks.core.health import overview as ov
from workers.config import Config

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CONFIG = Config.model_validate({
    "postgres": [{"name": "main", "dsn": "postgresql://u@db/x"}],
    "redis": [{"name": "cache", "url": "redis://r:6379/0"}],
    "hosts": [{"name": "app1"}],
    "certificates": [{"name": "web", "address": "example.test:443"}],
    "schedule": {"health.redis[cache]": "off"},
})


def row(task: str, target: str, status: str, age_s: float = 60, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    at = NOW - timedelta(seconds=age_s)
    return {"task": task, "target": target, "status": status, "summary": f"{task} said {status}",
            "metrics": metrics or {}, "started_at": at - timedelta(seconds=1), "finished_at": at}


ALL_OK = [row("health.postgres", "main", "ok"), row("health.redis", "cache", "ok"),
          row("health.host", "app1", "ok"), row("health.certificates", "web", "ok")]


def with_row(new: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in ALL_OK if (r["task"], r["target"]) != (new["task"], new["target"])] + [new]


@pytest.mark.parametrize(("rows", "overall", "score", "status"), [
    (ALL_OK, "healthy", 100, "ok"),
    (with_row(row("health.postgres", "main", "warning")), "degraded", 87.5, "warning"),
    (with_row(row("health.postgres", "main", "critical")), "unhealthy", 75, "critical"),
    (with_row(row("health.postgres", "main", "failed")), "unhealthy", 75, "critical"),  # the check crashed
    # */5 schedule: stale after 3 intervals (15 min)
    (with_row(row("health.postgres", "main", "ok", age_s=14 * 60)), "healthy", 100, "ok"),
    (with_row(row("health.postgres", "main", "ok", age_s=16 * 60)), "degraded", 87.5, "warning"),
    # daily certificates check: 20 h old is fresh, 4 days is stale
    (with_row(row("health.certificates", "web", "ok", age_s=20 * 3600)), "healthy", 100, "ok"),
    (with_row(row("health.certificates", "web", "ok", age_s=4 * 86400)), "degraded", 87.5, "warning"),
    # a check scheduled "off" (ad hoc) is never stale
    (with_row(row("health.redis", "cache", "ok", age_s=30 * 86400)), "healthy", 100, "ok"),
    # a target with no run yet is listed as unknown but not counted
    ([r for r in ALL_OK if r["task"] != "health.host"], "healthy", 100, "ok"),
    # a target no longer configured is ignored
    (ALL_OK + [row("health.postgres", "old-db", "critical")], "healthy", 100, "ok"),
    ([], "healthy", 100, "ok"),
])
def test_fold_table(rows: list[dict[str, Any]], overall: str, score: float, status: str) -> None:
    result = ov.check(rows, CONFIG, NOW)
    assert result.metrics["overall_status"] == overall
    assert result.metrics["score"] == score
    assert result.status == status
    assert result.summary.startswith(f"{overall}, score {score:g}: ")


def test_document_shape() -> None:
    rows = with_row(row("health.host", "app1", "warning",
                        metrics={"cpu_percent": 25.3, "memory_percent": 67.8, "disk_percent": 85.2}))
    rows = [r for r in rows if r["task"] != "health.certificates"]
    doc = ov.check(rows, CONFIG, NOW).metrics
    services = {s["service_name"]: s for s in doc["services"]}
    assert set(services) == {"PostgreSQL (main)", "Redis (cache)", "Host (app1)", "Certificate (web)"}
    assert services["Host (app1)"]["status"] == "degraded"
    assert services["PostgreSQL (main)"]["status"] == "healthy"
    assert services["Certificate (web)"]["status"] == "unknown"
    assert services["Certificate (web)"]["summary"] == "no run yet"
    assert doc["counts"] == {"healthy": 2, "degraded": 1, "unhealthy": 0, "unknown": 1, "stale": 0}
    assert (doc["cpu_usage_percent"], doc["memory_usage_percent"], doc["disk_usage_percent"]) == (25.3, 67.8, 85.2)
    assert doc["score"] == pytest.approx(83.3)


def test_stale_service_says_why() -> None:
    result = ov.check(with_row(row("health.postgres", "main", "critical", age_s=3600)), CONFIG, NOW)
    pg = next(s for s in result.metrics["services"] if s["task"] == "health.postgres")
    assert pg["status"] == "unknown" and pg["stale"] is True and pg["check_status"] == "critical"
    assert pg["summary"].startswith("stale: last result 60 min old (limit 15 min)")
    assert result.metrics["overall_status"] == "degraded"  # stale counts as a warning, not as the old critical
    assert "PostgreSQL (main): stale" in result.summary


def test_summary_names_the_worst_first() -> None:
    rows = with_row(row("health.redis", "cache", "warning"))
    rows = [r for r in rows if r["task"] != "health.postgres"] + [row("health.postgres", "main", "critical")]
    summary = ov.check(rows, CONFIG, NOW).summary
    assert summary.index("PostgreSQL (main)") < summary.index("Redis (cache)")
    assert "1 healthy" not in summary and "2 healthy, 1 degraded, 1 unhealthy" in summary


def test_over_real_history(config) -> None:  # type: ignore[no-untyped-def]
    """Runs written to maintd_runs are read back by latest_per_target and folded."""
    config.write("""
        [[postgres]]
        name = "ovmain"
        dsn = "postgresql://u@127.0.0.1:1/x"
        [[redis]]
        name = "ovcache"
        url = "redis://127.0.0.1:1/0"
    """)
    from workers.config import get_config
    from workers.records import records

    store = records()
    now = datetime.now(UTC)
    for task, target, status, age in (("health.postgres", "ovmain", "critical", 3600),
                                      ("health.postgres", "ovmain", "ok", 30),
                                      ("health.redis", "ovcache", "ok", 40),
                                      ("health.redis", "ovcache", "skipped", 5)):  # skipped runs are not results
        at = now - timedelta(seconds=age)
        run_id = store.runs.start(task_id=f"ov-{task}-{age}-{now.timestamp()}", task=task, target=target,
                                 impact="none", host="testhost", worker="test", attempt=1, dry_run=False,
                                 started_at=at)
        store.runs.finish(run_id, status=status, summary=f"{status} now", metrics={}, actions=[], error=None,
                         finished_at=at, duration_s=0.1)
    rows = store.runs.latest(list(ov.CHECKS))
    result = ov.check(rows, get_config(), datetime.now(UTC))
    services = {s["service_name"]: s for s in result.metrics["services"]}
    assert services["PostgreSQL (ovmain)"]["status"] == "healthy"
    assert services["Redis (ovcache)"]["check_status"] == "ok"
    assert result.metrics["overall_status"] == "healthy" and result.status == "ok"
