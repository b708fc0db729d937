"""Access to the source database: its engine and reflected tables."""
from __future__ import annotations

import sqlalchemy as sa

from ..extensions import db


def source_engine() -> sa.Engine:
    return db.engines["source"]


def archive_engine() -> sa.Engine:
    return db.engines[None]


def reflect_table(table_name: str) -> sa.Table | None:
    """The source table named exactly ``table_name`` (reflected), or None."""
    engine = source_engine()
    insp = sa.inspect(engine)
    if table_name not in insp.get_table_names():
        return None
    return sa.Table(table_name, sa.MetaData(), autoload_with=engine)


def source_table_names() -> list[str]:
    return sorted(sa.inspect(source_engine()).get_table_names())
