"""``maintd logs import FILE``: print the ``[[logs]]`` TOML equivalent to a logrotate stanza
file. Needs no config, broker or database. Directives with no equivalent are named (as
comments in the TOML and one line each on stderr), never dropped silently."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Any


def add_parsers(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("logs", help="log rotation helpers")
    lsub = s.add_subparsers(dest="logs_command", required=True, parser_class=parser_class)
    imp = lsub.add_parser("import", help="print [[logs]] TOML equivalent to a logrotate.d file")
    imp.add_argument("file", type=Path, help="e.g. /etc/logrotate.d/nginx")
    imp.add_argument("--host", default=socket.gethostname().split(".")[0],
                     help="the host the logs live on (default: this one)")
    imp.set_defaults(func=import_main)


def import_main(args: argparse.Namespace) -> int:
    from tasks.core.files.logrotate_import import parse, to_toml

    result = parse(args.file, args.host)
    sys.stdout.write(to_toml(result, args.file))
    for line in result.unmapped:
        print(f"maintd: not mapped: {line}", file=sys.stderr)
    return 0
