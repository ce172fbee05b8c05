"""health.certificates's check: PEM files and TLS servers on loopback presenting valid,
expiring and expired certificates; a closed port and a silent server."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from tasks.core.health import certificates as cc
from tests.test_health_support import (
    SilentServer,
    TlsServer,
    closed_port,
    make_certificate,
    write_pair,
)
from workers.config import CertificateTarget, Thresholds

CASES = [(90, "ok", "expires"), (5, "critical", "days to expiry"), (-3, "critical", "expired 3.0 days ago")]


def file_target(path: Path) -> CertificateTarget:
    return CertificateTarget.model_validate({"name": "web", "path": str(path), "host": "testhost"})


def address_target(address: str, **kw: object) -> CertificateTarget:
    return CertificateTarget.model_validate({"name": "web", "address": address, **kw})


@pytest.mark.parametrize(("days", "status", "text"), CASES)
def test_pem_file(tmp_path: Path, days: float, status: str, text: str) -> None:
    cert, _ = write_pair(tmp_path, "site", days)
    result = cc.check(file_target(cert), Thresholds())
    assert result.status == status, result.summary
    assert text in result.summary
    m = result.metrics
    assert m["subject"] == "CN=health.test" and m["self_signed"] is True and m["source"] == str(cert)
    assert m["expired"] is (days < 0) and abs(m["days_left"] - days) < 0.1
    assert "health.test" in m["names"] and "127.0.0.1" in m["names"]


@pytest.mark.parametrize(("days", "status", "text"), CASES)
def test_tls_server(tmp_path: Path, days: float, status: str, text: str) -> None:
    cert, key = write_pair(tmp_path, "srv", days)
    with TlsServer(cert, key) as server:
        result = cc.check(address_target(server.address), Thresholds())
    assert result.status == status, result.summary
    assert text in result.summary and result.metrics["source"] == server.address
    assert result.metrics["not_after"] == x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc.isoformat()


def test_expiring_in_twenty_days_warns(tmp_path: Path) -> None:
    cert, _ = write_pair(tmp_path, "soon", 20)
    result = cc.check(file_target(cert), Thresholds())
    assert result.status == "warning" and "days to expiry 20 < 30" in result.summary


def test_chain_file_reports_the_leaf(tmp_path: Path) -> None:
    leaf, _ = make_certificate(5, common_name="leaf.test")
    other, _ = make_certificate(900, common_name="ca.test")
    (tmp_path / "chain.pem").write_bytes(leaf + other)
    result = cc.check(file_target(tmp_path / "chain.pem"), Thresholds())
    assert result.status == "critical" and result.metrics["subject"] == "CN=leaf.test"


def test_missing_and_garbage_files_are_critical(tmp_path: Path) -> None:
    missing = cc.check(file_target(tmp_path / "none.pem"), Thresholds())
    assert missing.status == "critical" and "not found" in missing.summary
    (tmp_path / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
    junk = cc.check(file_target(tmp_path / "junk.pem"), Thresholds())
    assert junk.status == "critical" and "cannot read a PEM certificate" in junk.summary


def test_closed_port_is_critical_at_once() -> None:
    started = time.monotonic()
    result = cc.check(address_target(f"127.0.0.1:{closed_port()}"), Thresholds())
    assert time.monotonic() - started < 3
    assert result.status == "critical" and "unreachable: Connection refused" in result.summary


def test_silent_server_is_critical_within_timeout() -> None:
    with SilentServer() as server:
        started = time.monotonic()
        result = cc.check(address_target(server.address, timeout_s=1), Thresholds())
        elapsed = time.monotonic() - started
    assert result.status == "critical" and "no TLS handshake within 1s" in result.summary, result.summary
    assert 0.9 <= elapsed < 3, elapsed


def test_not_yet_valid_is_critical() -> None:
    pem, _ = make_certificate(400, valid_from_days=10)
    cert = x509.load_pem_x509_certificate(pem)
    result = cc.assess(cert, "x", Thresholds())
    assert result.status == "critical" and "not valid before" in result.summary


@pytest.mark.parametrize(("days_left", "status"), [
    (365, "ok"), (30.01, "ok"), (29.9, "warning"), (7.5, "warning"), (7.0, "warning"),
    (6.9, "critical"), (0.5, "critical"), (-0.01, "critical"), (-400, "critical"),
])
def test_grading_by_days_left(days_left: float, status: str) -> None:
    cert = x509.load_pem_x509_certificate(make_certificate(1000)[0])
    now = cert.not_valid_after_utc - timedelta(days=days_left)
    result = cc.assess(cert, "x", Thresholds(), now=now)
    assert result.status == status, result.summary
    assert result.metrics["expired"] is (days_left < 0)


def test_custom_thresholds() -> None:
    cert = x509.load_pem_x509_certificate(make_certificate(1000)[0])
    now = cert.not_valid_after_utc - timedelta(days=45)
    assert cc.assess(cert, "x", Thresholds(certificate_days=(60, 14)), now=now).status == "warning"
