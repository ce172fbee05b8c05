"""One exception tree, classified by whether retrying helps.

- ``TransientError``: the target or a dependency is temporarily unavailable; the
  task is retried with backoff (finite retries).
- ``PermanentError``: retrying cannot help (bad config, missing binary, wrong
  password); the task fails now.
- ``SkippedError``: nothing to do or not allowed right now (lock held,
  extension missing); recorded as ``skipped``, never a failure.

Messages must never contain secrets: callers mask DSNs before raising.
"""

from __future__ import annotations


class MaintdError(Exception):
    """Base of every error maintd raises on purpose."""


class ConfigError(MaintdError):
    """The configuration is invalid. ``str()`` is one line naming file, field and problem."""


class TransientError(MaintdError):
    """Retrying later may succeed."""


class PermanentError(MaintdError):
    """Retrying will not help."""


class SkippedError(MaintdError):
    """The run is skipped (not a failure); the message says why."""


class UnknownTargetError(PermanentError):
    """A task was dispatched for a target name that is not configured."""


class LockLostError(PermanentError):
    """The run's per-target lock was lost while it worked (a Redis heartbeat could not extend
    it, or the PostgreSQL session holding the advisory lock ended): the run stops at its next
    step. Not retried: another run may hold the target now; the next scheduled run comes."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, bounded, for history and alerts."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:limit]
