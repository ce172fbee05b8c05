"""The fleet bench/scale.py measures: a generated config of 1,000 targets on 50 hosts
(500 PostgreSQL, 200 Redis, 200 HTTP, 100 SQLite), and one hour's peak of beat firings."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from croniter import croniter

HOSTS = [f"h{i:02d}" for i in range(1, 51)]
COUNTS = {"postgres": 500, "redis": 200, "http": 200, "sqlite": 100}


def fleet_toml(broker_url: str, results_url: str, data_dir: Path) -> str:
    """The config text: PostgreSQL and Redis on the db hosts' addresses, HTTP endpoints of the app
    hosts, SQLite files pinned to their host (two per host: their queues are per host)."""
    lines = ['[maintd]', 'host = "bench"', f'data_dir = "{data_dir}"', "",
             '[broker]', f'url = "{broker_url}"', "", '[results]', f'url = "{results_url}"', ""]
    for i in range(COUNTS["postgres"]):
        host = HOSTS[i % len(HOSTS)]
        lines += ["[[postgres]]", f'name = "pg{i:03d}"', f'dsn = "postgresql://maintd@{host}.db.invalid:5432/app{i:03d}"',
                  'window = ["Sun 01:00-05:00", "Mon-Sat 02:00-05:00"]', ""]
    for i in range(COUNTS["redis"]):
        host = HOSTS[i % len(HOSTS)]
        lines += ["[[redis]]", f'name = "redis{i:03d}"', f'url = "redis://{host}.db.invalid:{6379 + i // 50}/0"', ""]
    for i in range(COUNTS["http"]):
        host = HOSTS[i % len(HOSTS)]
        lines += ["[[http]]", f'name = "web{i:03d}"', f'url = "https://{host}.app.invalid/svc{i:03d}/health"', ""]
    for i in range(COUNTS["sqlite"]):
        host = HOSTS[i % len(HOSTS)]
        lines += ["[[sqlite]]", f'name = "lite{i:03d}"', f'host = "{host}"', f'path = "/srv/app{i:03d}/app.db"', ""]
    return "\n".join(lines)


def peak_hour(crons: list[str], start: datetime | None = None, days: int = 7) -> tuple[datetime, int]:
    """The hour of the coming week in which the most firings of ``crons`` fall, and how many."""
    start = (start or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(days=days)
    per_hour: Counter[datetime] = Counter()
    for cron, n in Counter(crons).items():
        it = croniter(cron, start - timedelta(seconds=1))
        while (t := it.get_next(datetime)) < end:
            per_hour[t.replace(minute=0, second=0, microsecond=0)] += n
    hour, count = per_hour.most_common(1)[0]
    return hour, count


def firings_in(crons: dict[str, str], hour: datetime) -> list[tuple[str, datetime]]:
    """(entry name, time) of every firing in ``hour``, in time order."""
    out = []
    for name, cron in crons.items():
        it = croniter(cron, hour - timedelta(seconds=1))
        while (t := it.get_next(datetime)) < hour + timedelta(hours=1):
            out.append((name, t))
    return sorted(out, key=lambda p: (p[1], p[0]))
