"""``maintd report weekly [--since DATE] [--until DATE] --out FILE``: render a weekly report on
demand from the results database (no broker, no worker), without sending it anywhere."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workers.errors import ConfigError


def add_parsers(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("report", help="render a report from the records")
    rsub = s.add_subparsers(dest="report_command", required=True, parser_class=parser_class)
    w = rsub.add_parser("weekly", help="the weekly report as one HTML file (and its text summary on stdout)")
    w.add_argument("--since", help="start (YYYY-MM-DD or ISO time, UTC; default: 7 days before --until)")
    w.add_argument("--until", help="end (default: now)")
    w.add_argument("--out", required=True, help="the HTML file to write")
    w.set_defaults(func=weekly_main)


def _when(value: str, flag: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def weekly_main(args: argparse.Namespace) -> int:
    from tasks.core.reports import render, weekly
    from tasks.core.reports.publish import write
    from workers.config import get_config, this_host
    from workers.records import records

    until = _when(args.until, "--until") if args.until else datetime.now(UTC)
    since = _when(args.since, "--since") if args.since else until - timedelta(days=7)
    if since >= until:
        raise ConfigError(f"--since {since:%Y-%m-%d %H:%M} is not before --until {until:%Y-%m-%d %H:%M}")
    config = get_config()
    out = Path(args.out)
    data = weekly.gather(records(config), config, since, until, this_host(config))
    title = f"maintd weekly report — {until:%Y-%m-%d}"
    path = write(out.parent if str(out.parent) else Path("."), out.name, render.html(data, title), 1_000_000, out.name)
    print(render.text(data, title, str(path.resolve())))
    return 0
