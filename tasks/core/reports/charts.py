"""Charts for the reports: matplotlib (Agg, no display) rendered to PNG and inlined as
``data:`` URIs, so a report is one self-contained file that any mail client shows."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from datetime import datetime

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, no GUI toolkit

import matplotlib.dates as mdates  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

WIDTH_IN, HEIGHT_IN, DPI = 7.0, 2.6, 96
COLORS = {"ok": "#2e7d32", "warning": "#ef6c00", "critical": "#c62828", "line": "#1565c0", "band": "#90caf9"}


def _figure(height: float = HEIGHT_IN, left: float = 0.1) -> tuple[Figure, Axes]:
    # A bare Figure (no pyplot state to leak between runs in a long-lived worker) with fixed
    # margins: tight_layout measures every text and costs more than the drawing.
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left, right=0.98, top=1 - 0.35 / height, bottom=0.5 / height)
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _dates(times: Sequence[datetime]) -> list[float]:
    """Matplotlib's date numbers (its typing does not take datetimes)."""
    return [float(mdates.date2num(t)) for t in times]


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def line(title: str, times: Sequence[datetime], values: Sequence[float], *, ylabel: str = "",
         floors: Sequence[tuple[float, str]] = ()) -> str:
    """A time series, with horizontal threshold lines (value, status)."""
    fig, ax = _figure()
    ax.plot(_dates(times), list(values), color=COLORS["line"], linewidth=1.5)
    for value, status in floors:
        ax.axhline(value, color=COLORS.get(status, "grey"), linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d"))
    return _png(fig)


def bars(title: str, labels: Sequence[str], values: Sequence[float], *, xlabel: str = "",
         statuses: Sequence[str] | None = None) -> str:
    """Horizontal bars, one per label (coloured by status when given)."""
    fig, ax = _figure(max(1.6, 0.35 * len(labels) + 0.9), left=0.32)
    colors = [COLORS.get(s, COLORS["line"]) for s in statuses] if statuses else COLORS["line"]
    ax.barh(list(labels)[::-1], list(values)[::-1], color=colors[::-1] if statuses else colors)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _png(fig)


def projection(title: str, times: Sequence[datetime], values: Sequence[float], future: Sequence[datetime],
               fitted: Sequence[float], low: Sequence[float], high: Sequence[float], limit: float | None,
               ylabel: str = "") -> str:
    """A series, its trend carried forward and the projection's band, and the limit."""
    fig, ax = _figure()
    ax.plot(_dates(times), list(values), color=COLORS["line"], linewidth=1.2, label="measured")
    ax.plot(_dates(future), list(fitted), color="black", linestyle=":", linewidth=1.2, label="trend")
    ax.fill_between(_dates(future), list(low), list(high), color=COLORS["band"], alpha=0.5,
                    label="95% band")
    if limit is not None:
        ax.axhline(limit, color=COLORS["critical"], linestyle="--", linewidth=1, label="limit")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", fontsize=7)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
    return _png(fig)
