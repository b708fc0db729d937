"""Filtering archived rows by payload fields (``where``) and sorting them by date (``sort=row_date``).

A real source table with typed columns is archived (as the engine stores rows), then filtered through
GET /archives/{table}?where=…, the export and restore: every backend, the same criteria parser as
policies, values compared by the column's type (decimals by value, dates as dates).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from tests.archive_helpers import archive_from_source, archived_ids


def make_orders(source_engine, n: int = 12) -> None:
    meta = sa.MetaData()
    orders = sa.Table("orders", meta,
                      sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("status", sa.String(20), nullable=False),
                      sa.Column("amount", sa.Numeric(10, 2)),
                      sa.Column("paid", sa.Boolean),
                      sa.Column("due", sa.Date),
                      sa.Column("created_at", sa.DateTime, nullable=False))
    meta.create_all(source_engine)
    start = datetime(2023, 1, 1, 12, 0, 0)
    with source_engine.begin() as conn:
        conn.execute(orders.insert(), [{
            "id": i, "status": "closed" if i % 3 else "open",
            "amount": Decimal(f"{i * 10}.50") if i != 5 else None,
            "paid": i % 2 == 0, "due": date(2023, 2, 1) + timedelta(days=i),
            "created_at": start + timedelta(days=(n - i) * 7),   # id 1 is the newest
        } for i in range(1, n + 1)])


def ids_for(client, headers, **params):
    resp = client.get("/archives/orders", headers=headers, query_string={"limit": 1000, **params})
    assert resp.status_code == 200, resp.get_json()
    return sorted(int(item["payload"]["id"]) for item in resp.get_json()["items"])


def test_where_equality_and_ranges_by_type(client, accounts, source_engine, archive_engine):
    make_orders(source_engine)
    archive_from_source(source_engine, archive_engine, "orders", date_column="created_at")
    admin = accounts.admin()
    assert ids_for(client, admin, where="status = 'open'") == [3, 6, 9, 12]
    # decimals archived as exact strings compare by value, not as text ("100.50" > "20.50")
    assert ids_for(client, admin, where="amount >= 20.5 AND amount < 100") == [2, 3, 4, 6, 7, 8, 9]
    assert ids_for(client, admin, where="amount > 100.5") == [11, 12]
    assert ids_for(client, admin, where="amount IS NULL") == [5]
    assert ids_for(client, admin, where="paid = TRUE AND status = 'closed'") == [2, 4, 8, 10]
    assert ids_for(client, admin, where="due BETWEEN '2023-02-03' AND '2023-02-05'") == [2, 3, 4]
    assert ids_for(client, admin, where="created_at < '2023-01-22'") == [10, 11, 12]
    assert ids_for(client, admin, where="created_at >= '2023-03-19 12:00:00'") == [1]
    assert ids_for(client, admin, where="status IN ('open') OR id = 1") == [1, 3, 6, 9, 12]
    assert ids_for(client, admin, where="status LIKE 'op%'") == [3, 6, 9, 12]


def test_where_is_checked_by_the_criteria_parser(client, accounts, source_engine, archive_engine):
    make_orders(source_engine, 3)
    archive_from_source(source_engine, archive_engine, "orders", date_column="created_at")
    admin = accounts.admin()
    for bad, reason in (("nope = 1", "unknown column"), ("status = 'x'; DROP TABLE users", "only one"),
                        ("amount = 'ten'", "expects a number"), ("lower(status) = 'x'", "function"),
                        ("id IN (SELECT 1)", "subqueries")):
        resp = client.get("/archives/orders", headers=admin, query_string={"where": bad})
        assert resp.status_code == 400, bad
        body = resp.get_json()["error"]
        assert body["code"] == "validation_error" and reason in body["details"]["where"][0], (bad, body)


def test_where_filters_the_export_and_binds_the_cursor(client, accounts, source_engine, archive_engine):
    make_orders(source_engine)
    archive_from_source(source_engine, archive_engine, "orders", date_column="created_at")
    user = accounts.user("ann", tables=["orders"])
    resp = client.get("/archives/orders/export", headers=user, query_string={"where": "status = 'open'"})
    assert resp.status_code == 200
    lines = [line for line in resp.get_data(as_text=True).splitlines() if line]
    assert len(lines) == 4
    page = client.get("/archives/orders", headers=user, query_string={"where": "status = 'closed'", "limit": 3})
    cursor = page.get_json()["next_cursor"]
    assert cursor
    other = client.get("/archives/orders", headers=user,
                       query_string={"where": "status = 'open'", "limit": 3, "cursor": cursor})
    assert other.status_code == 400 and other.get_json()["error"]["code"] == "invalid_cursor"


def test_restore_honours_where(client, accounts, source_engine, archive_engine):
    make_orders(source_engine, 6)
    archive_from_source(source_engine, archive_engine, "orders", date_column="created_at")
    admin = accounts.admin()
    resp = client.post("/archives/orders/restore", headers=admin, json={"filters": {"where": "status = 'open'"}})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["restored"] == 2
    assert len(archived_ids(archive_engine, "orders")) == 4


def test_where_after_the_source_table_is_gone_uses_the_payload_types(client, accounts, source_engine,
                                                                      archive_engine):
    make_orders(source_engine, 6)
    archive_from_source(source_engine, archive_engine, "orders", date_column="created_at")
    with source_engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE orders")
    admin = accounts.admin()
    assert ids_for(client, admin, where="status = 'open'") == [3, 6]
    assert ids_for(client, admin, where="id > 4") == [5, 6]


def test_sort_by_row_date_pages_both_ways(client, accounts, source_engine, archive_engine):
    make_orders(source_engine, 7)
    archive_from_source(source_engine, archive_engine, "orders", date_column="created_at")
    admin = accounts.admin()
    for order, expected in (("asc", [7, 6, 5, 4, 3, 2, 1]), ("desc", [1, 2, 3, 4, 5, 6, 7])):
        seen, cursor = [], None
        while True:
            query = {"sort": "row_date", "order": order, "limit": 2, **({"cursor": cursor} if cursor else {})}
            body = client.get("/archives/orders", headers=admin, query_string=query).get_json()
            seen += [int(item["payload"]["id"]) for item in body["items"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert seen == expected, order
    # an id-sort cursor is no row_date cursor
    body = client.get("/archives/orders", headers=admin, query_string={"limit": 2}).get_json()
    resp = client.get("/archives/orders", headers=admin,
                      query_string={"sort": "row_date", "limit": 2, "cursor": body["next_cursor"]})
    assert resp.status_code == 400
