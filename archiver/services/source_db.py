"""The two databases' engines, the source's reflected tables, and write intent on the archive."""
from __future__ import annotations

from typing import ContextManager

import sqlalchemy as sa

from ..engine.connections import writes_expected
from ..extensions import db


def source_engine() -> sa.Engine:
    return db.engines["source"]


def archive_engine() -> sa.Engine:
    return db.engines[None]


def archive_writes_expected() -> ContextManager[None]:
    """The archive transactions this thread begins inside it will write (a request that changes
    something): on SQLite they take the write lock at BEGIN, so a read before the write cannot
    fail when a run commits in between; the other databases need nothing."""
    return writes_expected(archive_engine())


def end_read_transaction() -> None:
    """Commit the session's transaction if it has only read so far (nothing pending is written).

    Before a write in a request that began by reading (an audit record after a read of archived
    rows) or before slow work (bcrypt): on SQLite a read snapshot cannot become a write once a
    run's batch has committed ("database is locked"), and no lock should be held while waiting.
    """
    session = db.session()  # the current Session (the scoped proxy has no in_transaction)
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        session.commit()


def reflect_table(table_name: str) -> sa.Table | None:
    """The source table named exactly ``table_name`` (reflected), or None."""
    engine = source_engine()
    insp = sa.inspect(engine)
    if table_name not in insp.get_table_names():
        return None
    return sa.Table(table_name, sa.MetaData(), autoload_with=engine)


def source_table_names() -> list[str]:
    return sorted(sa.inspect(source_engine()).get_table_names())
