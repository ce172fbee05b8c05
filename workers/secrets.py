"""Secret values that mask themselves in repr, str, logs and JSON.

``Secret.reveal()`` is the only way to the plain value; call it at the last moment
(building a connection), never to build a message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
        f"{k}={MASK}" if k.lower() in ("password", "pass", "secret", "token") else f"{k}{s}{v}"
        for k, s, v in (q.partition("=") for q in split.query.split("&") if q)
    )
    return urlunsplit((split.scheme, netloc, split.path, query, split.fragment))


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


def _pairs(node: Any) -> list[tuple[str, str]]:
    """(secret value, how it may be shown) for every secret in ``node`` (a Secret, a list,
    or a pydantic model walked field by field)."""
    from pydantic import BaseModel

    if isinstance(node, SecretUrl):
        value, out = node.reveal(), [(node.reveal(), node.masked)]
        try:
            password = urlsplit(value).password if "://" in value else None
        except ValueError:
            password = None
        return out + ([(password, MASK)] if password else [])
    if isinstance(node, Secret):
        return [(node.reveal(), MASK)]
    if isinstance(node, list | tuple):
        return [p for v in node for p in _pairs(v)]
    if isinstance(node, BaseModel):
        return [p for k in type(node).model_fields for p in _pairs(getattr(node, k))]
    return []


def mask_secrets(text: str, *owners: Any) -> str:
    """``text`` with every secret the owners carry masked: a URL as its masked form (its
    password as ``***``), a plain secret as ``***``; a URL without credentials stays readable."""
    pairs = {p for owner in owners for p in _pairs(owner)}
    for value, shown in sorted(pairs, key=lambda p: len(p[0]), reverse=True):
        if len(value) >= 4 and value != shown:
            text = text.replace(value, shown)
    return text
