# PYTHON_ARGCOMPLETE_OK  (argcomplete: this module answers shell completion)
"""The ``maintd`` command line.

Exit codes: 0 success (outcome ok, warning, skipped or deferred); 1 error (bad
config, bad arguments, unreachable broker), one line on stderr; 2 an outcome is
critical; 3 a run failed; 4 waiting for a result timed out. ``--config`` and ``-v`` go
before or after the command; ``maintd completion bash|zsh|fish`` prints the shell hook.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, NoReturn

from workers.cli import options
from workers.errors import MaintdError, first_line

EXIT_ERROR, EXIT_CRITICAL, EXIT_FAILED, EXIT_TIMEOUT = 1, 2, 3, 4


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"maintd: error: {message} (see `maintd --help`)", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def _use_config(args: argparse.Namespace) -> None:
    """--config wins over $MAINTD_CONFIG; exported so children and the app see the same file.
    The config is then parsed and checked against the task catalog: one clear line if bad."""
    from workers.catalog import validate
    from workers.config import config_path, get_config, reset_config

    os.environ["MAINTD_CONFIG"] = str(config_path(getattr(args, "config", None)).resolve())
    reset_config()
    if args.command not in ("up",):  # `up` may generate the config it runs on
        validate(get_config())


def cmd_check_config(args: argparse.Namespace) -> int:
    from workers.cli.views import print_config_summary
    from workers.config import get_config

    print_config_summary(get_config())
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from workers.catalog import load_catalog

    specs = sorted((s for s in load_catalog().values() if not s.internal), key=lambda s: s.name)
    print(f"{'TASK':26} {'IMPACT':7} {'TARGET':13} {'LANE':5} {'LIMIT':>6}  SUMMARY")
    for s in specs:
        lane = "slow" if s.impact in ("medium", "high") else "fast"
        flags = " (ad hoc only)" if s.ad_hoc_only else ""
        print(f"{s.name:26} {s.impact:7} {s.target_kind or '-':13} {lane:5} {s.time_limit:>5}s  {s.summary}{flags}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from workers.cli.views import print_schedule
    from workers.config import get_config
    from workers.records import records
    from workers.schedule import expand

    config = get_config()
    try:  # durations seen in history make the overlap check real; typical ones otherwise
        seen = records(config).runs.durations([(e.task, e.target) for e in expand(config)])
    except Exception:  # noqa: BLE001 - the schedule is shown without the results database too
        seen = {}
    print_schedule(config, seen)
    return 0


def _parse_extra(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise MaintdError(f"--arg {pair!r}: expected NAME=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from workers.dispatch import dispatch, print_run_document, wait_for

    kwargs = _parse_extra(args.arg or [])
    if args.dry_run:
        kwargs["dry_run"] = True
    result = dispatch(args.task, args.target, kwargs, expires_s=args.expires)
    if args.json:
        return print_run_document(result, args.task, args.target, args.timeout if args.wait else None)
    if not args.wait:
        print(f"sent {args.task}[{args.target or ''}] as {result.id}")
        return 0
    from workers.cli.progress import ProgressDisplay

    display = ProgressDisplay(sys.stderr)
    try:
        return wait_for(result, args.timeout, on_progress=display)
    finally:
        display.close()


def cmd_completion(args: argparse.Namespace) -> int:
    print(options.completion_script(args.shell), end="")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.check:
        from workers.cli.watchdog import check_main

        return check_main()
    from workers.cli.views import print_status

    return print_status(as_json=args.json)


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.config import get_config
    from workers.processes.profiles import worker_children
    from workers.processes.supervisor import Supervisor

    config = get_config()
    from workers.app import celery_settings

    celery_settings(config)  # validate broker/results now: one clear line instead of a crash loop
    host = args.host or config.maintd.host
    return Supervisor(worker_children(args.role, host, fast_concurrency=args.concurrency,
                                      loglevel=args.loglevel, config=config, max_grace_s=args.stop_grace)).run()


def cmd_alive(args: argparse.Namespace) -> int:
    """Exit 0 when every named Celery node set its liveness mark within the last 30 s (its
    event loop is turning): the container healthcheck, with no broadcast and no reply keys."""
    from workers.config import get_config
    from workers.doors.redis import alive_client, alive_nodes

    seen = alive_nodes(alive_client(get_config()))
    missing = [n for n in args.node if n not in seen]
    if missing:
        print(f"maintd: not alive: {', '.join(missing)}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def cmd_beat(args: argparse.Namespace) -> int:
    from workers.app import celery_settings
    from workers.config import get_config
    from workers.processes.beat import beat_child
    from workers.processes.supervisor import Supervisor

    config = get_config()
    celery_settings(config)
    return Supervisor([beat_child(config, loglevel=args.loglevel)]).run()


def cmd_flower(args: argparse.Namespace) -> int:
    from workers.processes.flower import main

    return main(args)


def cmd_up(args: argparse.Namespace) -> int:
    from workers.processes.up import main

    return main(args)


def cmd_alerts_test(args: argparse.Namespace) -> int:
    from workers.cli.alerts import test_main

    return test_main(args)


def _scrubbed(text: str) -> str:
    """An error line with every configured secret masked (as is, if the config is unusable)."""
    try:
        from workers.config import get_config
        from workers.config.secrets import mask_secrets

        return mask_secrets(text, get_config())
    except Exception:  # noqa: BLE001 - a broken config must not hide the original error
        return text


def build_parser() -> Parser:
    p = Parser(prog="maintd", description="Scheduled, gated, audited maintenance on Celery.")
    options.add_global_options(p, top=True)
    p.add_argument("--version", action="version", version=options.version_line())
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    s = sub.add_parser("up", help="run the whole system on this machine (embedded services when none configured)")
    s.add_argument("--data-dir", help="where embedded services and generated files live (default .maintd)")
    s.add_argument("--no-flower", action="store_true", help="do not start Flower")
    s.add_argument("--flower-port", type=int, help="Flower port (default 5555)")
    s.add_argument("--stop-grace", type=float, metavar="SECONDS",
                   help="on Ctrl-C, kill running tasks after this long instead of waiting for them")
    s.set_defaults(func=cmd_up)

    s = sub.add_parser("worker", help="serve one role's queues (fast and slow lane) on this host")
    s.add_argument("--role", choices=["db", "app"], required=True)
    s.add_argument("--host", help="this host's name for host-pinned queues (default [maintd] host)")
    s.add_argument("--concurrency", type=int, help="fast-lane processes (default: 2 per CPU, 4..8)")
    s.add_argument("--loglevel", default="INFO")
    s.add_argument("--stop-grace", type=float, metavar="SECONDS",
                   help="on stop, kill running tasks after this long instead of each lane's longest hard limit"
                        " (they are recorded lost)")
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("alive", help="exit 0 if the named worker nodes are alive (container healthchecks)")
    s.add_argument("node", nargs="+", help="Celery node name, e.g. db-fast@db1")
    s.set_defaults(func=cmd_alive)

    s = sub.add_parser("beat", help="run the scheduler (run several: one dispatches, the others stand by)")
    s.add_argument("--loglevel", default="INFO")
    s.set_defaults(func=cmd_beat)

    s = sub.add_parser("flower", help="run Flower on the project app")
    s.add_argument("--no-auth", action="store_true", help="serve without basic auth (loopback only)")
    s.add_argument("--port", type=int)
    s.add_argument("--address")
    s.set_defaults(func=cmd_flower)

    s = sub.add_parser("run", help="dispatch one task now")
    s.add_argument("task").completer = options.task_names  # type: ignore[attr-defined]
    s.add_argument("target", nargs="?").completer = options.target_names  # type: ignore[attr-defined]
    s.add_argument("--dry-run", action="store_true", help="plan only: list what would be done")
    s.add_argument("--wait", action="store_true", help="wait for the outcome, print it, exit by its status")
    s.add_argument("--timeout", type=float, default=600, help="seconds to wait with --wait (default 600)")
    s.add_argument("--arg", action="append", metavar="NAME=VALUE", help="extra task argument (JSON value)")
    s.add_argument("--expires", type=float, default=3600, metavar="SECONDS",
                   help="drop the run if no worker started it within this long (default 3600)")
    s.add_argument("--json", action="store_true",
                   help="print one JSON document (task_id, state, outcome, error, exit_code); same exit codes")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="latest outcome per task and target, workers, deferred runs")
    s.add_argument("--json", action="store_true")
    s.add_argument("--check", action="store_true",
                   help="probe maintd itself: exit 2 when the watchdog has not run for 3 intervals (for cron/monitoring)")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("schedule", help="the effective beat schedule with next run times")
    s.set_defaults(func=cmd_schedule)

    s = sub.add_parser("tasks", help="the task catalog")
    s.set_defaults(func=cmd_tasks)

    s = sub.add_parser("check-config", help="validate the config; print targets and schedule")
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("alerts", help="alert channels")
    asub = s.add_subparsers(dest="alerts_command", required=True, parser_class=Parser)
    t = asub.add_parser("test", help="send a test alert to every channel")
    t.set_defaults(func=cmd_alerts_test)

    from workers.cli import exporter, incidents, logs, report

    incidents.add_parsers(sub, Parser)
    exporter.add_parser(sub, Parser)
    logs.add_parsers(sub, Parser)
    report.add_parsers(sub, Parser)

    s = sub.add_parser("completion", help="print the shell completion hook: eval \"$(maintd completion bash)\"")
    s.add_argument("shell", choices=options.SHELLS)
    s.set_defaults(func=cmd_completion)

    options.accept_global_options_everywhere(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    options.enable_completion(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # their retry warnings carry tracebacks; the CLI says it in one line
        for name in ("celery", "kombu", "amqp"):
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        if args.command not in ("tasks", "completion", "logs"):
            _use_config(args)
        return int(args.func(args) or 0)
    except MaintdError as exc:
        print(f"maintd: error: {_scrubbed(first_line(exc, limit=1000))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback; -v shows it
        from kombu.exceptions import OperationalError

        if isinstance(exc, OperationalError):
            print(f"maintd: error: broker unreachable: {_scrubbed(first_line(exc))}", file=sys.stderr)
        else:
            logging.getLogger("maintd").debug("unexpected error", exc_info=True)
            print(f"maintd: error: {type(exc).__name__}: {_scrubbed(first_line(exc))}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
