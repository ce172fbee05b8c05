"""Helpers shared by the health checks: grading findings, redaction, bounded waits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.config_model import Target
from workers.outcome import SEVERITY_RANK, Result, grade, worst
from workers.secrets import mask_secrets

# The health tasks have a 60 s soft limit; a check's longest single wait stays under it.
MAX_WAIT_S = 45.0


def wait_s(configured: float) -> float:
    """The configured timeout, capped so the check ends inside its task's limit."""
    return max(0.1, min(float(configured), MAX_WAIT_S))


def redact(text: str, target: Target) -> str:
    """``text`` with every secret of ``target`` masked (its URL's password, passwords)."""
    return mask_secrets(text, target)


def one_line(text: str) -> str:
    """Summaries are one line a human reads: newlines from drivers become spaces."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def percent(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


@dataclass
class Findings:
    """The graded observations of one check; the worst one is the check's status."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, status: str, reason: str) -> str:
        self.items.append((status, reason))
        return status

    def grade(self, label: str, value: float | None, pair: tuple[float, float], *,
              lower_is_worse: bool = False, unit: str = "", detail: str = "") -> str:
        """Grade ``value`` against (warning, critical); record a reason when not ok."""
        status = grade(value, pair, lower_is_worse)
        if status != "ok" and value is not None:
            limit = pair[1] if status == "critical" else pair[0]
            op = "<" if lower_is_worse else ">="
            reason = f"{label} {value:g}{unit} {op} {limit:g}{unit}"
            self.items.append((status, f"{reason} ({detail})" if detail else reason))
        return status

    @property
    def status(self) -> str:
        return worst(s for s, _ in self.items)

    def problems(self) -> list[str]:
        ranked = sorted(self.items, key=lambda item: -SEVERITY_RANK.get(item[0], 0))
        return [f"{s}: {r}" for s, r in ranked if s != "ok"]

    def result(self, headline: str, metrics: dict[str, Any]) -> Result:
        """``headline`` plus the problems, most severe first, as one line."""
        problems = self.problems()
        summary = one_line(headline + (" — " + "; ".join(problems) if problems else ""))
        metrics = {**metrics, "problems": problems}
        return Result(self.status, summary, metrics)


def unreachable(what: str, reason: str, metrics: dict[str, Any] | None = None) -> Result:
    """A target that could not be reached: critical, with the (secret-free) reason."""
    reason = one_line(reason)
    return Result("critical", f"{what} unreachable: {reason}",
                  {**(metrics or {}), "reachable": False, "error": reason, "problems": [f"critical: {reason}"]})

