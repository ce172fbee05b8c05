"""``maintd incidents`` (the newest incidents) and ``maintd incidents show ID`` (one, with
its snapshot). Read from the results database only: no broker, no worker needed."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from workers.errors import MaintdError


def add_parsers(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("incidents", help="incidents captured when a check turned critical (or ad hoc)")
    s.add_argument("--limit", type=int, default=20, help="how many, newest first (default 20)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=list_main)
    isub = s.add_subparsers(dest="incidents_command", parser_class=parser_class)
    show = isub.add_parser("show", help="one incident with its snapshot")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=show_main)


def _when(v: Any) -> str:
    return f"{v:%Y-%m-%d %H:%M}Z" if isinstance(v, datetime) else "-"


def list_main(args: argparse.Namespace) -> int:
    from workers.records import records

    found = records().incidents.newest(max(1, args.limit))
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    if not found:
        print("no incidents recorded")
        return 0
    print(f"{'ID':>6}  {'OPENED':17} {'STATE':9} {'TRIGGER':36} SUMMARY")
    for i in found:
        trigger = (f"{i['trigger_task']}[{i['trigger_target'] or ''}] {i['trigger_status'] or ''}"
                   if i["trigger_task"] else "ad hoc")
        text = i["summary"] or i["error"] or i["trigger_summary"] or ""
        print(f"{i['id']:>6}  {_when(i['opened_at']):17} {i['state']:9} {trigger[:36]:36} {text[:110]}")
    return 0


def show_main(args: argparse.Namespace) -> int:
    from tasks.core.incident.render import render
    from workers.records import records

    incident = records().incidents.get(args.id)
    if incident is None:
        raise MaintdError(f"no incident {args.id} (see `maintd incidents`)")
    if args.json:
        print(json.dumps(incident, indent=2, default=str))
    else:
        print(render(incident))
    return 0
