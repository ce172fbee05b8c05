"""``health.certificates``: days until a certificate expires, from a PEM file on its host
or from the certificate a TLS server presents at ``host:port``.

The peer certificate is read even when it is expired, self-signed or for another name
(verification off): this check's job is to report those, not to fail on them.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from tasks.core.findings import Findings, unreachable
from tasks.core.health.common import wait_s
from workers.config import CertificateTarget, Thresholds
from workers.errors import first_line
from workers.records.outcome import Result

logger = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def fetch_der(address: str, timeout_s: float) -> bytes:
    """The DER certificate the server at ``host:port`` presents (unverified)."""
    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout_s
    try:
        ipaddress.ip_address(host)
        sni: str | None = None  # SNI carries names only
    except ValueError:
        sni = host
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        # The handshake gets what is left of the same budget, not a fresh one.
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        with context.wrap_socket(sock, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("server presented no certificate")
    return der


def load_pem_file(path: str) -> x509.Certificate:
    """The first certificate of a PEM file (the leaf, in a chain file)."""
    with open(path, "rb") as fh:
        data = fh.read(1 << 20)
    certs = x509.load_pem_x509_certificates(data)
    return certs[0]


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in san.get_values_for_type(x509.DNSName)] + \
        [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def assess(cert: x509.Certificate, source: str, thresholds: Thresholds, now: datetime | None = None) -> Result:
    """Grade ``cert`` by days left: warning under ``certificate_days[0]``, critical under
    ``certificate_days[1]`` and when expired or not yet valid."""
    now = now or datetime.now(UTC)
    not_after = cert.not_valid_after_utc
    not_before = cert.not_valid_before_utc
    days_left = round((not_after - now).total_seconds() / 86400, 2)
    subject = cert.subject.rfc4514_string() or "(empty subject)"
    issuer = cert.issuer.rfc4514_string() or "(empty issuer)"
    found = Findings()
    if days_left < 0:
        found.add("critical", f"expired {-days_left:.1f} days ago ({not_after:%Y-%m-%d %H:%M}Z)")
    elif not_before > now:
        found.add("critical", f"not valid before {not_before:%Y-%m-%d %H:%M}Z")
    else:
        found.grade("days to expiry", days_left, thresholds.certificate_days, lower_is_worse=True)
    when = f"expired {not_after:%Y-%m-%d}" if days_left < 0 else \
        f"expires {not_after:%Y-%m-%d} (in {days_left:.0f} days)"
    headline = f"certificate {subject} from {source}: {when}, issuer {issuer}"
    metrics: dict[str, Any] = {
        "source": source, "subject": subject, "issuer": issuer, "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(), "days_left": days_left, "expired": days_left < 0,
        "self_signed": cert.subject == cert.issuer, "serial": format(cert.serial_number, "x"),
        "names": _names(cert),
    }
    return found.result(headline, metrics)


def check(target: CertificateTarget, thresholds: Thresholds) -> Result:
    """Read the target's certificate (file or server) and grade its expiry."""
    if target.path is not None:
        source = str(target.path)
        try:
            cert = load_pem_file(source)
        except FileNotFoundError:
            reason = f"certificate file {source} not found"
            return Result("critical", reason, {"source": source, "error": reason, "problems": [f"critical: {reason}"]})
        except (OSError, ValueError) as exc:
            reason = f"cannot read a PEM certificate from {source}: {first_line(exc)}"
            return Result("critical", reason, {"source": source, "error": reason, "problems": [f"critical: {reason}"]})
        return assess(cert, source, thresholds)
    assert target.address is not None  # the config model requires exactly one source
    timeout = wait_s(target.timeout_s)
    try:
        der = fetch_der(target.address, timeout)
    except TimeoutError:
        return unreachable(f"TLS {target.address}", f"no TLS handshake within {timeout:g}s",
                           {"source": target.address})
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {first_line(exc)}"
        return unreachable(f"TLS {target.address}", reason, {"source": target.address})
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        reason = f"unparseable certificate: {exc}"
        return Result("critical", f"TLS {target.address}: {reason}",
                      {"source": target.address, "error": reason, "problems": [f"critical: {reason}"]})
    return assess(cert, target.address, thresholds)
