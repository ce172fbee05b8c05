"""One door to PostgreSQL.

Every connection maintd opens goes through ``connect``: it sets
``application_name``, ``connect_timeout``, ``statement_timeout`` and
``lock_timeout``, and translates driver errors into the exception tree with the
DSN's password masked (Patroni's ``postgresql/connection.py`` habit).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from workers.config.secrets import Secret, SecretUrl, mask_url
from workers.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)

# SQLSTATE classes where retrying cannot help.
_PERMANENT_SQLSTATES = ("28", "3D", "42")  # auth, unknown database, syntax/undefined object
_PERMANENT_TEXT = ("password authentication failed", "no password supplied", "does not exist",
                   "role ", "authentication failed", "pg_hba.conf")


def plain_dsn(dsn: SecretUrl | str) -> str:
    """A libpq-acceptable DSN (SQLAlchemy's ``postgresql+psycopg2://`` and ``db+`` prefixes removed)."""
    value = dsn.reveal() if isinstance(dsn, Secret) else dsn
    value = value.removeprefix("db+")
    return value.replace("postgresql+psycopg2://", "postgresql://", 1)


def classify(exc: Exception, dsn: SecretUrl | str, what: str = "connect") -> Exception:
    """Turn a psycopg2 error into TransientError / PermanentError without secrets."""
    masked = dsn.masked if isinstance(dsn, Secret) else mask_url(dsn)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    secret_free = text
    if isinstance(dsn, Secret) and dsn.reveal():
        secret_free = secret_free.replace(dsn.reveal(), masked)
    code = getattr(exc, "pgcode", None) or ""
    message = f"{what} {masked}: {secret_free}"
    if code[:2] in _PERMANENT_SQLSTATES or any(t in text for t in _PERMANENT_TEXT):
        return PermanentError(message)
    return TransientError(message)


def connect(dsn: SecretUrl | str, *, application_name: str, connect_timeout_s: float = 5,
            statement_timeout_s: float | None = None, lock_timeout_s: float | None = None,
            password: Secret | None = None, autocommit: bool = True,
            settings: dict[str, str] | None = None) -> psycopg2.extensions.connection:
    options = [f"-c {name}={value}" for name, value in (settings or {}).items()]
    if statement_timeout_s is not None:
        options.append(f"-c statement_timeout={int(statement_timeout_s * 1000)}")
    if lock_timeout_s is not None:
        options.append(f"-c lock_timeout={int(lock_timeout_s * 1000)}")
    kwargs: dict[str, Any] = {
        "application_name": application_name[:63],
        "connect_timeout": max(1, int(round(connect_timeout_s))),
        # Dead peers are noticed within ~30 s instead of the kernel's 2 hours.
        "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
    }
    if options:
        kwargs["options"] = " ".join(options)
    if password is not None:
        kwargs["password"] = password.reveal()
    try:
        conn = psycopg2.connect(plain_dsn(dsn), **kwargs)
    except psycopg2.Error as exc:
        raise classify(exc, dsn) from None
    conn.autocommit = autocommit
    return conn


@contextmanager
def session(dsn: SecretUrl | str, **kwargs: Any) -> Iterator[psycopg2.extensions.connection]:
    conn = connect(dsn, **kwargs)
    try:
        yield conn
    finally:
        conn.close()


def query(conn: psycopg2.extensions.connection, sql: Any, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(sql, params)
        return [dict(r) for r in cur.fetchall()] if cur.description else []
