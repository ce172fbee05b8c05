"""The weekly report as one self-contained HTML page (styles inline, charts as ``data:`` PNGs:
no external asset, so it reads the same in a mail client, a browser or an archive) and as a
plain-text summary for chat."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from tasks.core.reports import charts
from tasks.core.reports.capacity import show
from tasks.core.reports.weekly import WeeklyData
from tasks.core.units import human_bytes, human_seconds

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#222;max-width:960px;margin:1em auto;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}.ok{color:#2e7d32}.warning{color:#ef6c00}.critical,.failed,.lost{color:#c62828}
img{max-width:100%;display:block;margin:.5em 0}.muted{color:#777}code{font-size:.85em}
"""
BYTES = ("reclaimed_bytes", "freed_bytes", "size_bytes")


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = cell if isinstance(cell, Markup) else escape("" if cell is None else str(cell))
            cells.append(f"<td class=\"n\">{text}</td>" if i in numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        return "<p class=\"muted\">Nothing this week.</p>"
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


class Markup(str):
    """HTML already escaped."""


def _status(s: str) -> Markup:
    return Markup(f"<span class=\"{escape(s)}\">{escape(s)}</span>")


def _img(src: str, alt: str) -> str:
    return f"<img src=\"{src}\" alt=\"{escape(alt)}\">"


def _work(value: float, metric: str) -> str:
    if metric in BYTES:
        return human_bytes(value)
    if metric.endswith("_s"):
        return human_seconds(value)
    return f"{value:,.0f}"


def html(data: WeeklyData, title: str) -> str:
    parts = [_head(title),
             f"<p>{data.since:%Y-%m-%d %H:%M} – {data.until:%Y-%m-%d %H:%M} UTC, from {escape(data.host)}."
             f" Overall: {_status(data.status)}</p>"]

    parts.append("<h2>Availability</h2>")
    avail = [a for a in data.availability if a["percent"] is not None]
    if avail:
        parts.append(_img(charts.bars("Availability per check and target (% of runs not critical)",
                                      [f"{a['task']}[{a['target']}]" for a in avail], [a["percent"] for a in avail],
                                      xlabel="%", statuses=["ok" if a["percent"] >= 99.9 else "warning"
                                                            if a["percent"] >= 99 else "critical" for a in avail]),
                          "availability chart"))
    parts.append(_table(["check", "target", "runs", "critical/failed", "availability"],
                        [(a["task"], a["target"], a["runs"], a["bad"],
                          "n/a" if a["percent"] is None else f"{a['percent']:.2f}%") for a in data.availability],
                        numeric=(2, 3, 4)))

    parts.append("<h2>Health score</h2>")
    if data.score:
        parts.append(_img(charts.line("health.overview score (lowest per interval)", [b[0] for b in data.score],
                                      [b[1] for b in data.score], ylabel="score"), "health score chart"))
        mean, lowest, readings = _score(data)
        parts.append(f"<p>Mean {mean:.1f}, lowest {lowest:g} ({readings} readings).</p>")
    else:
        parts.append("<p class=\"muted\">No health.overview runs this week.</p>")

    parts.append("<h2>Failures</h2>")
    parts.append(_table(["task", "target", "status", "runs", "last", "what"],
                        [(f["task"], f["target"], _status(f["status"]), f["runs"], f"{f['last_at']:%a %H:%M}",
                          str(f["last_summary"] or "")[:200]) for f in data.failures], numeric=(3,)))

    parts.append("<h2>Maintenance done</h2>")
    parts.append(_table(["task", "runs", "targets", "actions", "longest"],
                        [(m["task"], m["runs"], m["targets"], m["actions"] or 0,
                          human_seconds(float(m["longest_s"] or 0))) for m in data.maintenance], numeric=(1, 2, 3, 4)))
    if data.work_totals:
        parts.append(_table(["task", "measure", "total", "largest"],
                            [(w["task"], w["metric"], _work(float(w["total"]), w["metric"]),
                              _work(float(w["largest"]), w["metric"])) for w in data.work_totals], numeric=(2, 3)))
    b = data.backups
    taken = sum(v["ok"] for k, v in b.get("per_task", {}).items() if k in
                ("backup.postgres", "backup.sqlite", "backup.redis", "backup.files"))
    per = b.get("per_task", {})
    parts.append(f"<p>Backups taken: {taken}; verified: {per.get('backup.verify', {}).get('ok', 0)};"
                 f" restore tests: {per.get('backup.restore_test', {}).get('ok', 0)}"
                 f" (RTO {human_seconds(b['rto_s']) if b.get('rto_s') is not None else 'n/a'});"
                 f" failed backup runs: {sum(v['failed'] for v in per.values())}.</p>")

    parts.append("<h2>Slowest queries</h2>")
    parts.append(_table(["target", "query", "calls", "avg ms", "p95 ms", "last week avg", "change"],
                        [(q["target"], Markup(f"<code>{escape(q['query'])}</code>"), q["calls"], f"{q['mean_ms']:.1f}",
                          "n/a" if q["p95_ms"] is None else f"{float(q['p95_ms']):.1f}",
                          "new" if q["last_week_mean_ms"] is None else f"{q['last_week_mean_ms']:.1f}",
                          "" if q["change_percent"] is None else f"{q['change_percent']:+.0f}%")
                         for q in data.queries], numeric=(2, 3, 4, 5, 6)))

    parts.append("<h2>Top growth</h2>")
    if data.growth:
        parts.append(_img(charts.bars("Growth this week (MB)", [_growth_name(g) for g in data.growth],
                                      [float(g["growth"]) / 1e6 for g in data.growth], xlabel="MB"), "growth chart"))
    parts.append(_table(["series", "start", "end", "growth"],
                        [(_growth_name(g), human_bytes(float(g["first"])), human_bytes(float(g["last"])),
                          human_bytes(float(g["growth"]))) for g in data.growth], numeric=(1, 2, 3)))

    parts.append("<h2>Open warnings</h2>")
    parts.append(_table(["task", "target", "status", "since", "summary"],
                        [(o["task"], o["target"], _status(o["status"]), f"{o['since']:%Y-%m-%d %H:%M}",
                          str(o["summary"])[:200]) for o in data.open_findings]))

    parts += _capacity(data)
    parts.append("</body></html>")
    return "\n".join(parts)


def _score(data: WeeklyData) -> tuple[float, float, int]:
    """(mean, lowest, readings) of the week's score from its buckets."""
    readings = sum(b[3] for b in data.score)
    return sum(b[2] * b[3] for b in data.score) / max(readings, 1), min(b[1] for b in data.score), readings


def _head(title: str) -> str:
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>")


def _capacity(data: WeeklyData) -> list[str]:
    parts: list[str] = []
    parts.append("<h2>Capacity</h2>")
    parts.append(_table(["series", "now", "per day", "in 30 days", "in 6 months", "limit", "days to limit", "status"],
                        [(p.name, show(p.current, p.unit), show(p.slope_per_day, p.unit), show(p.at["30d"], p.unit),
                          show(p.at["6mo"], p.unit), show(p.limit, p.unit),
                          "-" if p.days_until_limit is None else f"{p.days_until_limit:.0f}", _status(p.status))
                         for p in data.capacity], numeric=(1, 2, 3, 4, 5, 6)))
    parts += [_img(p.chart, f"capacity chart {p.name}") for p in data.capacity if p.chart]
    return parts


def capacity_html(data: WeeklyData, title: str) -> str:
    """The capacity forecast alone (``reports.capacity``)."""
    return "\n".join([_head(title), f"<p>History {data.since:%Y-%m-%d} – {data.until:%Y-%m-%d} UTC,"
                                     f" from {escape(data.host)}.</p>", *_capacity(data), "</body></html>"])


def _growth_name(g: dict[str, Any]) -> str:
    metric = str(g["metric"])
    name = metric[len("tables."):-len(".total_bytes")] if metric.startswith("tables.") else metric
    return f"{g['task'].split('.')[0]} {g['target']}: {name}"


def text(data: WeeklyData, title: str, path: str | None = None) -> str:
    """The chat summary: the headline numbers and what needs a person."""
    lines = [f"{title} ({data.since:%Y-%m-%d} – {data.until:%Y-%m-%d}): {data.status}"]
    avail = [a for a in data.availability if a["percent"] is not None]
    if avail:
        worst = avail[0]
        lines.append(f"Availability: lowest {worst['percent']:.2f}% ({worst['task']}[{worst['target']}]),"
                     f" {sum(1 for a in avail if a['percent'] >= 99.9)}/{len(avail)} checks at 99.9% or better")
    if data.score:
        mean, lowest, _ = _score(data)
        lines.append(f"Health score: mean {mean:.1f}, lowest {lowest:g}")
    lines.append(f"Failures: {sum(int(f['runs']) for f in data.failures)} run(s)"
                 + (": " + "; ".join(f"{f['task']}[{f['target']}] {f['status']} x{f['runs']}" for f in data.failures[:3])
                    if data.failures else ""))
    lines.append(f"Maintenance: {sum(int(m['runs']) for m in data.maintenance)} run(s) of {len(data.maintenance)} task(s)")
    if data.queries:
        q = data.queries[0]
        lines.append(f"Slowest query: {q['mean_ms']:.1f} ms avg on {q['target']}: {q['query'][:80]}")
    if data.growth:
        g = data.growth[0]
        lines.append(f"Top growth: {_growth_name(g)} +{human_bytes(float(g['growth']))}")
    lines.append(f"Open warnings: {len(data.open_findings)}")
    near = [p for p in data.capacity if p.status != "ok"]
    lines.append("Capacity: " + ("; ".join(p.line() for p in near[:3]) if near else
                                 f"{len(data.capacity)} series, no limit within 30 days"))
    if path:
        lines.append(f"Full report: {path}")
    return "\n".join(lines)
