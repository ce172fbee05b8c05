"""``maintd exporter``: maintd's own state for Prometheus (prometheus-client), served over
HTTP; the metrics and how they are read: ``workers.cli.metrics``.

Access: loopback by default. With ``[flower] password`` set, every request needs Flower's
basic-auth credentials; without one, only a loopback address may be served (``--no-auth``
skips auth, on loopback only, as ``maintd flower --no-auth`` does).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import logging
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from workers.errors import ConfigError, MaintdError

if TYPE_CHECKING:
    from workers.config import Config

logger = logging.getLogger(__name__)
DEFAULT_ADDRESS, DEFAULT_PORT = "127.0.0.1", 9808


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def basic_auth(app: WSGIApp, user: str, password: str) -> WSGIApp:
    """``app`` behind HTTP basic auth (constant-time comparison; 401 with a challenge otherwise)."""
    expected = f"{user}:{password}".encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        given = b""
        if header.startswith("Basic "):
            try:
                given = base64.b64decode(header[6:].strip(), validate=True)
            except (binascii.Error, ValueError):
                given = b""
        if not hmac.compare_digest(given, expected):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="maintd"'),
                                                ("Content-Type", "text/plain")])
            return [b"authentication required\n"]
        return app(environ, start_response)

    return guarded


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("exporter: " + format, *args)


def build_server(config: Config, address: str, port: int, no_auth: bool = False) -> WSGIServer:
    """The exporter's HTTP server (not yet serving): ``/metrics`` (any path) in Prometheus text."""
    from workers.processes.flower import check_credentials, is_loopback

    password = config.flower.password.reveal() if config.flower.password else None
    if no_auth or password is None:
        if not is_loopback(address):
            raise ConfigError(f"exporter: serving {address} needs basic auth: set [flower] password (the exporter"
                              " uses Flower's credentials) or bind a loopback address")
        password = None
    else:
        check_credentials(config.flower.user, password)
    from prometheus_client import CollectorRegistry, make_wsgi_app

    from workers.cli.metrics import MaintdCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MaintdCollector(config))
    app: WSGIApp = make_wsgi_app(registry)
    if password is not None:
        app = basic_auth(app, config.flower.user, password)
    try:
        return make_server(address, port, app, server_class=_Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise MaintdError(f"exporter: cannot serve on {address}:{port}: {exc.strerror or exc}") from None


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("exporter", help="serve maintd's state as Prometheus metrics (loopback by default)")
    s.add_argument("--address", default=DEFAULT_ADDRESS, help=f"listen address (default {DEFAULT_ADDRESS})")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"listen port (default {DEFAULT_PORT})")
    s.add_argument("--no-auth", action="store_true", help="serve without basic auth (loopback only)")
    s.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from workers.config import get_config

    config = get_config()
    server = build_server(config, args.address, args.port, args.no_auth)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    auth = "no auth" if args.no_auth or config.flower.password is None else f"basic auth, user {config.flower.user}"
    print(f"maintd exporter at http://{host}:{port}/metrics ({auth})", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
