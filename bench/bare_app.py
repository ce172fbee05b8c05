"""The project app plus one bare Celery task: the peer the dispatch benchmark compares with."""

from __future__ import annotations

from workers.app import app


@app.task(name="bench.bare_noop", shared=False, acks_late=True)
def bare_noop(target: str) -> dict[str, str]:
    """A plain Celery task: no history, no gates, no alerts."""
    return {"task": "bench.bare_noop", "target": target, "status": "ok"}


__all__ = ["app", "bare_noop"]
