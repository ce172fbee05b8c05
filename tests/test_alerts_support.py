"""Real loopback servers for the alert tests: an HTTP(S) server that captures requests,
an SMTP server (aiosmtpd) with STARTTLS and AUTH, and a private CA made with
``cryptography``. Imported by the ``test_alerts*`` modules; holds no tests itself.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK = "127.0.0.1"
SMTP_USER, SMTP_PASSWORD = "alice", "smtp-Pa55word-xyz"
HMAC_KEY_E2E = "e2e-Hmac-Key-secret-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def unique_task() -> str:
    return f"test.alerts_{uuid.uuid4().hex[:10]}"


# -- a private CA and a server certificate for 127.0.0.1 -------------------------------------
@dataclass(frozen=True)
class Pki:
    ca_pem: str
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def make_pki(directory: Path) -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "maintd test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    (directory / "ca.pem").write_text(ca_pem)
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    return Pki(ca_pem, directory / "ca.pem", directory / "server.pem", directory / "server.key")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# -- an HTTP(S) server that records every request ----------------------------------------------
@dataclass
class Captured:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CaptureServer:
    """Answers POSTs with the next scripted status for the path (default 200) and records them."""

    server: ThreadingHTTPServer
    scheme: str = "http"
    requests: list[Captured] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}{path}"

    def at(self, path: str) -> list[Captured]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def respond(self, path: str, *statuses: int) -> None:
        with self.lock:
            self.script[path] = list(statuses)


def _handler(state: CaptureServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.requests.append(Captured(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                queue = state.script.get(self.path) or []
                status = queue.pop(0) if queue else 200
            reply = b"ok" if status < 300 else b"boom: internal error"
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            pass

    return Handler


def start_capture(tls: ssl.SSLContext | None = None) -> CaptureServer:
    server = ThreadingHTTPServer((LOOPBACK, 0), BaseHTTPRequestHandler)
    state = CaptureServer(server, scheme="https" if tls else "http")
    server.RequestHandlerClass = _handler(state)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return state


@pytest.fixture
def http_capture() -> Iterator[CaptureServer]:
    state = start_capture()
    yield state
    state.server.shutdown()
    state.server.server_close()


@pytest.fixture
def https_capture(pki: Pki) -> Iterator[CaptureServer]:
    state = start_capture(pki.server_context())
    yield state
    state.server.shutdown()
    state.server.server_close()


# -- SMTP with STARTTLS and AUTH -----------------------------------------------------------------
@dataclass
class SmtpCapture:
    controller: Controller
    port: int
    messages: list[Message] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.controller.stop()


def start_smtp(pki: Pki, *, exclude: tuple[str, ...] = (), implicit_tls: bool = False) -> SmtpCapture:
    port = free_port()
    holder: list[SmtpCapture] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            holder[0].envelopes.append(envelope)
            holder[0].messages.append(message_from_bytes(envelope.original_content or envelope.content))
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        holder[0].mechanisms.append(mechanism)
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
              and auth_data.password == SMTP_PASSWORD.encode())
        return AuthResult(success=ok, handled=False)

    kwargs: dict[str, Any] = {"authenticator": authenticator, "auth_required": True,
                              "auth_exclude_mechanism": list(exclude)}
    if implicit_tls:
        # aiosmtpd only counts STARTTLS as TLS for AUTH; this connection is TLS from the start
        kwargs.update(ssl_context=pki.server_context(), auth_require_tls=False)
    else:
        kwargs.update(tls_context=pki.server_context(), require_starttls=True)
    controller = Controller(Handler(), hostname=LOOPBACK, port=port, ready_timeout=10, **kwargs)
    holder.append(SmtpCapture(controller, port))
    controller.start()
    return holder[0]


@pytest.fixture
def smtp_server(pki: Pki) -> Iterator[SmtpCapture]:
    server = start_smtp(pki)
    yield server
    server.stop()


def toml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string
