"""Progress you can watch (issue 11 item 3): ``RunContext.progress`` is throttled to once a
second and computes ETA and percentage (pure, below); a real worker publishes it as the task
state ``PROGRESS`` (result backend, Flower's event); ``maintd run --wait`` draws a bar under
a pty and writes plain lines to a pipe — and the final Outcome is unchanged."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import threading
import time
from typing import Any

import pytest

from tests.conftest import ROOT, ConfigFactory, maintd_cmd, wait_until
from workers.cli.progress import ProgressDisplay, bar
from workers.records.progress import ProgressMeter, line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_published_at_most_once_a_second_with_eta_and_percent() -> None:
    clock, sent = Clock(), list[dict[str, Any]]()
    meter = ProgressMeter(sent.append, clock=clock)
    assert meter.report("delete", done=0, total=1000) is not None  # the first report goes out at once
    for i in range(1, 8):  # seven more within 0.875 s: none published
        clock.now += 0.125
        assert meter.report("delete", done=i * 10, total=1000) is None
    assert meter.last is not None and meter.last["done"] == 70  # the latest is kept all the same
    clock.now += 0.125  # 1.0 s after the first
    meta = meter.report("delete", done=100, total=1000)
    assert meta == {"step": "delete", "done": 100, "total": 1000, "unit": "rows", "eta_s": 9.0, "pct": 10.0}
    assert len(sent) == 2 and sent[1] == meta
    clock.now += 5
    assert meter.report("delete", done=1000, total=1000)["eta_s"] == 0.0  # type: ignore[index]


def test_eta_follows_the_measure_not_the_step_text_and_restarts_with_a_new_one() -> None:
    clock = Clock()
    meter = ProgressMeter(None, clock=clock)
    meter.report("reindex a", done=0, total=400, unit="bytes")
    clock.now += 10
    meter.report("reindex b", done=100, total=400, unit="bytes")  # a new object, same measure
    assert meter.last is not None and meter.last["eta_s"] == 30.0 and meter.last["pct"] == 25.0
    meter.report("read backup", done=0, total=50, unit="bytes")  # a new measure: no rate yet
    assert meter.last["eta_s"] is None and meter.last["pct"] == 0.0
    meter.report("back up dump", done=5_000, unit="bytes")  # total unknown: no ETA, no percentage
    assert meter.last["eta_s"] is None and meter.last["pct"] is None


def test_bad_progress_is_refused_and_a_failing_publisher_never_fails_the_run() -> None:
    meter = ProgressMeter(None)
    with pytest.raises(ValueError, match="progress unit 'furlongs'"):
        meter.report("x", 1, 2, unit="furlongs")
    with pytest.raises(ValueError, match="must not be negative"):
        meter.report("x", -1, 2)

    def broken(meta: dict[str, Any]) -> None:
        raise ConnectionError("result backend down")

    assert ProgressMeter(broken).report("x", 1, 2) is None


def test_bar_and_lines() -> None:
    meta = {"step": "vacuum full public.orders", "done": 3 * 1024 ** 3, "total": 4 * 1024 ** 3, "unit": "bytes",
            "eta_s": 130.0, "pct": 75.0}
    text = bar(meta, 120)
    assert text.startswith("vacuum full public.orders: [" + "#" * 18 + "." * 6 + "]  75.0 %")
    assert "3.0 GB of 4.0 GB" in text and text.endswith("ETA 2m10s")
    assert len(bar(meta, 40)) <= 39  # never wider than the terminal
    assert line(meta) == "vacuum full public.orders: 3.0 GB of 4.0 GB (75.0 %), ETA 2m10s"
    pipe = io.StringIO()
    display = ProgressDisplay(pipe, tty=False)
    display(meta)
    display(meta)  # the same figures are not repeated
    display({**meta, "done": 4 * 1024 ** 3, "pct": 100.0, "eta_s": 0.0})
    display.close()
    assert pipe.getvalue().splitlines() == ["progress: " + line(meta),
                                            "progress: vacuum full public.orders: 4.0 GB of 4.0 GB (100.0 %), ETA 0m00s"]


# --- a real worker ---------------------------------------------------------------------------

HOLD_S = 5


def _hold_config(config: ConfigFactory, target_db: str) -> None:
    config.write(f'[[postgres]]\nname = "main"\ndsn = "{target_db}"\n')


def _read_pty(fd: int, proc: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    out = b""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


@pytest.mark.slow
def test_progress_state_bar_and_lines_from_a_real_worker(config: ConfigFactory, target_db: str,
                                                         start_worker: Any) -> None:
    _hold_config(config, target_db)
    start_worker(role="db")

    # 1. The result backend (AsyncResult) sees PROGRESS with the meta; Flower's events carry it.
    from celery.events.state import State

    from workers.app import app
    from workers.dispatch import dispatch

    flower = State()  # what Flower builds its task list from
    events: list[dict[str, Any]] = []
    flower_states: list[str] = []

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        flower.event(event)
        if event.get("uuid") in flower.tasks:
            flower_states.append(flower.tasks[event["uuid"]].state)

    receivers: list[Any] = []

    def listen() -> None:
        with app.connection_for_read() as conn:
            recv = app.events.Receiver(conn, handlers={"*": on_event})
            receivers.append(recv)
            try:
                recv.capture(limit=None, timeout=HOLD_S + 30, wakeup=True)
            except (TimeoutError, OSError):
                pass

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1.0)  # the receiver's queue is bound before the run starts
    result = dispatch("maintd.hold", "main", {"seconds": HOLD_S})
    seen: list[dict[str, Any]] = []
    end = time.monotonic() + 60
    while time.monotonic() < end and not result.ready():
        if result.state == "PROGRESS":
            seen.append(dict(result.info))
        time.sleep(0.2)
    outcome = result.get(timeout=60)
    assert seen, "no PROGRESS state seen during the run"
    assert set(seen[-1]) == {"step", "done", "total", "unit", "eta_s", "pct"}
    assert seen[-1]["step"] == "hold main" and seen[-1]["unit"] == "seconds" and seen[-1]["total"] == HOLD_S
    assert len({m["done"] for m in seen}) >= 2  # it moved while we watched
    # the final Outcome is the same as before progress existed: SUCCESS, the Outcome dict
    assert result.state == "SUCCESS"
    assert outcome["status"] == "ok" and outcome["summary"] == f"held main for {HOLD_S:.1f}s"
    assert outcome["metrics"] == {"seconds": HOLD_S} and "step" not in outcome
    wait_until(lambda: any(e["type"] == "task-succeeded" and e["uuid"] == result.id for e in events), 30,
               "the run's terminal event")
    progress = [e for e in events if e["type"] == "task-progress" and e["uuid"] == result.id]
    assert progress and progress[-1]["progress"]["step"] == "hold main"
    assert progress[-1]["result"].startswith("hold main: ") and f" of {HOLD_S} seconds" in progress[-1]["result"]
    for recv in receivers:
        recv.should_stop = True
    listener.join(timeout=10)
    assert "PROGRESS" in flower_states  # Flower's state while it ran
    assert flower.tasks[result.id].state == "SUCCESS"  # the verdict (ok) follows the PROGRESS state

    # 2. `maintd run --wait` on a terminal: a bar redrawn in place, then the Outcome.
    master, slave = pty.openpty()
    proc = subprocess.Popen(maintd_cmd("run", "maintd.hold", "main", "--arg", f"seconds={HOLD_S}", "--wait"),
                            stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env={**os.environ, "COLUMNS": "100"})
    os.close(slave)
    try:
        screen = _read_pty(master, proc, 90).decode(errors="replace")
        assert proc.wait(timeout=30) == 0, screen
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    frames = [f for f in screen.split("\r") if "hold main: [" in f]
    assert len(frames) >= 2, screen  # redrawn in place (carriage returns), not new lines
    assert any("#" in f and " %" in f and "seconds" in f for f in frames), screen
    assert "ETA" in screen
    body = screen[screen.index("{"):]
    assert json.loads(body.replace("\r\n", "\n"))["status"] == "ok"

    # 3. Not a terminal: plain progress lines on stderr, stdout only the Outcome JSON.
    piped = subprocess.run(maintd_cmd("run", "maintd.hold", "main", "--arg", f"seconds={HOLD_S}", "--wait"),
                           capture_output=True, text=True, cwd=ROOT, timeout=90)
    assert piped.returncode == 0, piped.stderr
    lines = [ln for ln in piped.stderr.splitlines() if ln.startswith("progress: hold main: ")]
    assert len(lines) >= 2 and "\r" not in piped.stderr, piped.stderr
    assert all(f" of {HOLD_S} seconds" in ln for ln in lines), lines
    assert json.loads(piped.stdout)["status"] == "ok"
