"""The alert a channel sends, and the error a channel raises when it cannot."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from workers.errors import MaintdError
from workers.records.outcome import SEVERITY_RANK

__all__ = ["SEVERITY_RANK", "Alert", "DeliveryError", "KINDS"]

KINDS = ("problem", "recovery", "reminder", "test", "report")


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
    # A report (kind "report"): the HTML page, sent inline and attached by email (other channels
    # carry ``summary``, which names where the file was written).
    html: str | None = None
    attachment_name: str | None = None

    @property
    def title(self) -> str:
        label = {"problem": self.severity.upper(), "recovery": "RECOVERED",
                 "reminder": f"STILL {self.severity.upper()}", "test": "TEST", "report": "REPORT"}[self.kind]
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
        out = {**asdict(self), "title": self.title}
        out.pop("html")  # the page travels by email; webhooks get the summary and path
        out.pop("attachment_name")
        return out
