"""The health tasks as Celery tasks: their declared policy, and one end-to-end run
through a real worker, the broker, the result backend and the run history."""

from __future__ import annotations

import pytest

from workers.catalog import load_catalog

TASKS = {
    "health.postgres": "postgres", "health.redis": "redis", "health.http": "http", "health.sqlite": "sqlite",
    "health.host": "hosts", "health.certificates": "certificates", "health.overview": None,
}


@pytest.mark.parametrize(("name", "kind"), sorted(TASKS.items()))
def test_declared_policy(name: str, kind: str | None) -> None:
    spec = load_catalog()[name]
    assert spec.impact == "none" and spec.target_kind == kind
    assert spec.max_retries == 0 and spec.soft_time_limit <= 60 < spec.time_limit <= 90
    assert not spec.locks and not spec.windowed and spec.summary


def test_health_checks_through_a_real_worker(config, target_db, redis_server, start_worker) -> None:  # type: ignore[no-untyped-def]
    config.write(f"""
        [[postgres]]
        name = "local"
        dsn = "{target_db}"

        [[redis]]
        name = "cache"
        url = "{redis_server.url}"
        broker = true

        [thresholds]
        # The machine's PostgreSQL serves parallel suites: their connections are not ours to grade.
        pg_connections_percent = [100, 100]
    """)
    start_worker(role="db")
    from tasks import health
    from workers.records import records

    outcome = health.postgres.delay("local").get(timeout=30)
    assert outcome["status"] == "ok", outcome["summary"]
    assert outcome["task"] == "health.postgres" and outcome["target"] == "local" and outcome["impact"] == "none"
    assert outcome["summary"].startswith("PostgreSQL ") and outcome["metrics"]["reachable"] is True
    assert "password" not in str(outcome["metrics"]).lower()

    redis_outcome = health.redis.delay("cache").get(timeout=30)
    assert redis_outcome["status"] == "ok", redis_outcome["summary"]

    runs = records().runs.find(task="health.postgres", target="local", task_id=outcome["task_id"])
    assert len(runs) == 1 and runs[0]["status"] == "ok" and runs[0]["summary"] == outcome["summary"]
    assert runs[0]["metrics"]["max_connections"] == outcome["metrics"]["max_connections"]

    overview = health.overview.delay().get(timeout=30)
    services = {s["service_name"]: s["status"] for s in overview["metrics"]["services"]}
    assert services == {"PostgreSQL (local)": "healthy", "Redis (cache)": "healthy"}
    assert overview["status"] == "ok" and overview["metrics"]["score"] == 100
