"""Masking for what a snapshot keeps: log lines, process command lines, query text.

Every string passes ``workers.config.secrets.mask_secrets`` (the configured secrets,
``password=…``, passwords inside URLs); on top of that, values of secret-looking keys
(``token: …``, ``"api_key": "…"``, ``--password …``, ``Authorization: Bearer …``) and, in
SQL text, every string literal (``mask_literals`` of ``postgres.long_queries``).
"""

from __future__ import annotations

import re
from typing import Any

from tasks.core.postgres.long_queries import mask_literals
from workers.config.secrets import mask_secrets

_KEY = r"(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|client[_-]?secret|credentials?)"
_KEYED = re.compile(rf"(?i)(\b\w*{_KEY}[\"']?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"'}}]+)")
_FLAG = re.compile(rf"(?i)(\s--?{_KEY}(?:[= ]))(\S+)")
_AUTH = re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*(?:(?:bearer|basic|token|digest)\s+)?)[^\s,;\"']+")
_SQL = re.compile(r"(?i)\b(?:statement|execute \S+|detail|parameters|query)\s*:|\b(?:select|insert|update|delete|"
                  r"alter|create|drop|copy|with)\s.*\b(?:from|into|set|values|role|user|table|as)\b")


def mask_text(text: str, *owners: Any, sql: bool | None = None) -> str:
    """``text`` with secrets masked; SQL literals too when it looks like SQL (or ``sql``)."""
    text = mask_secrets(text, *owners)
    text = _KEYED.sub(r"\1***", text)
    text = _FLAG.sub(r"\1***", text)
    text = _AUTH.sub(r"\1***", text)
    if sql or (sql is None and _SQL.search(text)):
        text = mask_literals(text)
    return text


def mask_query(query: str | None, *owners: Any, limit: int = 1000) -> str:
    """A query from pg_stat_activity: literals blanked, whitespace folded, bounded."""
    return mask_text(" ".join((query or "").split()), *owners, sql=True)[:limit]


def mask_tree(node: Any, *owners: Any) -> Any:
    """Every string of a snapshot (dict keys too) through ``mask_secrets``: the last net."""
    if isinstance(node, str):
        return mask_secrets(node, *owners)
    if isinstance(node, dict):
        return {mask_tree(k, *owners): mask_tree(v, *owners) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [mask_tree(v, *owners) for v in node]
    return node
