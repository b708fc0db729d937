"""Which tables exist for the service: the source's tables (with what a policy needs to know about
them), tables with a policy, and tables with archived rows.

**A table exists** when it is a table of the source database, or has a policy, or has archived rows.
Grants (``PUT /users/{id}/permissions``, ``POST /users``) are refused for any other name, so a typo
cannot create a grant that silently shows nothing; a table dropped from the source stays grantable
while its archive is kept.
"""
from __future__ import annotations

from typing import Any, Iterable

import sqlalchemy as sa

from ..engine.backends import source_ops_for
from ..engine.errors import DatabaseError
from ..engine.schema import archived_rows
from ..errors import Unavailable
from ..extensions import db
from ..models import ArchivePolicy
from .source_db import source_engine

_C = archived_rows.c

#: Column names preferred as a policy's date column, best first (then any other date/time column).
DATE_COLUMN_NAMES = ("created_at", "created", "created_on", "inserted_at", "updated_at", "date", "timestamp")
#: On SQLite (no date type), TEXT columns named like this may hold ISO 8601 dates.
_TEXT_DATE_SUFFIXES = ("_at", "_on", "_date", "_time", "date", "time")


def _is_date_type(col_type: sa.types.TypeEngine) -> bool:
    return isinstance(col_type, (sa.Date, sa.DateTime))


def suggest_date_column(columns: list[dict[str, Any]], text_dates: bool) -> str | None:
    """The column a new policy would most likely use: a DATE/DATETIME/TIMESTAMP column, preferring
    the usual names (``created_at`` first); on SQLite, a TEXT column with a date-like name too."""
    candidates = [c for c in columns if c["is_date"]]
    if not candidates and text_dates:
        candidates = [c for c in columns if c["type"].upper().startswith(("TEXT", "VARCHAR", "CHAR"))
                      and c["name"].lower().endswith(_TEXT_DATE_SUFFIXES)]
    if not candidates:
        return None
    by_name = {c["name"].lower(): c["name"] for c in candidates}
    for preferred in DATE_COLUMN_NAMES:
        if preferred in by_name:
            return by_name[preferred]
    return candidates[0]["name"]


def source_tables() -> list[dict[str, Any]]:
    """Every table of the source's default schema: columns (name, type, nullable, primary key),
    primary key, suggested date column, and whether it has a policy and archived rows."""
    engine = source_engine()
    try:
        insp = sa.inspect(engine)
        names = sorted(insp.get_table_names())
        columns_by_table = insp.get_multi_columns() if names else {}
        pks = insp.get_multi_pk_constraint() if names else {}
    except sa.exc.SQLAlchemyError:
        raise Unavailable("Source database unreachable", {"failed": ["source"]}) from None
    policies = set(db.session.execute(sa.select(ArchivePolicy.table_name)).scalars())
    archived = dict(db.session.execute(
        sa.select(_C.table_name, sa.func.count()).group_by(_C.table_name)).all())
    text_dates = source_ops_for(engine).capabilities.text_dates  # a text column may hold the dates
    out = []
    for (_schema, name), cols in sorted(columns_by_table.items(), key=lambda kv: kv[0][1]):
        pk = list((pks.get((_schema, name)) or {}).get("constrained_columns") or [])
        columns = [{"name": c["name"], "type": _type_name(c["type"]), "nullable": bool(c.get("nullable", True)),
                    "primary_key": c["name"] in pk, "is_date": _is_date_type(c["type"])} for c in cols]
        out.append({"name": name, "primary_key": pk,
                    "suggested_date_column": suggest_date_column(columns, text_dates),
                    "columns": [{k: v for k, v in c.items() if k != "is_date"} for c in columns],
                    "has_policy": name in policies, "archived_rows": int(archived.get(name, 0))})
    return out


def _type_name(col_type: sa.types.TypeEngine) -> str:
    try:
        return str(col_type.compile())
    except Exception:  # noqa: BLE001 - a type SQLAlchemy cannot render generically
        return type(col_type).__name__.upper()


def unknown_tables(names: Iterable[str]) -> list[str]:
    """Those of ``names`` that do not exist (see the module's definition), sorted."""
    wanted = sorted(set(names))
    if not wanted:
        return []
    known = set(db.session.execute(
        sa.select(ArchivePolicy.table_name).where(ArchivePolicy.table_name.in_(wanted))).scalars())
    known |= set(db.session.execute(
        sa.select(sa.distinct(_C.table_name)).where(_C.table_name.in_(wanted))).scalars())
    rest = [n for n in wanted if n not in known]
    if not rest:
        return []
    try:
        in_source = set(sa.inspect(source_engine()).get_table_names())
    except (sa.exc.SQLAlchemyError, DatabaseError):
        raise Unavailable("Source database unreachable: cannot check that the tables exist",
                          {"failed": ["source"]}) from None
    return [n for n in rest if n not in in_source]


def known_table_names() -> list[str]:
    """Every table that exists for grants: source tables (when the source answers), tables with a
    policy and tables with archived rows, sorted."""
    names = set(db.session.execute(sa.select(ArchivePolicy.table_name)).scalars())
    names |= set(db.session.execute(sa.select(sa.distinct(_C.table_name))).scalars())
    try:
        names |= set(sa.inspect(source_engine()).get_table_names())
    except (sa.exc.SQLAlchemyError, DatabaseError):
        pass  # the source is down: the tables the archive knows are still listed
    return sorted(names)
