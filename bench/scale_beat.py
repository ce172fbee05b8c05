"""Beat at fleet size: `maintd beat` and stock Celery beat (bench/stock_beat.py, same entries),
run side by side over the same wall-clock window around a 5-minute boundary (where the health
checks of every target fall due at once). Peak RSS over the whole run; CPU per tick over the
window (ticks counted from beat's own debug lines: each due entry sent is one tick of Celery's
Scheduler.tick, each idle tick logs "Waking up"); startup CPU separately."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BeatRun:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    peak_rss: int = 0
    cpu_start: float = 0.0  # CPU seconds when the window opened (startup and first sync)
    cpu_window: float = 0.0
    ticks: int = 0
    sent: int = 0

    def cpu(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def sample(self) -> None:
        try:
            self.peak_rss = max(self.peak_rss, psutil.Process(self.proc.pid).memory_info().rss)
        except psutil.NoSuchProcess:
            pass


def _start(name: str, argv: list[str], env: dict[str, str], log: Path) -> BeatRun:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return BeatRun(name, proc, log)


def next_boundary(now: datetime, minutes: int = 5) -> datetime:
    base = now.replace(second=0, microsecond=0)
    return base + timedelta(minutes=minutes - base.minute % minutes)


def run_beats(config_path: Path, maintd_argv: list[str], entries_json: Path, stock_broker: str, work: Path,
              after_s: float = 55, lead_s: float = 40) -> list[BeatRun]:
    """Start both beats ``lead_s`` before the next 5-minute boundary (waiting for it if needed);
    the CPU window runs from 5 s before the boundary to ``after_s`` after it. ``maintd_argv`` is
    the beat command `maintd beat` itself runs (whatever scheduler that is)."""
    boundary = next_boundary(datetime.now(UTC) + timedelta(seconds=lead_s))
    wait = (boundary - timedelta(seconds=lead_s) - datetime.now(UTC)).total_seconds()
    if wait > 0:
        print(f"  (waiting {wait:.0f}s to start the beats {lead_s:.0f}s before the {boundary:%H:%M} boundary)",
              flush=True)
        time.sleep(wait)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("MAINTD_", "STOCK_"))}
    maintd_env = {**base_env, "MAINTD_CONFIG": str(config_path)}
    stock_env = {**base_env, "STOCK_BROKER_URL": stock_broker, "STOCK_ENTRIES": str(entries_json)}
    common = ["beat", "--loglevel", "DEBUG", "--pidfile="]
    runs = [
        _start("maintd beat", [*maintd_argv, "--loglevel", "DEBUG", "--pidfile="], maintd_env, work / "maintd-beat.log"),
        _start("stock beat", [sys.executable, "-m", "celery", "-A", "bench.stock_beat", *common,
                              "--schedule", str(work / "stock-beat-schedule")], stock_env, work / "stock-beat.log"),
    ]
    try:
        opened = boundary - timedelta(seconds=5)
        closes = boundary + timedelta(seconds=after_s)
        offsets = {}
        while datetime.now(UTC) < opened:
            for r in runs:
                r.sample()
            time.sleep(0.2)
        for r in runs:
            if r.proc.poll() is not None:
                raise RuntimeError(f"{r.name} exited early: {r.log.read_text()[-2000:]}")
            r.cpu_start = r.cpu()
            offsets[r.name] = r.log.stat().st_size
        while datetime.now(UTC) < closes:
            for r in runs:
                r.sample()
            time.sleep(0.2)
        for r in runs:
            r.cpu_window = r.cpu() - r.cpu_start
            text = r.log.read_bytes()[offsets[r.name]:].decode(errors="replace")
            r.sent = text.count("Scheduler: Sending due task")
            # Celery's Scheduler.tick sends one due entry per tick; an idle tick logs "Waking up".
            r.ticks = text.count("beat: Waking up") + r.sent
    finally:
        for r in runs:
            r.proc.terminate()
        for r in runs:
            try:
                r.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
    return runs
