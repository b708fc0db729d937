"""GET /archives/{table}/export: streamed JSON Lines and CSV that round-trip the archived values."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, datetime
from decimal import Decimal

import orjson
import pytest
import sqlalchemy as sa

from archiver.engine.backends import source_ops_for

from archiver.engine.rowcodec import decode_row, encode_row
from archiver.services.archives import EXPORT_CHUNK_ROWS
from tests.archive_helpers import (archive_from_source, archive_synthetic, archived_record, insert_archived,
                                   synthetic_rows)

FILENAME = re.compile(r'^attachment; filename="(?P<t>[A-Za-z0-9_.-]+)-archive-\d{8}T\d{6}Z\.(?P<ext>jsonl|csv)"$')


def export(client, headers, table, **params):
    return client.get(f"/archives/{table}/export", headers=headers, query_string=params, buffered=False)


def chunks_of(resp) -> list[bytes]:
    out = [chunk for chunk in resp.response if chunk]
    resp.close()
    return out


def parse_csv(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and records (csv.reader reads NULL and "" alike as ''; _null_positions tells them apart)."""
    rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    return rows[0], rows[1:]


def test_jsonl_export_streams_every_row_with_attachment_name(client, accounts, archive_engine):
    admin = accounts.admin()
    ids = archive_synthetic(archive_engine, "orders", EXPORT_CHUNK_ROWS * 2 + 7)
    archive_synthetic(archive_engine, "events", 3)

    resp = export(client, admin, "orders")
    assert resp.status_code == 200 and resp.is_streamed
    assert resp.mimetype == "application/x-ndjson"
    m = FILENAME.match(resp.headers["Content-Disposition"])
    assert m and m["t"] == "orders" and m["ext"] == "jsonl"
    parts = chunks_of(resp)
    assert len(parts) == 3  # one chunk per keyset read: nothing is buffered whole
    lines = b"".join(parts).splitlines()
    items = [orjson.loads(line) for line in lines]
    assert [i["id"] for i in items] == ids
    rows = synthetic_rows(len(ids))
    assert [i["payload"] for i in items] == [encode_row(r) for r in rows]
    assert items[0]["source_pk"] == "1" and set(items[0]) == {"id", "source_pk", "row_date", "archived_at", "payload"}


def test_export_applies_filters_and_order(client, accounts, archive_engine):
    admin = accounts.admin()
    ids = archive_synthetic(archive_engine, "orders", 10)
    body = b"".join(chunks_of(export(client, admin, "orders", source_pk="4")))
    assert [orjson.loads(x)["id"] for x in body.splitlines()] == [ids[3]]
    body = b"".join(chunks_of(export(client, admin, "orders", order="desc")))
    assert [orjson.loads(x)["id"] for x in body.splitlines()] == ids[::-1]
    body = b"".join(chunks_of(export(client, admin, "orders", archived_from="2030-01-01")))
    assert body == b""
    csv_body = b"".join(chunks_of(export(client, admin, "orders", format="csv", archived_from="2030-01-01")))
    assert csv_body == b'"id","source_pk","row_date","archived_at"\r\n'


@pytest.mark.parametrize("params", [{"format": "xml"}, {"format": "csv", "limit": "5"}, {"cursor": "x"},
                                    {"archived_to": "nope"}, {"row_date_from": "2024-02-01",
                                                              "row_date_to": "2024-01-01"}])
def test_bad_export_params_are_400(client, accounts, archive_engine, params):
    admin = accounts.admin()
    archive_synthetic(archive_engine, "orders", 1)
    resp = client.get("/archives/orders/export", headers=admin, query_string=params)
    assert resp.status_code == 400


def test_export_of_unknown_table_is_404_for_admin(client, accounts):
    admin = accounts.admin()
    assert client.get("/archives/nope/export", headers=admin).status_code == 404


@pytest.fixture
def mixed(databases, source_engine, archive_engine):
    """A real source table with tricky values, archived; the (now empty) table gives the CSV header.
    (``ratio`` is DOUBLE: MariaDB's FLOAT is single precision and has no room for 1e300.)"""
    cols = [sa.Column("id", sa.Integer, primary_key=True, autoincrement=False), sa.Column("name", sa.Text),
            sa.Column("amount", sa.Numeric(12, 2)), sa.Column("ratio", sa.Double), sa.Column("ok", sa.Boolean),
            sa.Column("blob", sa.LargeBinary), sa.Column("day", sa.Date), sa.Column("created_at", sa.DateTime),
            sa.Column("doc", sa.JSON)]
    table = sa.Table("mixed", sa.MetaData(), *cols)
    table.metadata.create_all(source_engine)
    values = [
        {"id": 1, "name": 'comma, "quote"\nnewline', "amount": Decimal("10.25"), "ratio": 0.1, "ok": True,
         "blob": b"\x00\xffbin", "day": date(2020, 1, 2), "created_at": datetime(2020, 1, 2, 3, 4, 5),
         "doc": {"nested": [1, "two", None]}},
        {"id": 2, "name": "", "amount": None, "ratio": None, "ok": False, "blob": None, "day": None,
         "created_at": None, "doc": "just text"},
        {"id": 3, "name": None, "amount": Decimal("-1.00"), "ratio": 1e300, "ok": None, "blob": b"",
         "day": date(1999, 12, 31), "created_at": datetime(1999, 12, 31, 23, 59, 59, 999999),
         "doc": [True, 2.5]},
        {"id": 4, "name": "=HYPERLINK(\"http://x\")", "amount": Decimal("0.00"), "ratio": -0.0, "ok": True,
         "blob": b"=1+1", "day": date(2024, 2, 29), "created_at": datetime(2024, 2, 29), "doc": None},
    ]
    with source_engine.begin() as conn:
        conn.execute(table.insert(), values)
    ids, original = archive_from_source(source_engine, archive_engine, "mixed", date_column="created_at")
    # The columns as the service sees them, by reflection (MariaDB: BOOLEAN is TINYINT(1), JSON is LONGTEXT).
    return source_ops_for(source_engine).reflect_table(source_engine, "mixed"), ids, original


def test_csv_export_flattens_payload_with_reflected_columns_and_round_trips(client, accounts, mixed):
    table, ids, original = mixed
    admin = accounts.admin()
    resp = export(client, admin, "mixed", format="csv", raw="true")  # byte-exact CSV (admins only)
    assert resp.status_code == 200 and resp.is_streamed
    assert resp.mimetype == "text/csv" and resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert FILENAME.match(resp.headers["Content-Disposition"])["ext"] == "csv"
    text = b"".join(chunks_of(resp)).decode("utf-8")

    header, records = parse_csv(text)
    assert header == ["id", "source_pk", "row_date", "archived_at"] + [f"payload.{c.name}" for c in table.columns]
    assert [int(r[0]) for r in records] == ids
    # NULL is an unquoted empty field, the empty string a quoted one; with raw=true formulas are kept verbatim
    lines = text.split("\r\n")
    assert lines[2].startswith('"' + str(ids[1]) + '","2",,') and ',"",' in lines[2]
    assert '"=HYPERLINK(""http://x"")"' in text

    nulls = _null_positions(text)
    for rec_no, (record, row) in enumerate(zip(records, original), start=1):
        payload = {}
        for pos, col in enumerate(table.columns, start=4):
            cell = None if (rec_no, pos) in nulls else record[pos]
            payload[col.name] = _cell_to_json(cell, col)
        assert decode_row(payload, table.columns) == decode_row(encode_row(row), table.columns)
        assert payload == {k: v for k, v in encode_row(row).items()}


def _cell_to_json(cell, col):
    """Inverse of the export's cell encoding, by reflected column type."""
    if cell is None:
        return None
    if isinstance(col.type, sa.JSON):
        return json.loads(cell)
    if isinstance(col.type, sa.Boolean):
        return cell == "true"
    if isinstance(col.type, sa.Integer):
        return int(cell)
    if isinstance(col.type, sa.Float):
        return float(cell)
    return cell


def _null_positions(text: str) -> set[tuple[int, int]]:
    """(record, field) positions of unquoted empty fields, scanning the CSV by hand."""
    out, rec, field, i, at_start = set(), 0, 0, 0, True
    while i < len(text):
        ch = text[i]
        if at_start and ch == '"':
            i += 1
            while True:
                if text[i] == '"' and text[i + 1:i + 2] == '"':
                    i += 2
                elif text[i] == '"':
                    i += 1
                    break
                else:
                    i += 1
            at_start = False
            continue
        if ch in ",\r":
            if at_start:
                out.add((rec, field))
            if ch == ",":
                field += 1
            else:
                rec, field, i = rec + 1, 0, i + 1  # skip \n
            at_start = True
        i += 1
    return out


def test_csv_header_comes_from_first_row_when_source_table_is_gone(client, accounts, archive_engine):
    admin = accounts.admin()
    insert_archived(archive_engine, [archived_record("ghost", {"id": 1, "b": 2, "a": {"x": 1}}),
                                     archived_record("ghost", {"id": 2, "b": None, "a": [1], "late": 5})])
    text = b"".join(chunks_of(export(client, admin, "ghost", format="csv"))).decode()
    header, records = parse_csv(text)
    # columns of the first row (in stored key order: JSONB reorders keys); "late" only in row 2 is dropped
    assert header[:4] == ["id", "source_pk", "row_date", "archived_at"]
    assert sorted(header[4:]) == ["payload.a", "payload.b", "payload.id"]
    cells = [dict(zip(header, r)) for r in records]
    assert [(c["payload.id"], c["payload.b"], c["payload.a"]) for c in cells] == [("1", "2", '{"x":1}'), ("2", "", "[1]")]
    assert ',,"' in text.split("\r\n")[2] or text.split("\r\n")[2].endswith(",")  # NULL b is unquoted


@pytest.mark.slow
def test_large_export_round_trips_in_jsonl_and_csv(client, accounts, archive_engine, databases):
    """100 000 rows on SQLite (5 000 on PostgreSQL to keep CI time sane), streamed in keyset chunks."""
    n = 100_000 if databases.backend == "sqlite" else 5_000
    admin = accounts.admin()
    archive_synthetic(archive_engine, "big", n)
    expected = [encode_row(r) for r in synthetic_rows(n)]

    resp = export(client, admin, "big", format="jsonl")
    assert resp.is_streamed
    parts = chunks_of(resp)
    assert len(parts) == -(-n // EXPORT_CHUNK_ROWS)
    payloads = [orjson.loads(line)["payload"] for part in parts for line in part.splitlines()]
    assert payloads == expected

    resp = export(client, admin, "big", format="csv")
    assert resp.is_streamed
    text = b"".join(chunks_of(resp)).decode()
    header, records = parse_csv(text)
    keys = [h.removeprefix("payload.") for h in header[4:]]
    assert sorted(keys) == sorted(expected[0])  # key order is the stored one (JSONB reorders)
    decoded = []
    for record in records:
        row = {}
        for pos, key in enumerate(keys, start=4):
            # the synthetic rows hold no empty strings, so an empty field is NULL here
            # (NULL vs "" is told apart by quoting; see the mixed-values test)
            cell = record[pos] or None
            if cell is not None and key == "id":
                cell = int(cell)
            elif cell is not None and key == "ratio":
                cell = float(cell)
            elif cell is not None and key == "active":
                cell = cell == "true"
            row[key] = cell
        decoded.append(row)
    assert decoded == expected
