"""Column types of the archive schema that differ on PostgreSQL and MySQL/MariaDB, without importing
those dialects' modules until such a database is used.

``JSON().with_variant(JSONB(), "postgresql")`` needs ``sqlalchemy.dialects.postgresql`` (and with it
its drivers' modules) imported when the table is declared, on every run, SQLite ones included. Here
the variant is a stand-in (a ``TypeDecorator``) that makes the dialect's type when that dialect first
compiles or binds it: the DDL, the bind and result processing on that database are the dialect
type's, and the column's own type (what expressions and the ORM see: JSON, String) is unchanged.
Used by ``engine/schema.py`` and ``models/audit.py``; depends on SQLAlchemy only.
"""
from __future__ import annotations

from sqlalchemy import JSON, String
from sqlalchemy.types import TypeDecorator


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
