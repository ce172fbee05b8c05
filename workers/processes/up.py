"""``maintd up``: the whole system on this machine, in the foreground.

With no config (or one without ``[broker] url`` / ``[results] url``) it starts an
embedded Redis and PostgreSQL under the data directory and writes the config the
children use there (see ``workers.processes.demo``). Then beat, a db-role and an app-role
worker and Flower run under one ``Supervisor``; a health sweep is sent as soon as the
workers answer, so ``maintd status`` and Flower show real outcomes within a minute.
Ctrl-C or SIGTERM stops every child, then the embedded servers (``on_stop``).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from workers.config import Config
from workers.errors import MaintdError
from workers.processes.demo import demo_config, is_generated, overlay_config, write_private
from workers.processes.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, secret_file
from workers.processes.supervisor import Child, Supervisor

logger = logging.getLogger(__name__)

RESULTS_DATABASE = "maintd"
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class LoggedChild(Child):
    """A supervised child whose output goes to its own file under ``<data_dir>/logs``."""

    log: Path | None = None

    def start(self) -> None:
        if self.log is None:
            super().start()
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(list(self.argv), env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        logger.info("started %s (pid %d, log %s)", self.name, self.proc.pid, self.log)


def logged(child: Child, logs: Path) -> LoggedChild:
    slug = child.name.replace(" ", "-").replace("/", "-")
    return LoggedChild(child.name, child.argv, child.env, grace_s=child.grace_s, on_gone=child.on_gone,
                       log=logs / f"{slug}.log")


@dataclass
class EmbeddedServers:
    """The servers this run started; ``stop`` is safe to call twice."""

    redis: EmbeddedRedis | None = None
    postgres: EmbeddedPostgres | None = None
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for server in (self.postgres, self.redis):
            if server is not None:
                try:
                    server.stop()
                except Exception:  # noqa: BLE001 - keep stopping the others
                    logger.exception("stopping an embedded server failed")


@contextmanager
def single_instance(data_dir: Path) -> Iterator[None]:
    """One ``maintd up`` per data directory (the second would fight over PostgreSQL's data)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / "up.lock", "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MaintdError(f"another `maintd up` is running on {data_dir}") from None
        yield
    finally:
        fh.close()


def _ports(data_dir: Path) -> dict[str, int]:
    """Reuse the previous run's ports when free, so URLs stay stable across restarts."""
    from workers.processes.flower import port_free

    path = data_dir / "ports.json"
    try:
        old = {k: int(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        old = {}
    ports = {name: old[name] if name in old and port_free("127.0.0.1", old[name]) else free_port()
             for name in ("redis", "postgres")}
    path.write_text(json.dumps(ports) + "\n")
    return ports


def _create_database(pg: EmbeddedPostgres, password: str, name: str) -> None:
    from psycopg2 import sql

    from workers.config.secrets import Secret
    from workers.doors import postgres as db

    with db.session(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres", application_name="maintd-up",
                    statement_timeout_s=60, password=Secret(password)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def start_embedded(data_dir: Path, servers: EmbeddedServers, redis: bool, postgres: bool) -> dict[str, int]:
    """Start the wanted servers; write their URL files (0600) into ``<data_dir>/secrets``."""
    secrets_dir = data_dir / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    ports = _ports(data_dir)
    if redis:
        password = secret_file(secrets_dir / "redis.password")
        # Recorded before start(): a start that times out still has a process to stop.
        servers.redis = EmbeddedRedis(data_dir / "redis", ports["redis"], password)
        servers.redis.start()
        write_private(secrets_dir / "broker.url", servers.redis.url + "\n")
        servers.notes.append(f"Redis 127.0.0.1:{ports['redis']}")
    if postgres:
        password = secret_file(secrets_dir / "postgres.password")
        servers.postgres = EmbeddedPostgres(data_dir / "postgres", ports["postgres"], password)
        servers.postgres.start()
        _create_database(servers.postgres, password, RESULTS_DATABASE)
        write_private(secrets_dir / "results.url", servers.postgres.url(RESULTS_DATABASE) + "\n")
        servers.notes.append(f"PostgreSQL 127.0.0.1:{ports['postgres']}")
    return ports


@dataclass
class Plan:
    """What ``maintd up`` will run on: the user's config (if any) and the data directory."""

    given: Path
    user: Path | None
    data_dir: Path
    need_redis: bool
    need_postgres: bool


def plan(args: argparse.Namespace) -> Plan:
    from workers.config import config_path, load_config

    given = config_path(getattr(args, "config", None))
    user = given if given.exists() and not is_generated(given) else None
    cfg = load_config(user) if user else None
    if args.data_dir:
        data_dir = Path(args.data_dir)
    elif cfg is not None:
        data_dir = cfg.maintd.data_dir
    elif given.exists():  # a config `maintd up` generated: its directory is the data dir
        data_dir = given.parent
    else:
        data_dir = Path(".maintd")
    return Plan(given, user, data_dir.resolve(), cfg is None or cfg.broker.url is None,
                cfg is None or cfg.results.url is None)


def prepare(p: Plan, servers: EmbeddedServers) -> Path:
    """Start the embedded servers the plan needs; return the config path the children use."""
    from workers.config import default_host

    if not (p.need_redis or p.need_postgres):
        assert p.user is not None
        return p.user.resolve()
    ports = start_embedded(p.data_dir, servers, p.need_redis, p.need_postgres)
    secrets_dir = p.data_dir / "secrets"
    if p.user is None:
        secret_file(secrets_dir / "flower.password")
        text = demo_config(p.data_dir, default_host(), ports["redis"], ports["postgres"], RESULTS_DATABASE)
    else:
        text = overlay_config(p.user.read_text(encoding="utf-8"), p.user,
                              secrets_dir / "broker.url" if p.need_redis else None,
                              secrets_dir / "results.url" if p.need_postgres else None)
    path = p.data_dir / "maintd.toml"
    if p.user is not None and p.user.resolve() == path:  # never overwrite the user's own file
        path = p.data_dir / "maintd.up.toml"
    write_private(path, text)
    return path


def _wait_and_sweep(host: str, stop: threading.Event) -> None:
    """Send the health sweep once a worker of each role is alive (its liveness mark is set:
    no broadcast ping, which would leave reply keys in the broker)."""
    from workers.config import get_config
    from workers.dispatch import sweep
    from workers.doors.redis import alive_client, alive_nodes

    wanted = {f"db-fast@{host}", f"app-fast@{host}"}
    try:
        client = alive_client(get_config())
        while not stop.is_set():
            if wanted <= set(alive_nodes(client)):
                sent = sweep(get_config())
                print(f"maintd up: workers answering; health sweep sent ({len(sent)} checks)", flush=True)
                return
            stop.wait(1.0)
    except Exception as exc:  # noqa: BLE001 - the sweep is a courtesy; beat runs the checks anyway
        if not stop.is_set():
            logger.warning("health sweep not sent: %s", exc)


def _banner(config_path: Path, data_dir: Path, servers: EmbeddedServers, flower: str | None) -> None:
    lines = [f"maintd up: data in {data_dir}"]
    if servers.notes:
        lines.append(f"  embedded: {', '.join(servers.notes)} (secrets in {data_dir / 'secrets'}, 0600)")
    lines.append(f"  config:   {config_path}")
    lines.append(f"  logs:     {data_dir / 'logs'}")
    if flower:
        lines.append(f"  Flower:   {flower}")
    lines += ["", "In another terminal:", f"  export MAINTD_CONFIG={config_path}", "  maintd status",
              "", "Ctrl-C stops everything."]
    print("\n".join(lines), flush=True)


def _run(config: Config, path: Path, data_dir: Path, servers: EmbeddedServers, args: argparse.Namespace,
         demo: bool) -> int:
    from workers.processes.beat import beat_child
    from workers.processes.flower import build_child, url_of
    from workers.processes.profiles import worker_children

    host = config.maintd.host
    logs = data_dir / "logs"
    env = {"MAINTD_CONFIG": str(path)}
    cap = getattr(args, "stop_grace", None)
    children: list[Child] = [beat_child(config), *worker_children("db", host, env, config=config, max_grace_s=cap),
                             *worker_children("app", host, env, config=config, max_grace_s=cap)]
    flower_line = None
    if not args.no_flower:
        if config.flower.password is not None:
            password, show = config.flower.password.reveal(), demo  # the demo's is ours to show
        else:
            password, show = secret_file(data_dir / "secrets" / "flower.password"), True
        children.append(build_child(config, port=args.flower_port, password=password))
        # The one place a secret is printed, on purpose (like Jupyter's token): the operator
        # needs it to log in; it was generated here, for this machine, and is stored 0600.
        shown = password if show else "(from [flower] password)"
        flower_line = f"{url_of(config, port=args.flower_port)}  user {config.flower.user}  password {shown}"
    children = [logged(c, logs) for c in children]
    for c in children:
        c.env = {**(c.env or {}), **env}
    _banner(path, data_dir, servers, flower_line)
    stop = threading.Event()
    threading.Thread(target=_wait_and_sweep, args=(host, stop), name="sweep", daemon=True).start()

    def on_stop() -> None:
        stop.set()  # before the broker goes away: the sweep thread must not report that as a failure
        servers.stop()

    try:
        code = Supervisor(children, on_stop=on_stop).run()
    finally:
        stop.set()
    if code:
        print(f"maintd up: stopped after a failure; see the logs in {logs}", file=sys.stderr)
    else:
        print("maintd up: stopped (workers, beat, Flower and embedded servers)", flush=True)
    return code


def main(args: argparse.Namespace) -> int:
    from workers.app import celery_settings
    from workers.config import get_config, reset_config
    from workers.processes.flower import scrub_flower_env

    scrub_flower_env()
    servers = EmbeddedServers()

    def interrupted(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # during start-up: unwind through `finally`, stopping what started

    previous = {s: signal.signal(s, interrupted) for s in _SIGNALS}
    try:
        p = plan(args)
        with single_instance(p.data_dir):
            path = prepare(p, servers)
            os.environ["MAINTD_CONFIG"] = str(path)
            reset_config()
            config = get_config()
            celery_settings(config)  # one clear line for a bad broker/results before starting anything
            return _run(config, path, p.data_dir, servers, args, demo=p.user is None)
    finally:
        for s in _SIGNALS:  # stopping must not be interrupted half-way
            signal.signal(s, signal.SIG_IGN)
        servers.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
