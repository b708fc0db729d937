"""Types survive archiving: the payload encodes every column exactly; dates compare correctly."""
from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from archiver.engine.archive import archive_table
from archiver.engine.errors import NotADateValue
from archiver.engine.policy import PolicySpec, archive_cutoff
from archiver.engine.rowcodec import RowEncoder, encode_row
from tests.engine_support import NOW, archived, archived_meta, as_utc, postgres_only, source_rows, sqlite_only

SPEC = PolicySpec("typed", date_column="created_at", archive_after_days=30)
OLD = datetime(2025, 1, 2, 3, 4, 5, 123456)


def _exec(engine: sa.Engine, *statements: str, params: list[dict] | None = None) -> None:
    with engine.begin() as conn:
        for stmt in statements:
            conn.execute(sa.text(stmt), params or {})


@sqlite_only
def test_sqlite_types_are_encoded_exactly(engines):
    _exec(engines.source, """CREATE TABLE typed (
        id INTEGER PRIMARY KEY, big BIGINT, num NUMERIC(12, 4), flt REAL, flag BOOLEAN, txt TEXT,
        raw BLOB, day DATE, created_at DATETIME, note TEXT)""")
    with engines.source.begin() as conn:
        conn.execute(sa.text("INSERT INTO typed VALUES (:id, :big, :num, :flt, :flag, :txt, :raw, :day, :c, :note)"), [
            {"id": 1, "big": 2**62, "num": "12.3400", "flt": 0.1, "flag": 1, "txt": "héllo \"q\"",
             "raw": b"\x00\xffbin", "day": "2024-02-29", "c": "2025-01-02 03:04:05.123456", "note": None},
            {"id": 2, "big": None, "num": None, "flt": None, "flag": 0, "txt": None, "raw": None, "day": None,
             "c": "2025-01-02T03:04:05", "note": "T form"},
        ])
    archive_table(engines.source, engines.archive, SPEC, now=NOW)
    arc = archived(engines.archive, "typed")
    assert arc["1"] == {"id": 1, "big": 2**62, "num": "12.3400", "flt": 0.1, "flag": True, "txt": "héllo \"q\"",
                        "raw": base64.b64encode(b"\x00\xffbin").decode(), "day": "2024-02-29",
                        "created_at": "2025-01-02T03:04:05.123456", "note": None}
    assert arc["2"] == {"id": 2, "big": None, "num": None, "flt": None, "flag": False, "txt": None, "raw": None,
                        "day": None, "created_at": "2025-01-02T03:04:05", "note": "T form"}
    meta = archived_meta(engines.archive, "typed")
    assert as_utc(meta["1"].row_date) == datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)


@postgres_only
def test_postgres_types_are_encoded_exactly(engines):
    _exec(engines.source, """CREATE TABLE typed (
        id integer PRIMARY KEY, big bigint, num numeric(14, 4), dbl double precision, flag boolean, txt text,
        raw bytea, uid uuid, day date, ts timestamp, created_at timestamptz, doc json, docb jsonb,
        tags text[], dur interval)""")
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    with engines.source.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO typed VALUES (1, 9223372036854775807, 12.3400, 0.1, true, 'héllo', :raw, :uid, "
            "'2024-02-29', '2025-01-02 03:04:05.123456', '2025-01-02 05:04:05.5+02:00', "
            "'{\"a\": [1, 2.5, null]}', '{\"b\": {\"c\": true}}', '{x,y}', '1 day 2 seconds')"),
            {"raw": b"\x00\xffbin", "uid": str(uid)})
        conn.execute(sa.text("INSERT INTO typed (id, created_at) VALUES (2, '2025-01-01 00:00:00+00')"))
        conn.execute(sa.text("INSERT INTO typed (id, created_at, dbl, num) VALUES (3, '2025-01-01', 'NaN', 'NaN')"))
    original = source_rows(engines.source, "typed")
    archive_table(engines.source, engines.archive, SPEC, now=NOW)
    arc = archived(engines.archive, "typed")
    row1 = arc["1"]
    assert row1["big"] == 9223372036854775807
    assert row1["num"] == "12.3400"
    assert row1["dbl"] == 0.1
    assert row1["flag"] is True and row1["txt"] == "héllo"
    assert row1["raw"] == base64.b64encode(b"\x00\xffbin").decode()
    assert row1["uid"] == str(uid)
    assert row1["day"] == "2024-02-29"
    assert row1["ts"] == "2025-01-02T03:04:05.123456"  # timestamp without time zone: no offset
    assert datetime.fromisoformat(row1["created_at"]) == datetime(2025, 1, 2, 3, 4, 5, 500000, tzinfo=timezone.utc)
    assert datetime.fromisoformat(row1["created_at"]).utcoffset() is not None  # timestamptz keeps an offset
    assert row1["doc"] == {"a": [1, 2.5, None]} and row1["docb"] == {"b": {"c": True}}
    assert row1["tags"] == ["x", "y"]
    assert row1["dur"] == 86402.0
    assert arc["2"] == {"id": 2, "big": None, "num": None, "dbl": None, "flag": None, "txt": None, "raw": None,
                        "uid": None, "day": None, "ts": None, "created_at": arc["2"]["created_at"], "doc": None,
                        "docb": None, "tags": None, "dur": None}
    assert arc["3"]["dbl"] == "nan" and arc["3"]["num"] == "NaN"
    assert arc == original  # the fast encoder equals the generic encoding, after a JSONB round trip


def test_fast_encoder_equals_the_generic_encoding():
    columns = [sa.Column("i", sa.Integer), sa.Column("f", sa.Float), sa.Column("n", sa.Numeric(10, 2)),
               sa.Column("b", sa.LargeBinary), sa.Column("d", sa.DateTime(timezone=True)), sa.Column("u", sa.Uuid),
               sa.Column("j", sa.JSON), sa.Column("x", sa.types.NullType())]
    enc = RowEncoder(columns)
    rows = [
        (1, 1.5, Decimal("1.10"), b"\x01", datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=-3))),
         uuid.uuid4(), {"k": [1, "a"]}, "t"),
        (None, math.inf, None, memoryview(b"ab"), datetime(2024, 1, 1), None, None, b"raw"),
        (2**70, -math.inf, Decimal("-0"), None, date(2024, 1, 1), None, [1, 2], Decimal("3.5")),
        (3, float("nan"), Decimal("1E+3"), b"", None, None, "s", timedelta(minutes=1)),
    ]
    for row in rows:
        generic = encode_row(dict(zip(enc.names, row)))
        assert json.loads(enc.dumps(row)) == json.loads(json.dumps(generic)), row


@sqlite_only
def test_sqlite_text_dates_in_both_formats_compare_correctly(engines):
    cutoff = archive_cutoff(SPEC, NOW)  # 2025-05-16 12:00:00 UTC
    assert cutoff == datetime(2025, 5, 16, 12, tzinfo=timezone.utc)
    values = {
        1: "2025-05-16 11:59:59",            # moves
        2: "2025-05-16T11:59:59",            # moves ('T' form)
        3: "2025-05-16 11:59:59.999999",     # moves (fraction of a second before)
        4: "2025-05-16T11:59:59.999999",     # moves
        5: "2025-05-16 12:00:00",            # stays (equal)
        6: "2025-05-16T12:00:00",            # stays (equal, 'T' form: ' ' < 'T' must not matter)
        7: "2025-05-16 12:00:00.000001",     # stays
        8: "2025-05-16T12:00:00.5",          # stays
        9: "2025-05-15",                     # moves (date only = midnight)
        10: "2025-05-16",                    # moves (midnight < 12:00)
        11: "2025-05-16T13:59:59+02:00",     # moves (11:59:59Z)
        12: "2025-05-16T14:00:00+02:00",     # stays (12:00:00Z)
        13: "2025-05-16T11:59:59Z",          # moves
        15: None,                            # stays
    }
    _exec(engines.source, "CREATE TABLE typed (id INTEGER PRIMARY KEY, created_at TEXT)")
    with engines.source.begin() as conn:
        conn.execute(sa.text("INSERT INTO typed VALUES (:id, :c)"), [{"id": k, "c": v} for k, v in values.items()])
    result = archive_table(engines.source, engines.archive, SPEC, now=NOW)
    arc = archived(engines.archive, "typed")
    assert sorted(map(int, arc)) == [1, 2, 3, 4, 9, 10, 11, 13]
    assert result.rows_deleted == 8
    assert arc["2"] == {"id": 2, "created_at": "2025-05-16T11:59:59"}  # kept verbatim
    meta = archived_meta(engines.archive, "typed")
    assert as_utc(meta["11"].row_date) == datetime(2025, 5, 16, 11, 59, 59, tzinfo=timezone.utc)
    assert as_utc(meta["9"].row_date) == datetime(2025, 5, 15, tzinfo=timezone.utc)


@sqlite_only
def test_sqlite_text_that_is_not_a_date_is_refused_by_name_unless_the_criteria_leave_it_out(engines):
    # The policy check samples MIN, MAX and the first and last rows by key: text that is not a
    # date would never compare, so the run refuses to start (it would silently move nothing).
    _exec(engines.source, "CREATE TABLE typed (id INTEGER PRIMARY KEY, created_at TEXT)")
    with engines.source.begin() as conn:
        conn.execute(sa.text("INSERT INTO typed VALUES (:id, :c)"),
                     [{"id": 1, "c": "2025-01-01"}, {"id": 2, "c": "2025-01-02 10:00:00"}, {"id": 3, "c": "not a date"}])
    with pytest.raises(NotADateValue, match=r"column 'created_at' of 'typed' holds 'not a date'"):
        archive_table(engines.source, engines.archive, SPEC, now=NOW)
    assert archived(engines.archive, "typed") == {}
    narrowed = PolicySpec("typed", archive_after_days=30, custom_criteria="created_at LIKE '2%'")
    assert archive_table(engines.source, engines.archive, narrowed, now=NOW).rows_deleted == 2
    assert sorted(archived(engines.archive, "typed")) == ["1", "2"]


@sqlite_only
@pytest.mark.parametrize("value", [1_700_000_000, 1_700_000_000.5, "1700000000"])
def test_sqlite_unix_epochs_are_not_dates(engines, value):
    _exec(engines.source, "CREATE TABLE typed (id INTEGER PRIMARY KEY, created_at INTEGER)")
    with engines.source.begin() as conn:
        conn.execute(sa.text("INSERT INTO typed VALUES (1, :v)"), {"v": value})
    with pytest.raises(NotADateValue, match="created_at"):
        archive_table(engines.source, engines.archive, SPEC, now=NOW)


@sqlite_only
def test_sqlite_datetime_column_with_odd_text_is_kept_verbatim(engines):
    _exec(engines.source, "CREATE TABLE typed (id INTEGER PRIMARY KEY, created_at DATETIME, d DATE)")
    with engines.source.begin() as conn:
        conn.execute(sa.text("INSERT INTO typed VALUES (1, '2025-01-02T03:04:05+02:00', '2025-01-02T00:00:00')"))
    archive_table(engines.source, engines.archive, SPEC, now=NOW)
    assert archived(engines.archive, "typed")["1"] == {"id": 1, "created_at": "2025-01-02T03:04:05+02:00",
                                                       "d": "2025-01-02T00:00:00"}


@postgres_only
def test_postgres_timestamptz_with_offsets_compares_in_utc(engines, databases):
    _exec(engines.source, "CREATE TABLE typed (id integer PRIMARY KEY, created_at timestamptz, plain timestamp)")
    values = {
        1: "2025-05-16 13:59:59+02",         # 11:59:59Z moves
        2: "2025-05-16 14:00:00+02",         # 12:00:00Z stays (equal)
        3: "2025-05-16 07:59:59.999999-04",  # 11:59:59.999999Z moves
        4: "2025-05-16 08:00:00-04",         # stays
        5: "2025-05-16 21:29:59+09:30",      # 11:59:59Z moves
    }
    with engines.source.begin() as conn:
        conn.execute(sa.text("SET TIME ZONE 'Asia/Tokyo'"))
        conn.execute(sa.text("INSERT INTO typed (id, created_at) VALUES (:id, CAST(:c AS timestamptz))"),
                     [{"id": k, "c": v} for k, v in values.items()])
    # A session in another time zone must not change the comparison.
    from archiver.engine.connections import make_engine
    url = sa.engine.make_url(databases.source_url)
    opts = url.query.get("options", "") + " -ctimezone=America/New_York"
    src = make_engine(url.update_query_dict({"options": opts.strip()}))
    try:
        result = archive_table(src, engines.archive, SPEC, now=NOW)
    finally:
        src.dispose()
    assert result.rows_deleted == 3
    arc = archived(engines.archive, "typed")
    assert sorted(arc, key=int) == ["1", "3", "5"]
    assert datetime.fromisoformat(arc["1"]["created_at"]) == datetime(2025, 5, 16, 11, 59, 59, tzinfo=timezone.utc)


@postgres_only
def test_postgres_naive_timestamp_and_date_columns_are_utc(engines):
    _exec(engines.source, "CREATE TABLE typed (id integer PRIMARY KEY, created_at timestamp, d date)")
    with engines.source.begin() as conn:
        conn.execute(sa.text("INSERT INTO typed VALUES (1, '2025-05-16 11:59:59.999999', '2025-05-16'), "
                             "(2, '2025-05-16 12:00:00', '2025-05-17')"))
    assert archive_table(engines.source, engines.archive, SPEC, now=NOW).rows_deleted == 1
    date_spec = PolicySpec("typed", date_column="d", archive_after_days=30)
    # DATE counts as midnight UTC: 2025-05-17 00:00 is after the 2025-05-16 12:00 cutoff.
    assert archive_table(engines.source, engines.archive, date_spec, now=NOW).rows_deleted == 0
    assert archive_table(engines.source, engines.archive, date_spec, now=NOW + timedelta(days=1)).rows_deleted == 1


@sqlite_only
def test_sqlite_datetime_in_the_primary_key_round_trips(engines):
    _exec(engines.source, "CREATE TABLE typed (day DATETIME NOT NULL, n INTEGER NOT NULL, created_at TEXT, "
                          "PRIMARY KEY (day, n))")
    with engines.source.begin() as conn:
        conn.execute(sa.text("INSERT INTO typed VALUES (:d, :n, :c)"), [
            {"d": "2025-01-0%dT10:00:00" % (i % 3 + 1), "n": i, "c": "2025-01-01"} for i in range(7)])
    spec = PolicySpec("typed", date_column="created_at", archive_after_days=30, batch_size=2)
    result = archive_table(engines.source, engines.archive, spec, now=NOW)
    assert result.rows_deleted == 7 and result.batches == 4
    assert source_rows(engines.source, "typed") == {}
    arc = archived(engines.archive, "typed")
    assert '["2025-01-01T10:00:00",0]' in arc and arc['["2025-01-01T10:00:00",0]']["day"] == "2025-01-01T10:00:00"
