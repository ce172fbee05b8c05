"""Flower for the tests: ``maintd flower`` as a real process, and headless Chromium.

Chromium is the Debian package (``apt-get install chromium chromium-driver``, or
``make browser``): Selenium drives it through the system chromedriver, so nothing is
downloaded. Where either binary is missing, browser tests skip and say how to install.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, maintd_cmd, wait_until
from workers.doors.commands import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
INSTALL_HINT = "apt-get install chromium chromium-driver (or `make browser`)"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"Chromium not installed ({path} missing): {INSTALL_HINT}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed: make install"
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def running_flower(log: Path) -> Iterator[str]:
    """``maintd flower`` on a free loopback port, with the current config; its base URL."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(maintd_cmd("flower", "--port", str(port)), stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True, env={**os.environ})
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"maintd flower exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            return requests.get(f"{base}/healthcheck", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(answers, 40, "Flower to answer")
        yield base
    finally:
        stop(proc)


@contextmanager
def chromium(tmp: Path, auth: tuple[str, str]) -> Iterator[Any]:
    """Headless Chromium (system binaries, fresh profile) sending Flower's basic auth."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1680,1000", f"--user-data-dir={tmp / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER, log_output=str(tmp / "chromedriver.log")),
                              options=options)
    try:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def skip_without_browser() -> None:
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
