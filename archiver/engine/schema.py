"""Archive-database tables owned by the engine (SQLAlchemy Core)."""
from __future__ import annotations

from sqlalchemy import (BigInteger, Column, DateTime, Index, Integer, MetaData, SmallInteger, String, Table,
                        UniqueConstraint, text)

# The PostgreSQL and MySQL/MariaDB variants are made when such a database is used (a run on SQLite
# imports neither dialect's modules).
from ..sqltypes import exact_text as _exact_text
from ..sqltypes import json_document, postgresql_where

metadata = MetaData()

_BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
_Payload = json_document()  # JSONB on PostgreSQL
# _exact_text: VARCHAR compared byte for byte (utf8mb4_bin on MySQL/MariaDB, whose default collation
# is case-insensitive: source keys 'a' and 'A' would be one archived row there, the second upsert
# overwriting the first's copy).

archived_rows = Table(
    "archived_rows", metadata,
    Column("id", _BigIntPK, primary_key=True, autoincrement=True),
    Column("table_name", _exact_text(255), nullable=False),
    # Canonical text of the source primary key: "42", or '["eu", 42]' for composite keys.
    Column("source_pk", _exact_text(512), nullable=False),
    Column("payload", _Payload, nullable=False),
    # The policy's date column value, normalised to UTC.
    Column("row_date", DateTime(timezone=True), nullable=True),
    Column("archived_at", DateTime(timezone=True), nullable=False),
    Column("run_id", BigInteger, nullable=True),
    # A row that moved with a parent row (a child table's row): the archived row of the object's
    # root (the policy table's row it moved with), and how far below it (1 = a direct child).
    # NULL and 0 for a row archived by its own table's policy.
    Column("root_id", BigInteger, nullable=True),
    Column("depth", SmallInteger, nullable=False, server_default=text("0")),
    UniqueConstraint("table_name", "source_pk", name="uq_archived_rows_table_pk"),
    Index("ix_archived_rows_table_archived_at", "table_name", "archived_at"),
    Index("ix_archived_rows_table_id", "table_name", "id"),
    Index("ix_archived_rows_table_row_date", "table_name", "row_date"),
    # Only rows that moved with a parent have a root (a partial index where the database has them).
    # (On PostgreSQL through sqltypes.postgresql_where: postgresql_where= would import that dialect.)
    Index("ix_archived_rows_root_id", "root_id", sqlite_where=text("root_id IS NOT NULL"),
          info=postgresql_where("root_id IS NOT NULL")),
)

# One runner per table across processes and hosts (see engine/lease.py): archive, purge and restore
# of a table exclude each other. On PostgreSQL and MySQL/MariaDB the lock itself is a session-level
# advisory lock that dies with its connection; this row only says who holds it. On SQLite the row is
# the lock: a holder (host, pid) with a heartbeat, taken over when that process is gone or silent.
table_locks = Table(
    "table_locks", metadata,
    Column("table_name", String(255), primary_key=True),
    Column("holder", String(255), nullable=False),  # host:pid:random, unique per acquisition
    Column("kind", String(16), nullable=False),      # archive | purge | restore
    Column("run_id", BigInteger, nullable=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)
