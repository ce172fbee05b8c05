"""``maintd flower``: Flower on the project app, authenticated and read-only by default.

Flower runs as ``python -m celery -A workers.app flower`` so it loads the same config
(broker, visibility timeout, queues) as every worker. The basic-auth credentials reach
it through ``FLOWER_BASIC_AUTH`` in its environment, never its command line (``ps``
shows argv to every user). Read-only mode is Flower's own ``--read_only`` switch (2.2+):
every control endpoint (``/api/worker/*``, ``/api/task/revoke|apply|...``) answers 403.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
from pathlib import Path

from workers.config import Config
from workers.errors import ConfigError, MaintdError
from workers.processes.profiles import celery_argv
from workers.processes.supervisor import Child, Supervisor

logger = logging.getLogger(__name__)

# Flower environment variables we set or must not inherit: an inherited
# FLOWER_UNAUTHENTICATED_API would open the API when auth is off.
_FLOWER_ENV = ("FLOWER_BASIC_AUTH", "FLOWER_UNAUTHENTICATED_API", "FLOWER_READ_ONLY", "FLOWER_AUTH")

# maintd's Flower config (task list columns, how a result reads): docs/flower-verdict.md.
FLOWER_CONF = Path(__file__).with_name("flowerconfig.py")


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_credentials(user: str, password: str) -> None:
    """Flower splits FLOWER_BASIC_AUTH on commas and the user on the first colon."""
    if not user or ":" in user or "," in user:
        raise ConfigError("flower.user: must be non-empty without ':' or ','")
    if not password or "," in password:
        raise ConfigError("flower.password: must be non-empty without ','")


def scrub_flower_env() -> None:
    """Drop inherited Flower auth settings: children get only what we set."""
    for name in _FLOWER_ENV:
        os.environ.pop(name, None)


def has_read_only_switch() -> bool:
    from flower.options import default_options

    return hasattr(default_options, "read_only")


def port_free(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def flower_child(address: str, port: int, user: str | None, password: str | None,
                 read_only: bool = True, env: dict[str, str] | None = None) -> Child:
    """The Flower process. ``password=None`` serves without auth (callers check loopback).

    Call ``scrub_flower_env()`` in the parent first: the child inherits its environment.
    """
    if read_only and not has_read_only_switch():
        raise MaintdError("the installed Flower has no read-only mode (need flower>=2.2)")
    child_env = dict(env or {})
    if password is not None:
        if user is None:
            raise MaintdError("Flower basic auth needs a user")
        check_credentials(user, password)
        child_env["FLOWER_BASIC_AUTH"] = f"{user}:{password}"
    argv = celery_argv("flower", f"--address={address}", f"--port={port}",
                       f"--read_only={'true' if read_only else 'false'}",
                       # Ours, not a stray ./flowerconfig.py: that could re-open auth or read-only.
                       f"--conf={FLOWER_CONF}", "--enable_events=true")
    return Child("flower", argv, child_env, grace_s=10)


def build_child(config: Config, *, address: str | None = None, port: int | None = None,
                no_auth: bool = False, password: str | None = None) -> Child:
    """Validate the options against the config and build the Flower child.

    ``password`` (from ``maintd up``) overrides ``[flower] password``.
    """
    address = address or config.flower.address
    port = port or config.flower.port
    if no_auth:
        if not is_loopback(address):
            raise MaintdError(f"--no-auth is allowed only on a loopback address, not {address!r}")
        secret = None
    else:
        secret = password or (config.flower.password.reveal() if config.flower.password else None)
        if not secret:
            raise MaintdError("Flower needs a password: set [flower] password_file (or password = "
                              "\"${FLOWER_PASSWORD}\") in the config, or pass --no-auth on a loopback address")
    if not port_free(address, port):
        raise MaintdError(f"cannot serve Flower on {address}:{port}: address in use (pick another with --port)")
    return flower_child(address, port, config.flower.user, secret, config.flower.read_only)


def url_of(config: Config, address: str | None = None, port: int | None = None) -> str:
    host = address or config.flower.address
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port or config.flower.port}/"


def main(args: argparse.Namespace) -> int:
    from workers.app import celery_settings
    from workers.config import get_config

    scrub_flower_env()
    config = get_config()
    celery_settings(config)  # one clear line for a missing broker instead of a crash loop
    child = build_child(config, address=args.address, port=args.port, no_auth=args.no_auth)
    mode = "read-only" if config.flower.read_only else "read-write"
    auth = "no auth" if args.no_auth else f"basic auth, user {config.flower.user}"
    print(f"Flower at {url_of(config, args.address, args.port)} ({auth}, {mode})", flush=True)
    return Supervisor([child]).run()
