"""Channel ``email``: SMTP with STARTTLS (default) or implicit TLS, optional AUTH.

Certificates are always verified (``ca`` trusts a private CA); credentials are only
sent over TLS (the config refuses ``username`` without ``starttls`` or ``ssl``).
"""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formatdate, make_msgid

from workers.alerts.model import Alert, DeliveryError
from workers.alerts.tls import context
from workers.config import AlertChannel

logger = logging.getLogger(__name__)


def message(channel: AlertChannel, alert: Alert) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = alert.title
    msg["From"] = channel.from_addr or ""
    msg["To"] = ", ".join(channel.to)
    msg["Date"] = _date(alert.at)
    # An explicit domain: make_msgid() would otherwise resolve the FQDN (DNS, no timeout).
    msg["Message-ID"] = make_msgid("maintd", domain=alert.host or "maintd.invalid")
    previous = f" (previously {alert.previous})" if alert.previous else ""
    msg.set_content(
        f"{alert.text}\n\n"
        f"Kind:     {alert.kind}\n"
        f"Task:     {alert.task}\n"
        f"Target:   {alert.target or '-'}\n"
        f"Severity: {alert.severity}{previous}\n"
        f"Status:   {alert.status}\n"
        f"Host:     {alert.host}\n"
        f"At:       {alert.at}\n"
        + (f"Incident: {alert.incident} (snapshot: maintd incidents show {alert.incident})\n" if alert.incident else "")
        + f"\n{alert.summary}\n"
    )
    if alert.html is not None:  # a report: readable inline, and kept as a file
        msg.add_alternative(alert.html, subtype="html")
        msg.add_attachment(alert.html.encode("utf-8"), maintype="text", subtype="html",
                           filename=alert.attachment_name or "report.html")
    return msg


def _date(iso: str) -> str:
    try:
        return format_datetime(datetime.fromisoformat(iso))
    except ValueError:
        return formatdate(usegmt=True)


def send(channel: AlertChannel, alert: Alert, timeout_s: float) -> None:
    assert channel.smtp_host  # validated by AlertChannel
    where = f"smtp {channel.smtp_host}:{channel.smtp_port}"
    tls = context(channel.ca)
    try:
        smtp: smtplib.SMTP
        if channel.ssl:
            smtp = smtplib.SMTP_SSL(channel.smtp_host, channel.smtp_port, timeout=timeout_s, context=tls)
        else:
            smtp = smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=timeout_s)
        with smtp:
            if channel.starttls and not channel.ssl:
                smtp.starttls(context=tls)
            if channel.username:
                smtp.login(channel.username, channel.password.reveal() if channel.password else "")
            refused = smtp.send_message(message(channel, alert))
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"{where}: authentication as {channel.username!r} refused ({exc.smtp_code})") from None
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryError(f"{where}: {type(exc).__name__} {exc.smtp_code} {' '.join(text.split())}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"{where}: every recipient refused: {', '.join(exc.recipients)}") from None
    except TimeoutError:
        raise DeliveryError(f"{where}: timed out after {timeout_s:.0f}s") from None
    except (smtplib.SMTPException, OSError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeliveryError(f"{where}: {text}") from None
    if refused:
        # Partly delivered: retrying would duplicate it for the others, so only say so.
        logger.warning("alert email via %s: recipients refused: %s", where, ", ".join(refused))
