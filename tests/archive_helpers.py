"""Put rows into ``archived_rows`` the way the archival engine stores them.

Tests of the read/export/restore API use these instead of running the
engine: payloads come from ``rowcodec.encode_row``, keys from
``canonical_pk``, row dates from ``to_utc_datetime``.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Sequence

import sqlalchemy as sa

from archiver.engine.backends import source_ops_for

from archiver.engine.rowcodec import canonical_pk, encode_row, to_utc_datetime
from archiver.engine.schema import archived_rows

BASE_TIME = datetime(2024, 1, 1, tzinfo=timezone.utc)


def archived_record(table_name: str, row: Mapping[str, Any], pk: Sequence[str] = ("id",),
                    date_column: str | None = None, archived_at: datetime | None = None,
                    run_id: int | None = None) -> dict[str, Any]:
    """The ``archived_rows`` values for one source row."""
    return {
        "table_name": table_name,
        "source_pk": canonical_pk([row[k] for k in pk]),
        "payload": encode_row(row),
        "row_date": to_utc_datetime(row.get(date_column)) if date_column else None,
        "archived_at": archived_at or BASE_TIME,
        "run_id": run_id,
    }


def insert_archived(archive_engine: sa.Engine, records: Iterable[Mapping[str, Any]]) -> list[int]:
    """Insert prepared records in one executemany; returns the new ids in insertion order."""
    records = list(records)
    if not records:
        return []
    with archive_engine.begin() as conn:
        before = conn.execute(sa.select(sa.func.max(archived_rows.c.id))).scalar() or 0
        conn.execute(archived_rows.insert(), records)
        ids = conn.execute(sa.select(archived_rows.c.id).where(archived_rows.c.id > before)
                           .order_by(archived_rows.c.id)).scalars().all()
    assert len(ids) == len(records)
    return list(ids)


def synthetic_rows(n: int, start: int = 1) -> list[dict[str, Any]]:
    """``n`` source-like rows with ids ``start..start+n-1`` and a spread of value types."""
    return [{
        "id": i,
        "name": f"row {i}",
        "amount": f"{i}.{i % 100:02d}",
        "ratio": i / 7,
        "active": i % 2 == 0,
        "note": None if i % 5 == 0 else f'say "hi", {i}\nbye',
        "created_at": (BASE_TIME - timedelta(days=400) + timedelta(minutes=i)).isoformat(),
    } for i in range(start, start + n)]


def archive_synthetic(archive_engine: sa.Engine, table_name: str, n: int, start: int = 1,
                      archived_at: datetime | None = None, step: timedelta | None = None) -> list[int]:
    """Archive ``n`` synthetic rows of ``table_name``; archived_at grows by ``step`` per row if given."""
    records = []
    for k, row in enumerate(synthetic_rows(n, start)):
        at = (archived_at or BASE_TIME) + (step * k if step else timedelta(0))
        records.append(archived_record(table_name, row, date_column="created_at", archived_at=at))
    return insert_archived(archive_engine, records)


def archive_from_source(source_engine: sa.Engine, archive_engine: sa.Engine, table_name: str, *,
                        date_column: str | None = None, where: sa.ColumnElement[bool] | None = None,
                        archived_at: datetime | None = None) -> tuple[list[int], list[dict[str, Any]]]:
    """Move rows of a real source table into the archive (encode, insert, then delete from source).

    Returns the new archive ids and the original rows as read from the source.
    """
    table = source_ops_for(source_engine).reflect_table(source_engine, table_name)
    pk = [c.name for c in table.primary_key.columns]
    stmt = sa.select(table)
    if where is not None:
        stmt = stmt.where(where)
    with source_engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(stmt.order_by(*table.primary_key.columns)).mappings()]
    ids = insert_archived(archive_engine, [archived_record(table_name, r, pk, date_column, archived_at)
                                           for r in rows])
    with source_engine.begin() as conn:
        for r in rows:
            conn.execute(sa.delete(table).where(*[table.c[k] == r[k] for k in pk]))
    return ids, rows


def source_rows(source_engine: sa.Engine, table_name: str) -> list[dict[str, Any]]:
    """Every row of a source table, in primary-key order."""
    table = source_ops_for(source_engine).reflect_table(source_engine, table_name)
    with source_engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns)).mappings()]


def archived_ids(archive_engine: sa.Engine, table_name: str) -> list[int]:
    with archive_engine.connect() as conn:
        return list(conn.execute(sa.select(archived_rows.c.id).where(archived_rows.c.table_name == table_name)
                                 .order_by(archived_rows.c.id)).scalars())


def add_policy(app, table_name: str, **fields: Any) -> None:
    """Create an archive policy row directly (the /config API is another issue's)."""
    from archiver.extensions import db
    from archiver.models import ArchivePolicy

    values = {"date_column": "created_at", "archive_after_days": 30, "delete_after_days": 365,
              "enabled": True, **fields}
    with app.app_context():
        db.session.add(ArchivePolicy(table_name=table_name, **values))
        db.session.commit()


def known_tables(app, *names: str) -> None:
    """Make tables "exist" for grants (a grant to an unknown table is refused): a policy row each."""
    for name in names:
        add_policy(app, name)
