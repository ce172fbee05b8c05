"""Channel ``email``: SMTP with STARTTLS (or implicit TLS) and optional auth."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from workers.alerts.model import Alert
from workers.config_model import AlertChannel


def message(channel: AlertChannel, alert: Alert) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = alert.title
    msg["From"] = channel.from_addr or ""
    msg["To"] = ", ".join(channel.to)
    msg.set_content(
        f"{alert.text}\n\nTask: {alert.task}\nTarget: {alert.target}\nSeverity: {alert.severity}"
        f" (previously {alert.previous or 'unknown'})\nHost: {alert.host}\nAt: {alert.at}\n"
    )
    return msg


def send(channel: AlertChannel, alert: Alert) -> None:
    assert channel.smtp_host
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if channel.ssl:
        smtp = smtplib.SMTP_SSL(channel.smtp_host, channel.smtp_port, timeout=channel.timeout_s, context=context)
    else:
        smtp = smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=channel.timeout_s)
    with smtp:
        if channel.starttls and not channel.ssl:
            smtp.starttls(context=context)
        if channel.username:
            smtp.login(channel.username, channel.password.reveal() if channel.password else "")
        smtp.send_message(message(channel, alert))
