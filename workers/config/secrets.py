"""Secret values that mask themselves in repr, str, logs and JSON.

``Secret.reveal()`` is the only way to the plain value; call it at the last moment
(building a connection), never to build a message.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

MASK = "***"


class Secret:
    """A secret string: shown as ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def masked(self) -> str:
        return MASK if self._value else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.masked!r})"

    def __str__(self) -> str:
        return self.masked

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(
            cls._coerce,
            core_schema.union_schema([core_schema.is_instance_schema(cls), core_schema.str_schema()]),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: str(v)),
        )

    @classmethod
    def _coerce(cls, value: Any) -> Secret:
        return value if isinstance(value, cls) else cls(value)


def mask_url(url: str) -> str:
    """``scheme://user:***@host/db``: the password (if any) replaced by ``***``.

    Also masks ``password=`` in libpq keyword/value DSNs and query strings.
    """
    if "://" not in url:
        parts = []
        for token in url.split():
            key, sep, _ = token.partition("=")
            parts.append(f"{key}={MASK}" if sep and key.lower() == "password" else token)
        return " ".join(parts)
    try:
        split = urlsplit(url)
    except ValueError:
        return MASK
    netloc = split.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _pw = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if sep else f"{userinfo}@{hostport}"
    query = "&".join(
        f"{k}={MASK}" if sensitive_key(k) else f"{k}{s}{v}"
        for k, s, v in (q.partition("=") for q in split.query.split("&") if q)
    )
    return urlunsplit((split.scheme, netloc, split.path, query, split.fragment))


# Query keys whose values are credentials (OAuth tokens, API keys, signed-URL signatures,
# AWS SigV4 and Azure SAS parameters), compared case-insensitively; plus any key ending in
# one of the suffixes (``client_secret``, ``refresh_token``, ``x-api-key``, ...).
SENSITIVE_KEYS = frozenset({
    "password", "pass", "passwd", "pwd", "secret", "token", "access_token", "refresh_token", "id_token",
    "apikey", "api_key", "api-key", "key", "sig", "signature", "auth", "authorization", "credential",
    "credentials", "session", "sessionid", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
    "code", "private_key",
})
_SENSITIVE_SUFFIXES = ("password", "secret", "token", "_key", "-key", "apikey", "signature", "credential")


def sensitive_key(key: str) -> bool:
    """Whether a query (or form) key names a credential."""
    k = key.strip().lower()
    return k in SENSITIVE_KEYS or k.endswith(_SENSITIVE_SUFFIXES)


class SecretUrl(Secret):
    """A URL or DSN that may carry credentials: shown with the password masked."""

    @property
    def masked(self) -> str:
        return mask_url(self._value)

    @property
    def host(self) -> str:
        try:
            return urlsplit(self._value).hostname or ""
        except ValueError:
            return ""


def _pairs(node: Any, given: bool = True) -> list[tuple[str, str]]:
    """(secret value, how it may be shown) for every secret in ``node``: a Secret, a list, a
    pydantic model walked field by field, or a plain string *given* as a secret value (the
    plain strings inside a model are names and hosts, not secrets)."""
    from pydantic import BaseModel

    if isinstance(node, SecretUrl):
        value, out = node.reveal(), [(node.reveal(), node.masked)]
        try:
            password = urlsplit(value).password if "://" in value else None
        except ValueError:
            password = None
        # as written (percent-encoded) and as the server or a tool may echo it (decoded)
        return out + ([(password, MASK), (unquote(password), MASK)] if password else [])
    if isinstance(node, Secret):
        return [(node.reveal(), MASK)]
    if isinstance(node, str):
        return [(node, MASK)] if given else []
    if isinstance(node, list | tuple | set | frozenset):
        return [p for v in node for p in _pairs(v, given)]
    if isinstance(node, BaseModel):
        return [p for k in type(node).model_fields for p in _pairs(getattr(node, k), False)]
    return []


_PASSWORD_KV = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
# key=value in a URL's query anywhere in a text (a library's error message echoing a URL).
_QUERY_PAIR = re.compile(r"([?&;])([A-Za-z0-9_.\-]+)=([^&#\s'\"]*)")
_MIN_SECRET = 3  # shorter values would mangle text without protecting anything


def mask_secrets(text: str, *owners: Any) -> str:
    """``text`` with every secret masked: each secret the owners carry (a config, a target, a
    channel, a ``Secret`` or a plain secret string), every ``password=...`` and every password
    inside a URL. A URL is shown in its masked form; a URL without credentials stays readable.

    The one masking function: task failures, tool stderr, check reasons and alert errors all
    pass through it before they are logged, recorded or shown.
    """
    pairs = {p for owner in owners for p in _pairs(owner)}
    for value, shown in sorted(pairs, key=lambda p: len(p[0]), reverse=True):
        if len(value) >= _MIN_SECRET and value != shown:
            text = text.replace(value, shown)
    text = _PASSWORD_KV.sub(r"\1***", text)
    text = _QUERY_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK}" if sensitive_key(m.group(2)) and m.group(3)
                           else m.group(0), text)
    return _URL_PASSWORD.sub(r"\1***@", text)


class WebhookUrl(SecretUrl):
    """A webhook URL: its path and query are the credential (a Slack incoming webhook is
    its token), so it shows as ``scheme://host[:port]/…`` only."""

    @property
    def masked(self) -> str:
        try:
            parts = urlsplit(self._value)
            host, port = parts.hostname or "", parts.port
        except ValueError:
            return "***"
        host = f"[{host}]" if ":" in host else host
        rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
        return f"{parts.scheme}://{host}{f':{port}' if port else ''}{rest}"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        # Also accept a plain SecretUrl (code building a channel), re-wrapped so it masks this way.
        return core_schema.no_info_after_validator_function(
            lambda v: v if isinstance(v, cls) else cls(v.reveal() if isinstance(v, Secret) else v),
            core_schema.union_schema([core_schema.is_instance_schema(Secret), core_schema.str_schema()]),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: str(v)),
        )
