"""reports.weekly and reports.capacity (issue 10, items 3 and 4), on generated history
inserted into a real results database: the page a person opens (headless Chromium: its text,
and every chart decodes and is not blank), delivery by email (HTML inline and attached) and
webhook (text and path), the on-demand CLI, and the capacity forecast's accuracy on series
whose answer is known."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.core.reports import synthetic, trend
from tests.conftest import ConfigFactory, PgServer, maintd_cmd
from tests.flower_support import CHROMEDRIVER, CHROMIUM, skip_without_browser
from tests.report_history import CONFIG, generate
from tests.test_alerts_support import (
    SMTP_PASSWORD,
    SMTP_USER,
    CaptureServer,
    Pki,
    SmtpCapture,
    toml_str,
)
from tests.test_prune_history import fresh_results

pytest_plugins = ["tests.test_alerts_support"]
UNTIL = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # a Monday morning


@pytest.mark.parametrize("case", list(synthetic.CASES))
def test_projected_day_within_ten_percent_of_truth(case: str) -> None:
    for seed in range(10):
        days, values, truth = synthetic.CASES[case](seed=seed)
        fit = trend.fit(days, values)
        assert fit is not None
        got = fit.days_until(100.0)
        if truth is None:
            assert got is None, (case, seed, got)  # flat and shrinking never reach the limit
        else:
            assert got is not None and abs(got - truth) <= 0.1 * truth, (case, seed, got, truth)
    if case == "step":
        assert fit.shift_at is not None and 59 <= fit.shift_at <= 62  # the bulk import of day 60


def test_band_widens_with_noise_and_horizon() -> None:
    clean = trend.fit(*synthetic.linear()[:2])
    noisy = trend.fit(*synthetic.noisy()[:2])
    assert clean is not None and noisy is not None
    lo30, hi30 = noisy.band(noisy.last_x + 30)
    lo180, hi180 = noisy.band(noisy.last_x + 180)
    assert lo30 < noisy.at(noisy.last_x + 30) < hi30 and (hi180 - lo180) > (hi30 - lo30)
    assert clean.band(clean.last_x + 30)[1] - clean.band(clean.last_x + 30)[0] < 1e-6
    assert trend.fit([0, 1, 2], [1, 2, 3]) is None  # too few points


def _config(config: ConfigFactory, pg_server: PgServer, tmp_path: Path, channels: str = "") -> Any:
    book = fresh_results(config, pg_server, CONFIG + f'\n[reports]\ndir = "{tmp_path / "reports"}"\n' + channels)
    generate(book, UNTIL)
    return book


def _png_nonblank(src: str) -> tuple[int, int]:
    from PIL import Image

    assert src.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L")
    lo, hi = img.getextrema()
    assert hi - lo > 64, "blank chart"
    return img.size


def test_weekly_report_in_chromium_and_delivered(config: ConfigFactory, pg_server: PgServer, tmp_path: Path,
                                                 smtp_server: SmtpCapture, pki: Pki,
                                                 http_capture: CaptureServer) -> None:
    skip_without_browser()
    channels = f"""
[[alerts]]
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp_server.port}
username = "{SMTP_USER}"
password = "{SMTP_PASSWORD}"
from_addr = "maintd@example.test"
to = ["ops@example.test"]
ca = {toml_str(pki.ca_pem)}
[[alerts]]
kind = "webhook"
url = "{http_capture.url('/hook/secret-token')}"
min_severity = "critical"
"""
    book = _config(config, pg_server, tmp_path, channels)
    from tasks.core.reports.publish import weekly_run
    from workers.config import get_config

    result = weekly_run(get_config(), book, UNTIL, "testhost")
    assert result.status == "warning", result.summary  # the disk reaches 90% in ~8 days; nothing open critical
    page = Path(result.metrics["report"])
    assert page.parent == tmp_path / "reports" and page.suffix == ".html" and page.with_suffix(".txt").exists()
    assert result.metrics["undelivered"] == []

    # email: the HTML inline (multipart/alternative) and attached
    [msg] = smtp_server.messages
    assert msg["Subject"].startswith("[maintd] REPORT: reports.weekly")
    kinds = [(p.get_content_type(), p.get_filename()) for p in msg.walk()]
    assert ("text/plain", None) in kinds and ("text/html", None) in kinds and ("text/html", page.name) in kinds
    attached = next(p for p in msg.walk() if p.get_filename() == page.name).get_payload(decode=True)
    assert attached.decode() == page.read_text()
    # webhook (min_severity critical, still sent: a report is asked for): the text and the path
    [hook] = http_capture.at("/hook/secret-token")
    body = hook.json()
    assert body["kind"] == "report" and str(page.resolve()) in body["summary"] and "html" not in body
    assert "Availability: lowest" in body["summary"] and "Capacity: disk used / (app1)" in body["summary"]

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--window-size=1200,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(page.resolve().as_uri())
        text = driver.find_element(By.TAG_NAME, "body").text
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
        images = driver.find_elements(By.TAG_NAME, "img")
        decoded = [driver.execute_script("return [arguments[0].complete, arguments[0].naturalWidth,"
                                         " arguments[0].naturalHeight, arguments[0].src]", img) for img in images]
        # the page requested nothing from outside (self-contained)
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    finally:
        driver.quit()
    for heading in ("Availability", "Health score", "Failures", "Maintenance done", "Slowest queries", "Top growth",
                    "Open warnings", "Capacity"):
        assert heading in text
    assert "health.http [api]" in text or "health.http\napi" in text or "health.http api" in text
    assert "pg_dump: error: connection to server failed" in text  # the failure and what it was
    assert "SELECT * FROM positions WHERE portfolio_id = $1" in text and "+25%" in text  # slower than last week
    assert "RTO 7 min" in text or "RTO 7m" in text or "RTO 420" in text or "RTO" in text
    assert "public.audit_logs" in text  # top growth
    assert len(images) >= 5  # availability, score, growth, and a capacity chart per series
    for complete, width, height, src in decoded:
        assert complete and width > 100 and height > 50
        assert _png_nonblank(src) == (width, height)
    assert resources == []
    assert _png_nonblank("data:image/png;base64," + base64.b64encode(shot.read_bytes()).decode())[0] > 0


def test_capacity_task_on_generated_history(config: ConfigFactory, pg_server: PgServer, tmp_path: Path) -> None:
    book = _config(config, pg_server, tmp_path)
    from tasks.core.reports.publish import capacity_run
    from workers.config import get_config

    result = capacity_run(get_config(), book, UNTIL, "testhost")
    series = {s["name"]: s for s in result.metrics["series"]}
    disk = series["disk used / (app1)"]
    # 0.75 %/day from 40 % over 60 days: at 84.25 % now, 90 % in 7.7 days -> warning (within 30, not 7)
    assert disk["status"] == "warning" and result.status == "warning"
    assert disk["days_until_limit"] == pytest.approx(5.75 / 0.75, rel=0.1)
    db = series["database size (main)"]
    assert db["status"] == "ok" and db["days_until_limit"] == pytest.approx(30 / 0.5, rel=0.1)
    assert db["projected"]["30d"] == pytest.approx(69.5e9 + 15e9, rel=0.02)
    assert series["disk used /data (app1)"]["days_until_limit"] is None  # flat
    assert "table public.audit_logs (main)" in series
    assert Path(result.metrics["report"]).read_text().count("data:image/png;base64,") >= 4
    # the outcome's series are themselves series points (days until the limit, over months)
    assert json.dumps(result.metrics)  # JSON-serialisable


def test_cli_report_weekly(config: ConfigFactory, pg_server: PgServer, tmp_path: Path) -> None:
    _config(config, pg_server, tmp_path)
    out = tmp_path / "out" / "week.html"
    done = subprocess.run(maintd_cmd("report", "weekly", "--since", "2026-11-16", "--until", "2026-11-23T07:00",
                                     "--out", str(out)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("maintd weekly report — 2026-11-23 (2026-11-16 – 2026-11-23)")
    assert f"Full report: {out.resolve()}" in done.stdout
    assert "Slowest queries" in out.read_text()
    bad = subprocess.run(maintd_cmd("report", "weekly", "--since", "last tuesday", "--out", str(out)),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and bad.stderr.strip() == (
        "maintd: error: --since 'last tuesday': not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)")


def test_host_check_measures_log_dirs_and_disk_bytes(tmp_path: Path) -> None:
    """The snapshots capacity reads: [[logs]] directory sizes and bytes used per mount."""
    from tasks.core.health import host
    from workers.config import HostTarget, Thresholds

    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    (logs / "app.log").write_bytes(b"x" * 1000)
    (logs / "old" / "app.log.1").write_bytes(b"y" * 500)
    (logs / "link").symlink_to("/etc/hostname")  # not followed
    result = host.check(HostTarget(name="h", mounts=["/"]), Thresholds(),
                        {"app": logs, "gone": tmp_path / "missing"})
    assert result.metrics["log_dirs"] == {"app": 1500}  # an unreadable directory is a gap, not a 0
    assert result.metrics["disk_used_bytes"]["/"] > 0
    from workers.records.metrics import flatten

    flat = flatten(result.metrics)
    assert flat["log_dirs.app"] == 1500.0 and "disks./" in flat
