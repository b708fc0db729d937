"""Column types (and a partial index) of the archive schema that differ on PostgreSQL and MySQL/MariaDB,
without importing those dialects' modules until such a database is used.

``JSON().with_variant(JSONB(), "postgresql")`` needs ``sqlalchemy.dialects.postgresql`` (and with it
its drivers' modules) imported when the table is declared, on every run, SQLite ones included. Here
the variant is a stand-in (a ``TypeDecorator``) that makes the dialect's type when that dialect first
compiles or binds it: the DDL, the bind and result processing on that database are the dialect
type's, and the column's own type (what expressions and the ORM see: JSON, String) is unchanged.

A partial index's ``postgresql_where=`` would import the PostgreSQL dialect too (SQLAlchemy loads a
dialect to validate its keyword arguments), so :func:`postgresql_where` puts the predicate in the
index's ``info`` instead, and the CREATE INDEX that PostgreSQL's compiler writes gets it appended
(PostgreSQL's compiler writes ``WHERE`` last, so the DDL is the same text). Alembic's comparison of
indexes does not read a predicate, so the migrations, which spell ``postgresql_where`` out, still
match.

Used by ``engine/schema.py`` and ``models/audit.py``; depends on SQLAlchemy only.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex
from sqlalchemy.types import TypeDecorator

#: ``Index.info`` key: the predicate (SQL text) of an index that is partial on PostgreSQL.
_POSTGRESQL_WHERE = "archiver.postgresql_where"


class _PostgresJSONB(TypeDecorator):
    """PostgreSQL's JSONB, made when a PostgreSQL dialect needs it."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect):
        from sqlalchemy.dialects.postgresql import JSONB

        return dialect.type_descriptor(JSONB())


class _MySQLBinaryVarchar(TypeDecorator):
    """MySQL/MariaDB ``VARCHAR(n) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin``, made when such a
    dialect needs it."""

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect):
        from sqlalchemy.dialects import mysql

        return dialect.type_descriptor(mysql.VARCHAR(self.length, charset="utf8mb4", collation="utf8mb4_bin"))


def json_document() -> JSON:
    """JSON, stored as JSONB on PostgreSQL (JSON elsewhere; on MariaDB LONGTEXT with a json_valid() check)."""
    return JSON().with_variant(_PostgresJSONB(), "postgresql")


def exact_text(length: int) -> String:
    """VARCHAR compared byte for byte: MySQL/MariaDB's default collation is case-insensitive, so
    source keys 'a' and 'A' would be one archived row there (utf8mb4_bin on those; VARCHAR elsewhere)."""
    return String(length).with_variant(_MySQLBinaryVarchar(length), "mysql", "mariadb")


def postgresql_where(predicate: str) -> dict[str, Any]:
    """``Index(…, info=postgresql_where("col IS NOT NULL"))``: on PostgreSQL the index is partial,
    ``CREATE INDEX … WHERE col IS NOT NULL`` (as ``postgresql_where=text(…)`` makes it)."""
    return {_POSTGRESQL_WHERE: predicate}


@compiles(CreateIndex, "postgresql")
def _create_index_on_postgresql(create: CreateIndex, compiler, **kw) -> str:
    sql = compiler.visit_create_index(create, **kw)
    predicate = create.element.info.get(_POSTGRESQL_WHERE)
    return sql if predicate is None else f"{sql} WHERE {predicate}"
