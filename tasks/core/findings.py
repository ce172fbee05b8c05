"""``Findings``: the graded observations of one run; the worst one is its status. Every
check and verification collects into one, then turns it into a ``Result``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.records.outcome import SEVERITY_RANK, Result, grade, worst


def one_line(text: str) -> str:
    """Summaries are one line a human reads: newlines from drivers become spaces."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())



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

    def summary(self, fallback: str) -> str:
        """The problems, most severe first, as one line; ``fallback`` when there are none."""
        return "; ".join(r for s, r in sorted(self.items, key=lambda i: -SEVERITY_RANK.get(i[0], 0))
                         if s != "ok") or fallback

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

