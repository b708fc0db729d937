"""GET /archives/, GET /archives/{table} and GET /archives/{table}/{id}: overview, keyset pages, filters, cursors."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from archiver.engine.rowcodec import encode_row
from tests.archive_helpers import (BASE_TIME, add_policy, archive_synthetic, archived_ids, archived_record,
                                   insert_archived, synthetic_rows)


def walk(client, headers, table, **params):
    """Follow next_cursor to the end; returns (ids in order, number of pages)."""
    ids, pages, cursor = [], 0, None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        resp = client.get(f"/archives/{table}", headers=headers, query_string=query)
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        pages += 1
        ids += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, pages


# --- overview ------------------------------------------------------------------

def test_overview_counts_dates_and_policy_for_admin(client, accounts, archive_engine, app):
    admin = accounts.admin()
    archive_synthetic(archive_engine, "orders", 3, step=timedelta(hours=1))
    archive_synthetic(archive_engine, "events", 2)
    add_policy(app, "orders", archive_after_days=10, delete_after_days=90)
    add_policy(app, "invoices", enabled=False)  # policy, nothing archived yet

    for url in ("/archives/", "/archives"):
        resp = client.get(url, headers=admin)
        assert resp.status_code == 200
        items = {t["table_name"]: t for t in resp.get_json()["items"]}
        assert list(items) == ["events", "invoices", "orders"]
    orders = items["orders"]
    assert orders["row_count"] == 3
    assert _dt(orders["oldest_archived_at"]) == BASE_TIME
    assert _dt(orders["newest_archived_at"]) == BASE_TIME + timedelta(hours=2)
    first, last = synthetic_rows(3)[0], synthetic_rows(3)[-1]
    assert _dt(orders["oldest_row_date"]) == _dt(first["created_at"])
    assert _dt(orders["newest_row_date"]) == _dt(last["created_at"])
    assert orders["policy"] == {"date_column": "created_at", "archive_after_days": 10,
                                "delete_after_days": 90, "enabled": True}
    assert items["events"]["policy"] is None and items["events"]["row_count"] == 2
    assert items["invoices"]["row_count"] == 0 and items["invoices"]["policy"]["enabled"] is False
    assert items["invoices"]["oldest_archived_at"] is None


def test_overview_for_user_lists_only_granted_tables_including_empty_ones(client, accounts, archive_engine):
    archive_synthetic(archive_engine, "orders", 2)
    archive_synthetic(archive_engine, "secrets", 2)
    user = accounts.user("ann", tables=["orders", "planned"])
    items = client.get("/archives/", headers=user).get_json()["items"]
    assert [t["table_name"] for t in items] == ["orders", "planned"]
    assert items[0]["row_count"] == 2
    assert items[1] == {"table_name": "planned", "row_count": 0, "oldest_archived_at": None,
                        "newest_archived_at": None, "oldest_row_date": None, "newest_row_date": None,
                        "policy": None}
    nobody = accounts.user("bob")
    assert client.get("/archives/", headers=nobody).get_json() == {"items": []}


def test_overview_rejects_query_params_and_needs_a_token(client, accounts):
    admin = accounts.admin()
    assert client.get("/archives/?table=x", headers=admin).status_code == 400
    assert client.get("/archives/").status_code == 401


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc) \
        if "+" in text or text.endswith("Z") else datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


# --- listing -----------------------------------------------------------------------

def test_page_shape_newest_first_and_payload_as_archived(client, accounts, archive_engine):
    admin = accounts.admin()
    ids = archive_synthetic(archive_engine, "orders", 5)
    body = client.get("/archives/orders?limit=2", headers=admin).get_json()
    assert [i["id"] for i in body["items"]] == ids[::-1][:2]
    assert isinstance(body["next_cursor"], str)
    item = body["items"][0]
    assert set(item) == {"id", "source_pk", "row_date", "archived_at", "payload"}
    row = synthetic_rows(5)[-1]
    assert item["source_pk"] == "5"
    assert item["payload"] == encode_row(row)
    assert _dt(item["archived_at"]) == BASE_TIME
    assert _dt(item["row_date"]) == _dt(row["created_at"])

    asc = client.get("/archives/orders?order=asc&limit=10", headers=admin).get_json()
    assert [i["id"] for i in asc["items"]] == ids
    assert asc["next_cursor"] is None


def test_default_limit_is_50(client, accounts, archive_engine):
    admin = accounts.admin()
    archive_synthetic(archive_engine, "orders", 60)
    body = client.get("/archives/orders", headers=admin).get_json()
    assert len(body["items"]) == 50 and body["next_cursor"]


def test_walk_10000_rows_without_gap_or_duplicate_both_orders(client, accounts, archive_engine):
    admin = accounts.admin()
    archive_synthetic(archive_engine, "other", 30)  # interleaved rows of another table are never included
    ids = archive_synthetic(archive_engine, "orders", 10_000)
    archive_synthetic(archive_engine, "other", 30, start=31)

    desc, pages = walk(client, admin, "orders", limit=700)
    assert desc == sorted(ids, reverse=True)
    assert pages == 15  # ceil(10000 / 700)
    asc, _ = walk(client, admin, "orders", limit=1000, order="asc")
    assert asc == ids


def test_walk_is_undisturbed_by_rows_archived_between_pages(client, accounts, archive_engine):
    admin = accounts.admin()
    original = archive_synthetic(archive_engine, "orders", 10_000)
    next_pk = 10_001

    for order in ("desc", "asc"):
        seen, cursor, added = [], None, []
        while True:
            query = {"limit": 900, "order": order, **({"cursor": cursor} if cursor else {})}
            body = client.get("/archives/orders", headers=admin, query_string=query).get_json()
            seen += [i["id"] for i in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
            added += archive_synthetic(archive_engine, "orders", 25, start=next_pk)  # archived meanwhile
            next_pk += 25
        assert len(seen) == len(set(seen)), "a row was returned twice"
        assert set(original) <= set(seen), "an original row was skipped"
        if order == "desc":
            assert seen == sorted(original, reverse=True)  # new rows land in front of the walk
        else:
            assert added and set(added) <= set(seen)  # and at its end when walking ascending
            assert seen == archived_ids(archive_engine, "orders")


# --- filters -------------------------------------------------------------------------

@pytest.fixture
def dated(archive_engine):
    """Ten rows: archived one hour apart from BASE_TIME, row_date one day apart from 2023-01-01."""
    records = []
    for i in range(1, 11):
        row = {"id": i, "created_at": datetime(2023, 1, i, 12, tzinfo=timezone.utc)}
        records.append(archived_record("orders", row, date_column="created_at",
                                       archived_at=BASE_TIME + timedelta(hours=i - 1)))
    insert_archived(archive_engine, [archived_record("orders", {"id": 99}, archived_at=BASE_TIME)])  # no row_date
    return insert_archived(archive_engine, records)


def pks(client, headers, **params):
    resp = client.get("/archives/orders", headers=headers, query_string=dict(params, order="asc", limit=100))
    return sorted(int(i["source_pk"]) for i in resp.get_json()["items"])


def test_archived_at_range_from_inclusive_to_exclusive(client, accounts, dated):
    admin = accounts.admin()
    assert pks(client, admin, archived_from="2024-01-01T02:00:00Z", archived_to="2024-01-01T05:00:00Z") == [3, 4, 5]
    # naive values are UTC; offsets are converted
    assert pks(client, admin, archived_from="2024-01-01T02:00:00", archived_to="2024-01-01T07:00:00+02:00") == [3, 4, 5]
    # a "+" that arrived as a space in the query string is still an offset
    assert pks(client, admin, archived_from="2024-01-01T09:00:00 02:00") == [8, 9, 10]
    assert pks(client, admin, archived_to="2024-01-01T00:00:00Z") == []


def test_row_date_range_and_source_pk(client, accounts, dated):
    admin = accounts.admin()
    assert pks(client, admin, row_date_from="2023-01-08", row_date_to="2023-01-10") == [8, 9]
    assert pks(client, admin, row_date_from="2023-01-09T12:00:00Z") == [9, 10]  # NULL row_date never matches
    assert pks(client, admin, source_pk="7") == [7]
    assert pks(client, admin, source_pk="70") == []
    assert pks(client, admin, source_pk="7", row_date_to="2023-01-02") == []


def test_filters_combine_with_pagination(client, accounts, dated):
    admin = accounts.admin()
    ids, pages = walk(client, admin, "orders", limit=2, row_date_from="2023-01-03", row_date_to="2023-01-08")
    assert len(ids) == 5 and pages == 3


@pytest.mark.parametrize("params, field", [
    ({"archived_from": "yesterday"}, "archived_from"),
    ({"archived_to": "2024-13-01"}, "archived_to"),
    ({"row_date_from": "2024-01-01T25:00:00"}, "row_date_from"),
    ({"row_date_to": ""}, "row_date_to"),
    ({"row_date_to": "0001-01-01T00:00:00+05:00"}, "row_date_to"),
    ({"archived_from": "2024-02-01", "archived_to": "2024-01-01"}, "archived_from"),
    ({"row_date_from": "2024-02-01T00:00:01Z", "row_date_to": "2024-02-01T00:00:00Z"}, "row_date_from"),
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"order": "sideways"}, "order"),
    ({"source_pk": "x" * 513}, "source_pk"),
    ({"page": "2"}, "page"),
    ({"offset": "100"}, "offset"),
])
def test_bad_filter_values_are_400_naming_the_field(client, accounts, dated, params, field):
    admin = accounts.admin()
    resp = client.get("/archives/orders", headers=admin, query_string=params)
    assert resp.status_code == 400
    body = resp.get_json()["error"]
    assert body["code"] == "validation_error"
    assert field in body["details"]


def test_equal_bounds_are_allowed_and_empty(client, accounts, dated):
    admin = accounts.admin()
    resp = client.get("/archives/orders", headers=admin,
                      query_string={"archived_from": "2024-01-01T03:00:00Z", "archived_to": "2024-01-01T03:00:00Z"})
    assert resp.status_code == 200 and resp.get_json() == {"items": [], "next_cursor": None}


def test_limit_1000_is_allowed(client, accounts, dated):
    admin = accounts.admin()
    assert client.get("/archives/orders?limit=1000", headers=admin).status_code == 200


# --- cursors ---------------------------------------------------------------------------

def _first_cursor(client, headers, table, **params):
    body = client.get(f"/archives/{table}", headers=headers, query_string=dict(params, limit=2)).get_json()
    assert body["next_cursor"]
    return body["next_cursor"]


def _assert_bad_cursor(resp):
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "invalid_cursor"


def test_tampered_or_foreign_cursors_are_400(client, accounts, archive_engine):
    admin = accounts.admin()
    archive_synthetic(archive_engine, "orders", 6)
    archive_synthetic(archive_engine, "events", 6)
    cursor = _first_cursor(client, admin, "orders")
    assert client.get("/archives/orders", headers=admin, query_string={"cursor": cursor, "limit": 2}).status_code == 200

    for pos in (0, len(cursor) // 2, len(cursor) - 1):
        flipped = cursor[:pos] + ("A" if cursor[pos] != "A" else "B") + cursor[pos + 1:]
        _assert_bad_cursor(client.get("/archives/orders", headers=admin, query_string={"cursor": flipped}))
    for garbage in ("abc", "e30.", "x" * 2000, cursor + "x"):
        resp = client.get("/archives/orders", headers=admin, query_string={"cursor": garbage})
        assert resp.status_code == 400

    events_cursor = _first_cursor(client, admin, "events")
    _assert_bad_cursor(client.get("/archives/orders", headers=admin, query_string={"cursor": events_cursor}))
    filtered = _first_cursor(client, admin, "orders", archived_from="2020-01-01")
    _assert_bad_cursor(client.get("/archives/orders", headers=admin, query_string={"cursor": filtered}))
    _assert_bad_cursor(client.get("/archives/orders", headers=admin,
                                  query_string={"cursor": filtered, "archived_from": "2020-01-02"}))
    _assert_bad_cursor(client.get("/archives/orders", headers=admin,
                                  query_string={"cursor": cursor, "order": "asc"}))
    # same filters spelled differently (naive vs explicit UTC) are the same filters
    ok = client.get("/archives/orders", headers=admin,
                    query_string={"cursor": filtered, "archived_from": "2020-01-01T00:00:00+00:00"})
    assert ok.status_code == 200


def test_cursor_signed_with_another_secret_is_rejected(client, accounts, archive_engine, databases):
    from tests.app_support import make_app
    other = make_app(databases, JWT_SECRET_KEY="another-secret-that-is-long-enough-0123456789")
    admin = accounts.admin()
    archive_synthetic(archive_engine, "orders", 5)
    with other.test_request_context():
        from archiver.services.cursors import encode_cursor
        from archiver.engine.restore import ArchiveFilters
        forged = encode_cursor("orders", "desc", ArchiveFilters().fingerprint(), 4)
    _assert_bad_cursor(client.get("/archives/orders", headers=admin, query_string={"cursor": forged}))


# --- one row -----------------------------------------------------------------------------

def test_get_one_row_and_404s(client, accounts, archive_engine):
    admin = accounts.admin()
    ids = archive_synthetic(archive_engine, "orders", 3)
    other = archive_synthetic(archive_engine, "events", 1)
    resp = client.get(f"/archives/orders/{ids[1]}", headers=admin)
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    item = resp.get_json()
    assert item["id"] == ids[1] and item["source_pk"] == "2"
    assert item["payload"] == encode_row(synthetic_rows(3)[1])

    for url in (f"/archives/orders/{other[0]}", "/archives/orders/999999",
                "/archives/orders/0", "/archives/orders/99999999999999999999999"):
        resp = client.get(url, headers=admin)
        assert resp.status_code == 404, url
        assert resp.get_json()["error"]["code"] == "not_found"
    assert client.get(f"/archives/orders/{ids[0]}?x=1", headers=admin).status_code == 400


def test_unknown_table_is_404_for_admin_but_known_empty_table_is_200(client, accounts, app):
    admin = accounts.admin()
    assert client.get("/archives/nope", headers=admin).status_code == 404
    add_policy(app, "planned")
    resp = client.get("/archives/planned", headers=admin)
    assert resp.status_code == 200 and resp.get_json() == {"items": [], "next_cursor": None}
