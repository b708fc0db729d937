"""Helpers shared by the archival engine/job tests: engines, a sample table, invariant checks."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from archiver.engine import schema
from archiver.engine.backends import source_ops_for
from archiver.engine.backends.mysql import MySQLSourceOps
from archiver.engine.backends.postgres import PostgresSourceOps
from archiver.engine.backends.sqlite import SQLiteSourceOps
from archiver.engine.rowcodec import RowEncoder, canonical_pk
from archiver.extensions import db
from archiver.models import ArchivePolicy, ArchiveRun

NOW = datetime(2025, 6, 15, 12, 0, 0, tzinfo=timezone.utc)


@dataclass
class Engines:
    backend: str
    source: sa.Engine
    archive: sa.Engine


def orders_table(md: sa.MetaData | None = None, name: str = "orders") -> sa.Table:
    return sa.Table(
        name, md or sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(20), nullable=False, default="open"),
        sa.Column("amount", sa.Numeric(12, 2), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
    )


def make_orders(engine: sa.Engine, dates: list[datetime | None], name: str = "orders",
                statuses: list[str] | None = None) -> sa.Table:
    """Create ``name`` and insert one row per date (ids 1..n)."""
    table = orders_table(name=name)
    table.metadata.create_all(engine)
    rows = [{"id": i + 1, "created_at": d, "status": (statuses[i] if statuses else "open"),
             "amount": f"{i}.50", "note": f"row {i + 1}"} for i, d in enumerate(dates)]
    if rows:
        with engine.begin() as conn:
            conn.execute(table.insert(), rows)
    return table


def old_dates(n: int, days: int = 100) -> list[datetime]:
    return [NOW - timedelta(days=days, minutes=i) for i in range(n)]


def reflect(engine: sa.Engine, name: str) -> sa.Table:
    """``name`` reflected as the engine reflects it (with its backend's corrections)."""
    return source_ops_for(engine).reflect_table(engine, name)


def source_rows(engine: sa.Engine, name: str) -> dict[str, dict[str, Any]]:
    """source_pk -> generic payload encoding of every source row (what an archived copy must equal)."""
    table = reflect(engine, name)
    enc = RowEncoder(list(table.columns))
    pk_idx = [list(table.columns).index(c) for c in table.primary_key.columns]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table)).all()
    return {canonical_pk([row[i] for i in pk_idx]): enc.payload(row) for row in rows}


def archived(engine: sa.Engine, name: str) -> dict[str, dict[str, Any]]:
    """source_pk -> payload of the table's archived rows (asserts no duplicates)."""
    ar = schema.archived_rows
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ar.c.source_pk, ar.c.payload).where(ar.c.table_name == name)).all()
    out = {r.source_pk: r.payload for r in rows}
    assert len(out) == len(rows), "duplicate archived rows"
    return out


def archived_meta(engine: sa.Engine, name: str) -> dict[str, sa.Row]:
    ar = schema.archived_rows
    with engine.connect() as conn:
        return {r.source_pk: r for r in conn.execute(sa.select(ar).where(ar.c.table_name == name))}


def assert_no_loss(original: dict[str, dict], src: dict[str, dict], arc: dict[str, dict]) -> None:
    """Every original row is in the source or the archive; archived copies equal the originals."""
    assert set(src) | set(arc) == set(original)
    for pk, payload in arc.items():
        assert payload == original[pk], pk


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


#: Run a ``databases``-based test on SQLite only / PostgreSQL only (skipped without TEST_POSTGRES_URL,
#: failed under CI=true: see tests/app_support.py).
sqlite_only = pytest.mark.parametrize("databases", ["sqlite"], indirect=True)
postgres_only = pytest.mark.parametrize("databases", ["postgres"], indirect=True)


# --- app-level helpers (policies and run records in the archive database) -----

def add_policy(app, table: str, **kw) -> None:
    values = {"date_column": "created_at", "archive_after_days": 30, "delete_after_days": 10, "batch_size": 4,
              "enabled": True, **kw}
    with app.app_context():
        db.session.add(ArchivePolicy(table_name=table, **values))
        db.session.commit()


def all_runs(app) -> list[ArchiveRun]:
    with app.app_context():
        runs = list(db.session.execute(sa.select(ArchiveRun).order_by(ArchiveRun.id)).scalars())
        db.session.expunge_all()
        return runs


# --- source ops that record which keys went through the generic encoder (exotic rows) ---

class Recording:
    """Mixin: remember which keys went through the generic encoder (exotic rows)."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.generic_keys: list[tuple] = []

    def generic_payloads(self, conn, plan, keys, records):
        self.generic_keys += keys
        return super().generic_payloads(conn, plan, keys, records)


class RecSQLite(Recording, SQLiteSourceOps):
    pass


class RecPostgres(Recording, PostgresSourceOps):
    pass


class RecMySQL(Recording, MySQLSourceOps):
    pass
