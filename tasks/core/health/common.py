"""What the health checks share: bounded waits (a check ends inside its task's soft
time limit). Grading is ``tasks.core.findings``; units are ``tasks.core.units``."""

from __future__ import annotations

# The health tasks have a 60 s soft limit; a check's longest single wait stays under it.
MAX_WAIT_S = 45.0


def wait_s(configured: float) -> float:
    """The configured timeout, capped so the check ends inside its task's limit."""
    return max(0.1, min(float(configured), MAX_WAIT_S))
