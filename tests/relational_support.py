"""Relational fixtures shared by the relational archiving tests: an orders → order_items → item_notes
schema (ON DELETE CASCADE), and checks that every row of every table is in exactly one place."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from archiver.engine import schema
from archiver.engine.policy import PolicySpec
from tests.engine_support import NOW, archived, source_rows

OLD = NOW - timedelta(days=90)
NEW = NOW - timedelta(days=1)


def spec(table: str = "orders", **kw) -> PolicySpec:
    return PolicySpec(table, date_column="created_at", archive_after_days=30, **{"batch_size": 3, **kw})


def create(engine: sa.Engine, md: sa.MetaData) -> None:
    md.create_all(engine)


def insert(engine: sa.Engine, table: sa.Table, rows: list[dict]) -> None:
    if rows:
        with engine.begin() as conn:
            conn.execute(table.insert(), rows)


def snapshot(engine: sa.Engine, *tables: str) -> dict[str, dict[str, dict]]:
    return {t: source_rows(engine, t) for t in tables}


def archived_rows_of(engine: sa.Engine, table: str) -> list[sa.Row]:
    ar = schema.archived_rows
    with engine.connect() as conn:
        return conn.execute(sa.select(ar).where(ar.c.table_name == table)).all()


def assert_each_row_in_one_place(source: sa.Engine, archive: sa.Engine, original: dict[str, dict[str, dict]]) -> None:
    for table, rows in original.items():
        src, arc = source_rows(source, table), archived(archive, table)
        assert not set(src) & set(arc), f"{table}: rows in both places: {sorted(set(src) & set(arc))}"
        assert set(src) | set(arc) == set(rows), \
            f"{table}: lost {sorted(set(rows) - set(src) - set(arc))}, unknown {sorted((set(src) | set(arc)) - set(rows))}"
        for pk, payload in arc.items():
            assert payload == rows[pk], (table, pk)


def orders_schema() -> tuple[sa.MetaData, sa.Table, sa.Table, sa.Table]:
    md = sa.MetaData()
    orders = sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("created_at", sa.DateTime), sa.Column("note", sa.String(40)))
    items = sa.Table("order_items", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
                     sa.Column("sku", sa.String(20)))
    notes = sa.Table("item_notes", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("item_id", sa.Integer, sa.ForeignKey("order_items.id", ondelete="CASCADE"),
                               nullable=False),
                     sa.Column("body", sa.String(40)))
    return md, orders, items, notes


def fill_orders(engine: sa.Engine, orders: sa.Table, items: sa.Table, notes: sa.Table, n: int = 10,
                old=OLD, new=NEW) -> None:
    """Orders 1..n (every fourth one new), 3 items each, 2 notes on items 0 and 2 of each."""
    insert(engine, orders, [{"id": i, "created_at": old if i % 4 else new, "note": f"order {i}"}
                            for i in range(1, n + 1)])
    insert(engine, items, [{"id": i * 10 + j, "order_id": i, "sku": f"sku-{i}-{j}"}
                           for i in range(1, n + 1) for j in range(3)])
    insert(engine, notes, [{"id": i * 100 + j, "item_id": i * 10 + j, "body": f"note {i}/{j}"}
                           for i in range(1, n + 1) for j in range(3) if j != 1])
