"""One HTTP POST for the slack and webhook channels (stdlib ``urllib``).

Why not requests: urllib3 logs the request path at DEBUG, and for a Slack webhook
the path is the token. ``urllib`` logs nothing, honours ``HTTPS_PROXY``/``NO_PROXY``,
and takes an explicit ``SSLContext`` (private CA). Redirects are refused: a webhook
that redirects is misconfigured, and following would turn the POST into a GET.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from typing import Any

from workers.alerts.model import DeliveryError
from workers.alerts.redact import endpoint
from workers.alerts.tls import context
from workers.config.secrets import SecretUrl

_SNIPPET = 200


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError for the 3xx


def post(what: str, url: SecretUrl, body: bytes, headers: dict[str, str], timeout_s: float,
         ca: str | None) -> str:
    """POST ``body``; return the response text. Raises DeliveryError unless 2xx."""
    where = f"{what} {endpoint(url)}"
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context(ca)), _NoRedirect())
    request = urllib.request.Request(url.reveal(), data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=timeout_s) as resp:
            return resp.read(_SNIPPET).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        try:
            text = exc.read(_SNIPPET).decode("utf-8", "replace").strip()
        except (OSError, http.client.HTTPException):
            text = ""
        detail = f": {' '.join(text.split())[:_SNIPPET]}" if text else ""
        raise DeliveryError(f"{where} answered HTTP {exc.code}{detail}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"{where} unreachable: {_reason(exc.reason)}") from None
    except (OSError, http.client.HTTPException) as exc:  # timeouts while reading, resets, bad status lines
        raise DeliveryError(f"{where} failed: {_reason(exc)}") from None


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    text = str(reason).strip() or type(reason).__name__
    return text.splitlines()[0]
