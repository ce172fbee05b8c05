"""Run a capture's probes in parallel, each bounded, all within one deadline.

A probe is a function returning a dict. One that raises becomes ``{"ok": false, "error"}``;
one still running at the deadline is abandoned (its thread is a daemon and every probe
has its own I/O timeouts, so it ends by itself) and recorded as timed out: a dead or
hung target gives a partial snapshot, never a hung capture.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tasks.core.findings import one_line
from workers.errors import first_line

Probe = Callable[[], dict[str, Any]]


def run_probes(probes: dict[str, Probe], deadline_s: float) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def work(name: str, probe: Probe) -> None:
        started = time.monotonic()
        try:
            data: dict[str, Any] = {"ok": True, **probe()}
        except Exception as exc:  # noqa: BLE001 - any failure of a probe is part of the snapshot
            data = {"ok": False, "error": one_line(first_line(exc)) or type(exc).__name__}
        data["elapsed_s"] = round(time.monotonic() - started, 3)
        with lock:
            results[name] = data

    threads = [threading.Thread(target=work, args=(name, probe), name=f"probe-{name}", daemon=True)
               for name, probe in probes.items()]
    end = time.monotonic() + deadline_s
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    with lock:
        out = dict(results)
    for name in probes:
        if name not in out:
            out[name] = {"ok": False, "error": f"no answer within {deadline_s:.0f}s: abandoned",
                         "elapsed_s": round(deadline_s, 3)}
    return out
