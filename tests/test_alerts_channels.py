"""Each alert channel against a real server on loopback: Slack and webhook over HTTP(S)
(``http.server``), email over SMTP with STARTTLS/implicit TLS and AUTH (aiosmtpd).
No secret may appear in an error, a record or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_alerts_support import (
    LOOPBACK,
    SMTP_PASSWORD,
    SMTP_USER,
    CaptureServer,
    Pki,
    SmtpCapture,
    free_port,
    start_smtp,
)
from workers.alerts.delivery import deliver
from workers.alerts.model import Alert
from workers.alerts.redact import endpoint, secrets_of
from workers.config import AlertChannel, Config, parse_config
from workers.config.secrets import SecretUrl, mask_secrets
from workers.errors import ConfigError

pytest_plugins = ["tests.test_alerts_support"]

ALERT = Alert(task="health.postgres", target="main", severity="critical", previous="ok", kind="problem",
              status="critical", summary="connect failed: timeout after 5s", host="db1",
              at="2025-01-01T12:00:00+00:00")
SLACK_PATH = "/services/T0SECRET1/B0SECRET2/xoxbSecretToken123456789"
HMAC_KEY = "hmac-Key-that-is-secret"


def config_of(*channels: dict[str, Any], attempts: int = 1) -> Config:
    return Config.model_validate({"alerting": {"delivery_attempts": attempts, "backoff_s": 0.01},
                                  "alerts": list(channels)})


def send(cfg: Config, alert: Alert = ALERT) -> list[Any]:
    return deliver(cfg, alert, list(range(len(cfg.alerts))))


# -- slack ----------------------------------------------------------------------------------------
def test_slack_incoming_webhook_payload(http_capture: CaptureServer) -> None:
    cfg = config_of({"kind": "slack", "url": http_capture.url(SLACK_PATH)})
    [d] = send(cfg)
    assert d.delivered and d.attempts == 1
    [req] = http_capture.at(SLACK_PATH)
    assert req.headers["content-type"] == "application/json"
    body = req.json()
    assert body["text"].startswith(":rotating_light: [maintd] CRITICAL: health.postgres[main]")
    assert "connect failed: timeout after 5s" in body["text"] and "host db1" in body["text"]
    assert body["blocks"][0]["text"] == {"type": "mrkdwn", "text": body["text"]}


def test_slack_error_masks_the_webhook_token(http_capture: CaptureServer, caplog: pytest.LogCaptureFixture) -> None:
    http_capture.respond(SLACK_PATH, 404, 404)
    dead = f"http://{LOOPBACK}:{free_port()}{SLACK_PATH}"
    cfg = config_of({"kind": "slack", "name": "gone", "url": http_capture.url(SLACK_PATH)},
                    {"kind": "slack", "name": "dead", "url": dead}, attempts=2)
    with caplog.at_level(logging.DEBUG):
        gone, down = send(cfg)
    assert not gone.delivered and gone.attempts == 2
    assert gone.error == f"slack webhook http://{LOOPBACK}:{http_capture.port}/… answered HTTP 404: boom: internal error"
    assert not down.delivered and "unreachable" in (down.error or "")
    for text in (gone.error, down.error, caplog.text, repr(cfg.alerts[0]), str(cfg.alerts[0].url)):
        for part in ("T0SECRET1", "B0SECRET2", "xoxbSecretToken123456789"):
            assert part not in (text or "")


# -- webhook ----------------------------------------------------------------------------------------
def test_webhook_json_and_hmac_signature(http_capture: CaptureServer) -> None:
    cfg = config_of({"kind": "webhook", "url": http_capture.url("/hook"), "secret": HMAC_KEY},
                    {"kind": "webhook", "name": "unsigned", "url": http_capture.url("/plain")})
    assert all(d.delivered for d in send(cfg))
    [req] = http_capture.at("/hook")
    body = req.json()
    assert {k: body[k] for k in ("task", "target", "severity", "previous", "kind", "status", "summary", "host",
                                 "at")} == {
        "task": "health.postgres", "target": "main", "severity": "critical", "previous": "ok", "kind": "problem",
        "status": "critical", "summary": "connect failed: timeout after 5s", "host": "db1",
        "at": "2025-01-01T12:00:00+00:00"}
    assert body["title"] == "[maintd] CRITICAL: health.postgres[main]"
    assert req.headers["x-maintd-event"] == "problem"
    # verified independently of maintd's code: HMAC-SHA256 over the exact bytes received
    expected = "sha256=" + hmac.new(HMAC_KEY.encode(), req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["x-maintd-signature"], expected)
    wrong = "sha256=" + hmac.new(b"another key", req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-maintd-signature"] != wrong
    [plain] = http_capture.at("/plain")
    assert "x-maintd-signature" not in plain.headers and json.loads(plain.body)["kind"] == "problem"


def test_webhook_redirect_is_a_failure(http_capture: CaptureServer) -> None:
    http_capture.respond("/moved", 302)
    [d] = send(config_of({"kind": "webhook", "url": http_capture.url("/moved")}))
    assert not d.delivered and "answered HTTP 302" in (d.error or "")
    assert len(http_capture.requests) == 1  # not followed


def test_webhook_https_with_private_ca(https_capture: CaptureServer, pki: Pki) -> None:
    url = https_capture.url("/secure/token-in-path-42")
    [untrusted] = send(config_of({"kind": "webhook", "url": url}))
    assert not untrusted.delivered and "CERTIFICATE_VERIFY_FAILED" in (untrusted.error or "")
    assert "token-in-path-42" not in (untrusted.error or "")
    assert https_capture.requests == []
    [trusted] = send(config_of({"kind": "webhook", "url": url, "ca": pki.ca_pem}))
    assert trusted.delivered
    assert https_capture.at("/secure/token-in-path-42")[0].json()["task"] == "health.postgres"


# -- email ------------------------------------------------------------------------------------------
def email_channel(server: SmtpCapture, pki: Pki, **over: Any) -> dict[str, Any]:
    return {"kind": "email", "smtp_host": LOOPBACK, "smtp_port": server.port, "username": SMTP_USER,
            "password": SMTP_PASSWORD, "from_addr": "maintd@example.test", "to": ["ops@example.test", "dba@example.test"],
            "ca": pki.ca_pem, "timeout_s": 5, **over}


@pytest.mark.parametrize(("exclude", "mechanism"), [(("LOGIN",), "PLAIN"), (("PLAIN",), "LOGIN")])
def test_email_starttls_and_auth(pki: Pki, exclude: tuple[str, ...], mechanism: str) -> None:
    server = start_smtp(pki, exclude=exclude)
    try:
        [d] = send(config_of(email_channel(server, pki)))
        assert d.delivered, d.error
        assert server.mechanisms == [mechanism]
        [msg] = server.messages
        [env] = server.envelopes
    finally:
        server.stop()
    assert msg["Subject"] == "[maintd] CRITICAL: health.postgres[main]"
    assert msg["From"] == "maintd@example.test" and msg["To"] == "ops@example.test, dba@example.test"
    assert env.rcpt_tos == ["ops@example.test", "dba@example.test"]
    body = msg.get_payload(decode=True).decode()
    assert "connect failed: timeout after 5s" in body
    assert "Severity: critical (previously ok)" in body and "Target:   main" in body and "Host:     db1" in body
    assert msg["Date"] and msg["Message-ID"].endswith("@db1>")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # it is TLS from the start
def test_email_implicit_tls(pki: Pki) -> None:
    server = start_smtp(pki, implicit_tls=True)
    try:
        [d] = send(config_of(email_channel(server, pki, ssl=True, starttls=False)))
        assert d.delivered, d.error
        assert len(server.messages) == 1
    finally:
        server.stop()


def test_email_failures_name_the_server_not_the_password(smtp_server: SmtpCapture, pki: Pki,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        untrusted, wrong, closed = send(config_of(
            email_channel(smtp_server, pki, name="untrusted", ca=None),
            email_channel(smtp_server, pki, name="wrong", password="Wrong-Pa55word-xyz"),
            email_channel(smtp_server, pki, name="closed", smtp_port=free_port())))
    assert not untrusted.delivered and "CERTIFICATE_VERIFY_FAILED" in (untrusted.error or "")
    assert not wrong.delivered and wrong.error == (
        f"smtp {LOOPBACK}:{smtp_server.port}: authentication as 'alice' refused (535)")
    assert not closed.delivered and "refused" in (closed.error or "").lower()
    assert smtp_server.messages == []
    for text in (untrusted.error, wrong.error, closed.error, caplog.text):
        assert SMTP_PASSWORD not in (text or "") and "Wrong-Pa55word-xyz" not in (text or "")


def test_email_starttls_required_by_the_server(smtp_server: SmtpCapture, pki: Pki) -> None:
    [d] = send(config_of(email_channel(smtp_server, pki, starttls=False, username=None, password=None)))
    assert not d.delivered  # the server requires STARTTLS; maintd does not silently downgrade
    assert smtp_server.messages == []


def test_log_channel(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="maintd.alerts"):
        [d] = send(config_of({"kind": "log"}))
    assert d.delivered
    [rec] = [r for r in caplog.records if r.name == "maintd.alerts"]
    assert rec.levelno == logging.ERROR and rec.getMessage().startswith("[maintd] CRITICAL: health.postgres[main]")


def test_channels_are_tried_in_parallel() -> None:
    sinks = []
    for _ in range(3):  # three endpoints that accept and never answer
        s = socket.socket()
        s.bind((LOOPBACK, 0))
        s.listen(4)
        sinks.append(s)
    try:
        cfg = Config.model_validate({"alerting": {"delivery_attempts": 1, "delivery_deadline_s": 5},
                                     "alerts": [{"kind": "webhook", "name": f"h{i}", "timeout_s": 1,
                                                 "url": f"http://{LOOPBACK}:{s.getsockname()[1]}/"}
                                                for i, s in enumerate(sinks)]})
        started = time.monotonic()
        results = send(cfg)
        elapsed = time.monotonic() - started
    finally:
        for s in sinks:
            s.close()
    assert [d.delivered for d in results] == [False] * 3 and all("timed out" in (d.error or "") for d in results)
    assert elapsed < 2.5  # one timeout, not three in a row


# -- config and redaction ---------------------------------------------------------------------------
def test_config_rules(tmp_path: Path, pki: Pki) -> None:
    body = ('[[alerts]]\nkind = "email"\nsmtp_host = "mail"\nfrom_addr = "a@b"\nto = ["c@d"]\n'
            'username = "u"\npassword = "p"\nstarttls = false\n')
    with pytest.raises(ConfigError, match=r"alerts\[0\].*clear text"):
        parse_config(body, str(tmp_path / "m.toml"), tmp_path)
    (tmp_path / "not.pem").write_text("hello")
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        parse_config('[[alerts]]\nkind = "webhook"\nurl = "https://x/y"\nca_file = "not.pem"\n',
                     str(tmp_path / "m.toml"), tmp_path)
    cfg = parse_config(f'[[alerts]]\nkind = "webhook"\nurl = "https://x/y"\nca_file = "{pki.ca_file}"\n',
                       str(tmp_path / "m.toml"), tmp_path)
    assert cfg.alerts[0].ca == pki.ca_pem.rstrip("\n")
    assert cfg.alerting.delivery_deadline_s == 20


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.slack.com/services/T000/B000/XXXXXXXX", "https://hooks.slack.com/…"),
    ("https://user:pw@alerts.example.com:8443/hook?token=abc", "https://alerts.example.com:8443/…"),
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("http://[::1]:9000/x", "http://[::1]:9000/…"),
])
def test_endpoint_shows_scheme_and_host_only(url: str, shown: str) -> None:
    assert endpoint(SecretUrl(url)) == shown


def test_scrub_removes_every_channel_secret() -> None:
    ch = AlertChannel(kind="webhook", url=SecretUrl("https://u:pw-123456@h.example/p/tok-987654321?k=qs-secret"),
                      secret=HMAC_KEY)
    text = ("GET https://u:pw-123456@h.example/p/tok-987654321?k=qs-secret failed; tok-987654321; "
            f"pw-123456; {HMAC_KEY}; k=qs-secret")
    cleaned = mask_secrets(text, *secrets_of(ch))
    for secret in ("pw-123456", "tok-987654321", HMAC_KEY, "qs-secret"):
        assert secret not in cleaned
    assert cleaned == "GET *** failed; ***; ***; ***; ***"
