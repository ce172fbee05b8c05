"""Flower tells maintd's verdicts apart, as an operator sees them: in headless Chromium and
through Flower's HTTP API, on a real worker, broker, result backend and Flower process.

Runs produced: ok (``maintd.noop main``), warning (``health.postgres main`` with a
connections threshold any live server exceeds), critical (``health.postgres down``, a
database nobody listens for), failed (``maintd.noop down``: its lock cannot be taken)
and deferred (``maintd.hold nightly`` outside its window).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, ConfigFactory, maintd_cmd, wait_until
from tests.flower_support import chromium, running_flower, skip_without_browser
from workers.doors.commands import free_port

EXPECTED_STATE = {"ok": "SUCCESS", "warning": "WARNING", "critical": "CRITICAL", "failed": "FAILURE",
                  "deferred": "DEFERRED"}


@dataclass
class Runs:
    flower: str
    auth: tuple[str, str]
    ids: dict[str, str]  # verdict -> task id
    outcomes: dict[str, Any]  # verdict -> Outcome dict (or the exception of the failed run)
    secrets: tuple[str, ...]

    def api(self, path: str, **params: Any) -> Any:
        r = requests.get(f"{self.flower}{path}", params=params, auth=self.auth, timeout=15)
        assert r.status_code == 200, (r.status_code, r.text[:500])
        return r.json()


def _away_window() -> str:
    """A one-hour window three days from now: never open while the test runs."""
    day = (datetime.now(timezone.utc) + timedelta(days=3)).strftime("%a")
    return f"{day} 03:00-04:00"


@pytest.fixture
def runs(config: ConfigFactory, target_db: str, tmp_path: Path, start_worker) -> Iterator[Runs]:
    from celery.result import AsyncResult

    from workers.dispatch import dispatch
    from workers.errors import MaintdError

    flower_password = "fl-" + secrets.token_urlsafe(12)
    target_password = "pg-" + secrets.token_urlsafe(12)
    secret = tmp_path / "flower.password"
    secret.write_text(flower_password + "\n")
    secret.chmod(0o600)
    down = f"postgresql://maintd@127.0.0.1:{free_port()}/nothing"
    config.write(f"""\
        [flower]
        user = "ops"
        password_file = "{secret}"

        [thresholds]
        pg_connections_percent = [0.001, 100]
        pg_cache_hit_ratio = [0.0001, 0.0]
        pg_long_transaction_s = [604800, 2592000]
        pg_connect_ms = [20000, 40000]

        [[postgres]]
        name = "main"
        dsn = "{target_db}"
        password = "{target_password}"

        [[postgres]]
        name = "down"
        dsn = "{down}"
        password = "{target_password}"

        [[postgres]]
        name = "nightly"
        dsn = "{target_db}"
        window = "{_away_window()}"
        """)
    auth = ("ops", flower_password)
    start_worker(role="db", host="testhost")
    with running_flower(tmp_path / "flower.log") as base:
        def worker_seen() -> bool:
            r = requests.get(f"{base}/api/workers", params={"status": "true"}, auth=auth, timeout=5)
            return r.status_code == 200 and sum(bool(v) for v in r.json().values()) >= 2

        wait_until(worker_seen, 40, "Flower to see both lanes")
        sent = {
            "ok": dispatch("maintd.noop", "main", {}),
            "warning": dispatch("health.postgres", "main", {}),
            "critical": dispatch("health.postgres", "down", {}),
            "failed": dispatch("maintd.noop", "down", {}),
            "deferred": dispatch("maintd.hold", "nightly", {"seconds": 1}),
        }
        outcomes: dict[str, Any] = {}
        for verdict, result in sent.items():
            if verdict == "failed":
                with pytest.raises(MaintdError) as err:
                    result.get(timeout=60)
                outcomes[verdict] = err.value
            else:
                # A critical check is a finding, not a crash: .get() returns the Outcome.
                outcomes[verdict] = result.get(timeout=60)
                assert outcomes[verdict]["status"] == verdict, outcomes[verdict]
                assert AsyncResult(result.id).state == "SUCCESS"
        assert AsyncResult(sent["failed"].id).state == "FAILURE"
        try:
            yield Runs(base, auth, {v: r.id for v, r in sent.items()}, outcomes,
                       (flower_password, target_password))
        finally:
            # The deferred run waits in maintd_deferred: other tests share this results database.
            from workers.records import records

            records().execute(lambda cur: cur.execute(
                "DELETE FROM maintd_deferred WHERE task = 'maintd.hold' AND target = 'nightly'"))


def _settled(runs: Runs) -> dict[str, Any]:
    """Flower's /api/tasks once every run shows its final state and runtime."""
    def done() -> dict[str, Any] | None:
        tasks = runs.api("/api/tasks")
        mine = {v: tasks.get(i) for v, i in runs.ids.items()}
        # Celery's task-failed event carries no runtime; every other final event does.
        ready = all(t and t["state"] == EXPECTED_STATE[v] and (v == "failed" or t.get("runtime") is not None)
                    for v, t in mine.items())
        return mine if ready else None

    try:
        found = wait_until(done, 30, "Flower's task list to show every verdict")
    except AssertionError:
        tasks = runs.api("/api/tasks")
        shown = {v: {k: (tasks.get(i) or {}).get(k) for k in ("state", "runtime", "args", "worker")}
                 for v, i in runs.ids.items()}
        raise AssertionError(f"Flower shows {shown}") from None
    assert isinstance(found, dict)
    return found


def test_flower_api_tells_verdicts_apart(runs: Runs) -> None:
    tasks = _settled(runs)
    for verdict, task in tasks.items():
        assert task["state"] == EXPECTED_STATE[verdict]
        assert task["worker"] in ("db-fast@testhost", "db-slow@testhost"), task["worker"]
    assert len({t["state"] for t in tasks.values()}) == len(tasks)

    # The target by name, not a tuple repr.
    assert tasks["ok"]["args"] == "main" and tasks["critical"]["args"] == "down"
    assert tasks["deferred"]["args"] == "nightly"

    # The result Flower shows: the summary's first line, then the Outcome pretty-printed.
    for verdict in ("ok", "warning", "critical", "deferred"):
        outcome = runs.outcomes[verdict]
        first, blank, *rest = tasks[verdict]["result"].splitlines()
        assert first == outcome["summary"].splitlines()[0] and blank == ""
        assert f'  "status": "{verdict}",' in rest and f'  "target": "{outcome["target"]}",' in rest
    # A failed run stays Celery's failure: its exception, no Outcome.
    assert "Connection refused" in tasks["failed"]["exception"]
    assert tasks["failed"]["result"] is None

    # Flower's state filter and search box find the critical and the failed runs.
    assert set(runs.api("/api/tasks", state="CRITICAL")) == {runs.ids["critical"]}
    assert set(runs.api("/api/tasks", state="FAILURE")) == {runs.ids["failed"]}
    assert set(runs.api("/api/tasks", search="state:CRITICAL OR state:FAILURE")) == {
        runs.ids["critical"], runs.ids["failed"]}
    assert set(runs.api("/api/tasks", search="args:down")) == {runs.ids["critical"], runs.ids["failed"]}

    # The lanes by maintd's names, each with the queues it consumes.
    workers = runs.api("/api/workers", refresh="true")
    queues = {name: sorted(q["name"] for q in info.get("active_queues", [])) for name, info in workers.items()}
    assert queues["db-fast@testhost"] == ["db.low", "db.low.testhost", "db.none", "db.none.testhost"]
    assert queues["db-slow@testhost"] == ["db.high", "db.high.testhost", "db.medium", "db.medium.testhost"]

    # One task's detail through the API, and nothing secret anywhere.
    info = runs.api(f"/api/task/info/{runs.ids['critical']}")
    assert info["state"] == "CRITICAL" and info["args"] == "down"
    everything = requests.get(f"{runs.flower}/api/tasks", auth=runs.auth, timeout=10).text
    for secret in runs.secrets:
        assert secret not in everything


def test_cli_exit_codes_unchanged(runs: Runs) -> None:
    """`maintd run --wait` still exits by the Outcome: 2 critical, 0 warning, 3 failed."""
    for args, code in ((("health.postgres", "down"), 2), (("health.postgres", "main"), 0),
                       (("maintd.noop", "down"), 3)):
        out = subprocess.run(maintd_cmd("run", *args, "--wait", "--timeout", "60"), capture_output=True,
                             text=True, timeout=120, cwd=ROOT, env={**os.environ})
        assert out.returncode == code, (args, out.returncode, out.stdout[-500:], out.stderr[-500:])


_READ_TABLE = """
const heads = Array.from(document.querySelectorAll('.dataTables_scrollHead thead th'))
  .map(th => th.getAttribute('data-column'));
const out = {};
for (const tr of document.querySelectorAll('#tasks-table tbody tr[id]')) {
  const row = {};
  Array.from(tr.querySelectorAll('td')).forEach((td, i) => { if (i < heads.length) row[heads[i]] = td.innerText.trim(); });
  const badge = tr.querySelector('span.badge');
  row.badge_class = badge ? badge.getAttribute('class') : '';
  out[tr.id] = row;
}
return out;
"""


def _rows(driver: Any) -> dict[str, dict[str, str]]:
    """The task table as shown: row id (task id) -> column slug -> visible text. Read in one
    script call: Flower redraws the table as events arrive, so element handles go stale."""
    rows = driver.execute_script(_READ_TABLE)
    return {str(k): {str(c): str(v) for c, v in row.items()} for k, row in (rows or {}).items()}


def _wait_rows(driver: Any, want: set[str], exact: bool, what: str) -> dict[str, dict[str, str]]:
    def ok() -> dict[str, dict[str, str]] | None:
        rows = _rows(driver)
        seen = set(rows)
        return rows if (seen == want if exact else want <= seen) else None

    rows = wait_until(ok, 30, what, interval_s=0.5)
    assert isinstance(rows, dict)
    return rows


def _shot(driver: Any, path: Path) -> None:
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, f"empty screenshot {path}"
    extra = os.environ.get("MAINTD_SCREENSHOTS")  # to refresh docs/img: MAINTD_SCREENSHOTS=docs/img
    if extra:
        shutil.copy(path, Path(extra) / path.name)


def test_flower_in_chromium_shows_verdicts(runs: Runs, tmp_path: Path) -> None:
    skip_without_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _settled(runs)
    by_verdict = {v: i for v, i in runs.ids.items()}
    with chromium(tmp_path, runs.auth) as driver:
        driver.get(f"{runs.flower}/tasks")
        rows = _wait_rows(driver, set(by_verdict.values()), exact=False, what="the runs in Flower's task list")
        _shot(driver, tmp_path / "flower-tasks.png")
        badges = {v: rows[i]["state"] for v, i in by_verdict.items()}
        assert badges == EXPECTED_STATE, badges  # five verdicts, five different badges
        assert "text-bg-success" in rows[by_verdict["ok"]]["badge_class"]
        assert "text-bg-danger" in rows[by_verdict["failed"]]["badge_class"]
        assert rows[by_verdict["critical"]]["args"] == "down"  # the target's name
        # Flower splits a long worker name in two spans (the host's end stays visible).
        assert rows[by_verdict["critical"]]["worker"].replace("\n", "") == "db-fast@testhost"
        for verdict in ("ok", "warning", "critical", "deferred"):  # the list shows the headline only
            assert rows[by_verdict[verdict]]["result"] == runs.outcomes[verdict]["summary"].splitlines()[0]
        # A failed run: Celery's exception, shown where the summary is read too.
        assert "Connection refused" in rows[by_verdict["failed"]]["exception"]
        assert rows[by_verdict["failed"]]["result"] == rows[by_verdict["failed"]]["exception"]

        # The search box: state:CRITICAL finds the critical run and nothing else.
        box = driver.find_element(By.CSS_SELECTOR, "#tasks-table_filter input")
        box.clear()
        box.send_keys("state:CRITICAL", Keys.ENTER)
        _wait_rows(driver, {by_verdict["critical"]}, exact=True, what="state:CRITICAL to filter the list")
        _shot(driver, tmp_path / "flower-tasks-critical.png")

        # The Failed button: the failed run.
        driver.find_element(By.CSS_SELECTOR, "button.task-state-filter[data-task-state='FAILURE']").click()
        _wait_rows(driver, {by_verdict["failed"]}, exact=True, what="the Failed button to filter the list")

        # The critical run's page: the target, the verdict and the whole Outcome, readable.
        driver.get(f"{runs.flower}/task/{by_verdict['critical']}")
        page = driver.find_element(By.ID, "task-page")
        codes = [c.text for c in page.find_elements(By.CSS_SELECTOR, "pre.detail-code code")]
        assert codes[0] == "down", codes  # Arguments: the target's name
        assert page.find_element(By.CSS_SELECTOR, "span.badge").text == "CRITICAL"
        shown = codes[2].splitlines()  # Result
        outcome = runs.outcomes["critical"]
        assert shown[0] == outcome["summary"].splitlines()[0]
        assert '  "status": "critical",' in shown and '  "metrics": {' in shown
        assert any(line.startswith('    "reachable": false') for line in shown), shown
        for secret in runs.secrets:
            assert secret not in driver.page_source
        _shot(driver, tmp_path / "flower-task-critical.png")

        # The lanes by maintd's names, each with the queues it consumes.
        driver.get(f"{runs.flower}/worker/db-fast@testhost")
        driver.find_element(By.ID, "worker-tab-queues").click()

        def queues() -> list[str] | None:
            names = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#worker-queues tr td:first-child")]
            return names if names and all(names) else None  # the tab fades in

        names = wait_until(queues, 20, "the lane's queues on Flower's worker page")
        assert sorted(names) == ["db.low", "db.low.testhost", "db.none", "db.none.testhost"], names  # type: ignore[arg-type]
        _shot(driver, tmp_path / "flower-worker-queues.png")
