"""The alert a channel sends, and the error a channel raises when it cannot."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from workers.errors import MaintdError
from workers.records.outcome import SEVERITY_RANK

__all__ = ["SEVERITY_RANK", "Alert", "DeliveryError", "KINDS"]

KINDS = ("problem", "recovery", "reminder", "test")


class DeliveryError(MaintdError):
    """A channel could not deliver. The message names the channel, never its secrets."""


@dataclass(frozen=True)
class Alert:
    task: str
    target: str
    severity: str  # ok | warning | critical (a failed run is critical)
    previous: str | None  # the severity last notified, None on the first
    kind: str  # problem | recovery | reminder | test
    status: str  # the run's status: ok | warning | critical | failed
    summary: str
    host: str
    at: str  # ISO 8601, UTC
    incident: int | None = None  # the incident opened for this change to critical (incident.capture)

    @property
    def title(self) -> str:
        label = {"problem": self.severity.upper(), "recovery": "RECOVERED",
                 "reminder": f"STILL {self.severity.upper()}", "test": "TEST"}[self.kind]
        return f"[maintd] {label}: {self.subject}{self.incident_note}"

    @property
    def incident_note(self) -> str:
        return f" (incident {self.incident}: maintd incidents show {self.incident})" if self.incident else ""

    @property
    def subject(self) -> str:
        """``task[target]``, or the task alone when it has no target."""
        return f"{self.task}[{self.target}]" if self.target else self.task

    @property
    def text(self) -> str:
        return f"{self.title}: {self.summary} (host {self.host}, {self.at})"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "title": self.title}
