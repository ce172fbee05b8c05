"""Configured table and column names → relations in the target database.

Names in the config are written as stored, unquoted: ``audit_logs``,
``public.audit_logs`` or ``Weird "Tab;le"``. A name is tried whole (any schema, the
one on the search path first), then split at each dot into schema and table; exactly
one relation must match. Statements always quote through ``sql.Identifier``.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2.extensions
from psycopg2 import sql

from workers.doors import postgres as db
from workers.errors import PermanentError

TABLE_KINDS = ("r", "p", "m")  # table, partitioned table, materialized view


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str
    oid: int

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


class UnknownObject(PermanentError):
    """A configured table or column does not exist; the message names target, field and object."""


def _candidates(text: str) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = [(None, text)]
    out += [(text[:i], text[i + 1:]) for i, ch in enumerate(text) if ch == "." and 0 < i < len(text) - 1]
    return out


def resolve(conn: psycopg2.extensions.connection, target: str, field: str, text: str,
            kinds: tuple[str, ...] = TABLE_KINDS) -> Relation:
    """The one relation ``text`` names, or ``UnknownObject`` naming target, field and table."""
    found: list[dict[str, object]] = []
    for schema, name in _candidates(text):
        found += db.query(conn, (
            "SELECT c.oid, n.nspname, c.relname, pg_table_is_visible(c.oid) AS visible"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relname = %(name)s AND c.relkind = ANY(%(kinds)s)"
            " AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'"),
            {"name": name, "schema": schema, "kinds": list(kinds)})
    unique = {int(r["oid"]): r for r in found}  # type: ignore[call-overload]
    rows = list(unique.values())
    if len(rows) > 1:
        visible = [r for r in rows if r["visible"]]
        rows = visible if len(visible) == 1 else rows
    if not rows:
        database = db.query(conn, "SELECT current_database() AS d")[0]["d"]
        raise UnknownObject(f"postgres target {target!r}: {field}: table {text!r} does not exist"
                            f" in database {database!r}")
    if len(rows) > 1:
        names = ", ".join(sorted(f"{r['nspname']}.{r['relname']}" for r in rows))
        raise UnknownObject(f"postgres target {target!r}: {field}: table {text!r} is ambiguous ({names});"
                            " write it as schema.table")
    row = rows[0]
    return Relation(str(row["nspname"]), str(row["relname"]), int(row["oid"]))  # type: ignore[call-overload]


def resolve_all(conn: psycopg2.extensions.connection, target: str, field: str, names: list[str]) -> list[Relation]:
    return [resolve(conn, target, field, n) for n in names]


def columns(conn: psycopg2.extensions.connection, rel: Relation) -> list[dict[str, object]]:
    """User columns in order: name, type, generated flag."""
    return db.query(conn, (
        "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,"
        " a.attgenerated <> '' AS generated"
        " FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"),
        (rel.oid,))


def require_column(conn: psycopg2.extensions.connection, target: str, field: str, rel: Relation,
                   column: str) -> dict[str, object]:
    for col in columns(conn, rel):
        if col["name"] == column:
            return col
    raise UnknownObject(f"postgres target {target!r}: {field}: column {column!r} does not exist in table {str(rel)!r}")
