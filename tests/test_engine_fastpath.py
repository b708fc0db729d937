"""The per-dialect fast paths write exactly what the generic path writes.

Source side: for tables with every common column type and deliberately odd
values, the fast ``fetch_batch`` (payload built by the database) returns the
same keys, the same payload text and the same row dates as the generic
``fetch_batch`` (payload built by the Python encoder) — on SQLite,
PostgreSQL and MariaDB. Rows with values the database cannot render
identically must take the generic encoder (asserted by key), and the types
the fast path claims to render must really be rendered by the database
(asserted on the layout), so a silent fallback cannot make these tests pass.

Archive side: the COPY/staging upsert (PostgreSQL) and the literal multi-row
upsert (MariaDB, with and without NO_BACKSLASH_ESCAPES) store the same rows
as the generic SQLAlchemy upsert, and replace existing copies.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.engine import schema
from archiver.engine.archive import archive_table
from archiver.engine.connections import make_engine
from archiver.engine.backends import archive_ops_for, source_ops_for
from archiver.engine.backends.base import row_date_datetime
from archiver.engine.backends.mysql import MySQLArchiveOps, MySQLSourceOps
from archiver.engine.backends.postgres import PostgresArchiveOps, PostgresSourceOps
from archiver.engine.backends.sqlite import SQLiteArchiveOps, SQLiteSourceOps
from archiver.engine.check import check_policy
from archiver.engine.policy import PolicySpec
from tests.engine_support import NOW, RecMySQL, RecPostgres, RecSQLite, archived, postgres_only, sqlite_only

SPEC = PolicySpec("typed", date_column="moved_at", archive_after_days=30, batch_size=1000)
OLD = "2025-01-01 00:00:00"
TRICKY_TEXT = "".join(chr(i) for i in range(1, 32)) + " \"quoted\" \\ back/slash é€😀\u2028\u2029\ufeff\x7f"


def portable(ops):
    """``ops`` with its fast paths off: the portable protocol on the same database."""
    ops.fast_enabled = False
    return ops


def fetch_both(engine: sa.Engine, fast, generic, spec: PolicySpec = SPEC):
    """One batch of the same rows through both ops, in a transaction that is rolled back."""
    out = []
    for ops in (fast, generic):
        conn = ops.connect()
        try:
            ops.prepare(conn)
            conn.begin()
            plan = check_policy(conn, spec, ops, NOW)
            out.append((plan, ops.fetch_batch(conn, plan, None, 10_000)))
            conn.rollback()
        finally:
            conn.close()
    return out


def assert_same_batches(fast_batch, generic_batch, *, other_bytes: frozenset[str] = frozenset()) -> None:
    """Same keys, row dates and payloads (byte for byte, but for ``other_bytes`` keys: same JSON)."""
    assert fast_batch.keys == generic_batch.keys
    assert fast_batch.last_key == generic_batch.last_key
    assert len(fast_batch.records) == len(generic_batch.records) > 0
    for f, g in zip(fast_batch.records, generic_batch.records):
        assert f["source_pk"] == g["source_pk"]
        if f["source_pk"] not in other_bytes:
            assert f["payload"] == g["payload"], f["source_pk"]
        assert json.loads(f["payload"]) == json.loads(g["payload"]), f["source_pk"]
        assert list(json.loads(f["payload"])) == list(json.loads(g["payload"]))  # key order too
        assert row_date_datetime(f["row_date"]) == row_date_datetime(g["row_date"]), f["source_pk"]


def _exec(engine: sa.Engine, *statements: str, params=None) -> None:
    with engine.begin() as conn:
        for stmt in statements:
            conn.execute(sa.text(stmt), params or {})


def test_each_dialect_gets_its_backend_with_fast_paths_on():
    sqlite = sa.create_engine("sqlite://")
    assert isinstance(source_ops_for(sqlite), SQLiteSourceOps) and isinstance(archive_ops_for(sqlite), SQLiteArchiveOps)
    pg = sa.create_engine("postgresql+psycopg2://u@localhost/db")
    assert isinstance(source_ops_for(pg), PostgresSourceOps)
    assert isinstance(archive_ops_for(pg), PostgresArchiveOps)
    my = sa.create_engine("mysql+pymysql://u@localhost/db")
    assert isinstance(source_ops_for(my), MySQLSourceOps)
    assert isinstance(archive_ops_for(my), MySQLArchiveOps)
    assert all(ops.fast_enabled for ops in (source_ops_for(pg), archive_ops_for(pg), source_ops_for(my)))


# --- SQLite ---------------------------------------------------------------------

SQLITE_DDL = """CREATE TABLE typed (
    id INTEGER PRIMARY KEY, i INTEGER, big BIGINT, flag BOOLEAN, txt TEXT, vc VARCHAR(20),
    num NUMERIC(12, 2), num4 NUMERIC(10, 4), numx NUMERIC, flt REAL, raw BLOB, day DATE,
    dt DATETIME, tm TIME, doc JSON, untyped, moved_at TEXT)"""

SQLITE_ROWS = [
    # id, i, big, flag, txt, vc, num, num4, numx, flt, raw, day, dt, tm, doc, untyped  -> exotic?
    (1, 7, 2**62, 1, "plain", "v", 12.3, 1.5, 3.25, 0.1, b"\x00\xff", "2024-02-29", "2025-01-02 03:04:05", "10:11:12",
     '{"a": [1, 2.5]}', "u", False),
    (2, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, False),
    (3, -1, -(2**63), 0, TRICKY_TEXT, "", 0, 0, 0, -0.0, b"", "0001-01-01", "2025-01-02T03:04:05", None, None, 5,
     False),
    (4, 0, 1, 5, "x", "y", 99999999.99, 123456.7891, 1e-7, 1e300, b"bin", "9999-12-31", "2025-01-02 03:04:05.123",
     None, None, 1.5, False),
    (5, 1, 2, 0, "x", "y", -12, -0.0001, None, None, None, None, "2025-01-02T03:04:05.123456", None, None, None,
     False),
    (6, 1, 2, 0, "x", "y", 1.5, None, None, None, None, None, "2025-01-02 03:04:05.000000", None, None, None, False),
    (7, 1, 2, 0, "x", "y", 1.5, None, None, None, None, None, "2025-01-02 03:04:05.000", None, None, None, False),
    (8, 1, 2, 0, "x", "y", 1.5, None, None, None, None, None, "2024-02-29 23:59:59", None, None, None, False),
    # exotic: the database cannot (or must not) render these itself
    (20, "text in an integer column", 2, 0, "x", "y", 1.5, None, None, None, None, None, None, None, None, None, True),
    (21, 1, 2, 0.5, "x", "y", 1.5, None, None, None, None, None, None, None, None, None, True),
    (22, 1, 2, 0, 42, "y", 1.5, None, None, None, None, None, None, None, None, None, False),  # TEXT affinity
    (23, 1, 2, 0, b"bytes in text", "y", 1.5, None, None, None, None, None, None, None, None, None, True),
    (24, 1, 2, 0, "x", "y", 0.125, None, None, None, None, None, None, None, None, None, True),   # printf rounds up
    (25, 1, 2, 0, "x", "y", 2.675, None, None, None, None, None, None, None, None, None, True),   # ditto
    (26, 1, 2, 0, "x", "y", 1e15, None, None, None, None, None, None, None, None, None, True),    # too large
    (27, 1, 2, 0, "x", "y", 1.5, None, None, None, None, "2025-02-29", None, None, None, None, True),
    (28, 1, 2, 0, "x", "y", 1.5, None, None, None, None, "2025-13-01", None, None, None, None, True),
    (29, 1, 2, 0, "x", "y", 1.5, None, None, None, None, None, "2025-02-30 10:00:00", None, None, None, True),
    (30, 1, 2, 0, "x", "y", 1.5, None, None, None, None, None, "2025-01-01 24:00:00", None, None, None, True),
    (31, 1, 2, 0, "x", "y", 1.5, None, None, None, None, None, "2025-01-01T10:00:00+02:00", None, None, None, True),
    (32, 1, 2, 0, "x", "y", 1.5, None, None, None, None, None, "2025-01-01", None, None, None, True),
    (33, 1, 2, 0, "x", "y", 1.5, None, None, None, None, None, "0000-01-01 00:00:00", None, None, None, True),
    (34, 1, 2, 0, "x", "y", 1.5, None, None, None, None, None, "not a date", None, None, None, True),
    (35, 1, 2, 0, "x", "y", 1.5, None, None, None, None, None, "2025-01-02 03:04:05.5", None, None, None, True),
    (36, 1, 2, 0, "x", "y", 1.5, None, None, None, None, None, 20250102, None, None, None, True),
    (37, 1, 2, 0, "x", "y", 1.5, None, None, None, None, "2025-01-02 00:00:00", None, None, None, None, True),
]


def _insert_sqlite(engine: sa.Engine, rows) -> None:
    with engine.begin() as conn:
        dbapi = conn.connection.dbapi_connection
        dbapi.executemany("INSERT INTO typed VALUES (" + ",".join("?" * 17) + ")",
                          [(*r[:16], OLD) for r in rows])


@sqlite_only
def test_sqlite_fast_payloads_equal_the_generic_encoding(engines):
    _exec(engines.source, SQLITE_DDL)
    _insert_sqlite(engines.source, SQLITE_ROWS)
    fast = RecSQLite(engines.source)
    (fplan, fb), (_gplan, gb) = fetch_both(engines.source, fast, portable(SQLiteSourceOps(engines.source)))
    assert_same_batches(fb, gb)
    assert sorted(k[0] for k in fast.generic_keys) == [r[0] for r in SQLITE_ROWS if r[-1]]
    layout = fast.layout(fplan)
    assert fplan.extra["fast_plain_rows"] is False  # NUMERIC/TIME/JSON values are converted by SQLAlchemy
    # id i big flag txt vc num num4 day dt moved_at by SQLite; numx flt raw tm doc untyped in Python.
    assert (layout.sql_columns, layout.py_columns) == (11, 6)


@sqlite_only
def test_sqlite_all_sql_table_is_one_json_object_and_row_dates_come_as_text(engines):
    _exec(engines.source, "CREATE TABLE typed (id INTEGER PRIMARY KEY, moved_at DATETIME, d DATE, "
                          "amount NUMERIC(12,2), note TEXT)")
    values = ["2025-01-02 03:04:05", "2025-01-02T03:04:05.250", "2025-01-02 03:04:05.000001", "2025-01-02",
              "2025-01-02T03:04:05Z", "2025-01-02 05:04:05+02:00", "2025-02-30 00:00:00"]
    with engines.source.begin() as conn:
        conn.execute(sa.text("INSERT INTO typed VALUES (:i, :m, '2025-01-01', 1.25, 'n')"),
                     [{"i": i, "m": m} for i, m in enumerate(values, 1)])
    fast = RecSQLite(engines.source)
    spec = PolicySpec("typed", date_column="moved_at", archive_after_days=30)
    (fplan, fb), (_g, gb) = fetch_both(engines.source, fast, portable(SQLiteSourceOps(engines.source)), spec)
    assert_same_batches(fb, gb)
    layout = fast.layout(fplan)
    assert layout.single_object is not None and layout.row_date_text is not None
    assert fplan.extra["fast_plain_rows"] is True  # read as the driver's own tuples
    rows = {r["source_pk"]: r["row_date"] for r in fb.records}
    assert rows["1"] == "2025-01-02 03:04:05.000000" and rows["2"] == "2025-01-02 03:04:05.250000"
    assert rows["3"] == "2025-01-02 03:04:05.000001"
    # Date only, Z, an offset, Feb 30: the generic encoder, row dates from Python (offsets converted to UTC).
    assert sorted(k[0] for k in fast.generic_keys) == [4, 5, 6, 7]
    assert rows["4"] == datetime(2025, 1, 2, tzinfo=timezone.utc)
    assert rows["6"] == datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert rows["7"] is None


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)
_datetimes = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)).map(
        lambda d: d.isoformat(" ")),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat(" ", "milliseconds")),
    st.from_regex(r"\A[0-9]{4}-[0-3][0-9]-[0-3][0-9][ T][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\.[0-9]{3}|\.[0-9]{6})?\Z"),
    st.none(), _text)
_numbers = st.one_of(st.none(), st.integers(-10**14, 10**14),
                     st.decimals(min_value=-10**13, max_value=10**13, places=2, allow_nan=False).map(float),
                     st.floats(allow_nan=False, allow_infinity=False, width=64))


@sqlite_only
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), _text), _text, _numbers,
                               _datetimes, st.one_of(st.none(), st.integers(-3, 3))), min_size=1, max_size=12))
def test_sqlite_fast_payloads_property(engines, rows):
    with engines.source.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS typed")
        conn.exec_driver_sql("CREATE TABLE typed (id INTEGER PRIMARY KEY, i INTEGER, txt TEXT, num NUMERIC(12,2), "
                             "dt DATETIME, flag BOOLEAN, moved_at TEXT)")
        conn.connection.dbapi_connection.executemany("INSERT INTO typed VALUES (?, ?, ?, ?, ?, ?, ?)",
                                                    [(n, *r, OLD) for n, r in enumerate(rows, 1)])
    fast = SQLiteSourceOps(engines.source)
    try:
        (_p, fb), (_g, gb) = fetch_both(engines.source, fast, portable(SQLiteSourceOps(engines.source)))
    except sa.exc.StatementError as exc:  # a value the generic path cannot read either (e.g. text as NUMERIC)
        assert isinstance(exc.orig, (TypeError, ValueError))
        return
    assert_same_batches(fb, gb)


# --- PostgreSQL -------------------------------------------------------------------------

PG_DDL = """CREATE TABLE typed (
    id integer PRIMARY KEY, small smallint, big bigint, flag boolean, txt text, vc varchar(20), ch char(5),
    num numeric(12, 2), numx numeric, dbl double precision, raw bytea, uid uuid, day date, ts timestamp,
    tstz timestamptz, tm time, js json, jb jsonb, arr integer[], iv interval, moved_at timestamp)"""


@postgres_only
def test_postgres_fast_payloads_equal_the_generic_encoding(engines):
    _exec(engines.source, PG_DDL)
    long_bytes = bytes(range(256)) * 2  # base64 longer than one 76-character line
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    rows = [
        dict(id=1, small=-5, big=2**63 - 1, flag=True, txt=TRICKY_TEXT, vc="v", ch="ab", num=Decimal("12.30"),
             numx=Decimal("123456789012345678901234567890.000123"), dbl=0.1, raw=long_bytes, uid=uid,
             day="2024-02-29", ts="2025-01-02 03:04:05.5", tstz="2025-01-02 03:04:05+05:30", tm="10:11:12",
             js={"a": [1, 2.5, None], "b": "x"}, jb={"c": {"d": True}}, arr=[1, 2, 3], iv=timedelta(days=1, seconds=2)),
        dict(id=2),
        dict(id=3, flag=False, num=Decimal("0"), numx=Decimal("0.000001"), ts="0001-01-01 00:00:00",
             tstz="9999-12-30 12:00:00+00", day="0001-01-01", raw=b"", txt=""),
        dict(id=4, numx=Decimal("-0.00"), ts="2025-01-02 03:04:05.000001", tstz="2025-01-02 03:04:05.123-03:30"),
        dict(id=5, numx=Decimal("NaN"), dbl=float("nan")),
        # exotic: Python would write these differently from the server's text
        dict(id=20, numx=Decimal("0.0000001")),            # str(Decimal) -> 1E-7
        dict(id=21, numx=Decimal("0.0000000")),            # -> 0E-7
        dict(id=22, ts="infinity"),                          # psycopg2 reads datetime.max
        dict(id=23, day="-infinity"),
        dict(id=24, tstz="1900-01-01 00:00:00+00"),        # Europe/Amsterdam then: +00:19:32
    ]
    table = sa.Table("typed", sa.MetaData(), autoload_with=engines.source)
    blank = {c.name: None for c in table.columns}
    with engines.source.begin() as conn:
        conn.execute(table.insert(), [{**blank, **r, "moved_at": OLD} for r in rows])
    url = engines.source.url
    opts = (url.query.get("options", "") + " -ctimezone=Europe/Amsterdam").strip()
    src = make_engine(url.update_query_dict({"options": opts}))
    try:
        fast = RecPostgres(src)
        (fplan, fb), (_g, gb) = fetch_both(src, fast, portable(PostgresSourceOps(src)))
    finally:
        src.dispose()
    assert_same_batches(fb, gb)
    assert sorted(k[0] for k in fast.generic_keys) == [20, 21, 22, 23, 24]
    layout = fast.layout(fplan)
    # dbl tm js jb arr iv in Python; the 15 others by the server.
    assert (layout.sql_columns, layout.py_columns) == (15, 6)


@postgres_only
def test_postgres_delete_by_array_and_composite_keys(engines):
    md = sa.MetaData()
    table = sa.Table("typed", md, sa.Column("region", sa.String(8), primary_key=True),
                     sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
                     sa.Column("moved_at", sa.DateTime), sa.Column("body", sa.Text))
    uuids = sa.Table("uuids", md, sa.Column("id", sa.Uuid, primary_key=True),
                     sa.Column("moved_at", sa.DateTime), sa.Column("amount", sa.Numeric(10, 3)))
    md.create_all(engines.source)
    old = datetime(2025, 1, 1)
    with engines.source.begin() as conn:
        conn.execute(table.insert(), [{"region": r, "seq": s, "moved_at": old, "body": f"{r}{s}"}
                                      for r in ("eu", "us") for s in range(5)])
        conn.execute(uuids.insert(), [{"id": uuid.uuid4(), "moved_at": old, "amount": Decimal(i) / 8}
                                      for i in range(9)])
    for name, n in (("typed", 10), ("uuids", 9)):
        spec = PolicySpec(name, date_column="moved_at", batch_size=4)
        assert archive_table(engines.source, engines.archive, spec, now=NOW).rows_deleted == n
        with engines.source.connect() as conn:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar() == 0
    assert archived(engines.archive, "typed")['["eu",3]'] == {"region": "eu", "seq": 3,
                                                               "moved_at": "2025-01-01T00:00:00", "body": "eu3"}
    assert sorted(r["amount"] for r in archived(engines.archive, "uuids").values())[:2] == ["0.000", "0.125"]


def _records(n: int, tag: str) -> list[dict]:
    odd = "tab\there, nl\nthere, cr\r, back\\slash, 'quote' \"dq\" é😀"
    return [{"source_pk": f"{i}" if i % 3 else f"k'{i}\\\t", "payload": json.dumps({"i": i, "tag": tag, "odd": odd}),
             "row_date": (datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=i, microseconds=i)
                          if i % 4 else ("2025-01-01 00:00:00.000000" if i % 8 else None))}
            for i in range(n)]


def _stored(engine: sa.Engine, table_name: str) -> dict:
    ar = schema.archived_rows
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ar.c.source_pk, ar.c.payload, ar.c.row_date, ar.c.archived_at, ar.c.run_id)
                            .where(ar.c.table_name == table_name)).all()
    def utc(v):
        return None if v is None else (v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v)
    return {r.source_pk: (r.payload if isinstance(r.payload, dict) else json.loads(r.payload), utc(r.row_date),
                          utc(r.archived_at), r.run_id) for r in rows}


def _upsert_twice(engine: sa.Engine, ops, table_name: str) -> None:
    at = datetime(2025, 6, 1, 12, tzinfo=timezone.utc)
    for tag, run_id, records in (("first", 1, _records(30, "first")), ("second", 2, _records(20, "second"))):
        with engine.connect() as conn, conn.begin():
            assert ops.upsert(conn, table_name, records, at, run_id) == len(records)


@postgres_only
def test_postgres_copy_upsert_stores_what_the_generic_upsert_stores(engines):
    _upsert_twice(engines.archive, PostgresArchiveOps(engines.archive), "fast")
    _upsert_twice(engines.archive, portable(PostgresArchiveOps(engines.archive)), "generic")
    fast, generic = _stored(engines.archive, "fast"), _stored(engines.archive, "generic")
    assert fast == generic and len(fast) == 30
    assert fast["1"][0]["tag"] == "second" and fast["1"][3] == 2   # replaced by the second upsert
    assert fast["25"][0]["tag"] == "first" and fast["25"][3] == 1  # untouched
    assert fast["k'0\\\t"][1] is None


# --- MariaDB / MySQL -------------------------------------------------------------------

MYSQL_DDL = """CREATE TABLE typed (
    id INT PRIMARY KEY, big BIGINT UNSIGNED, ti TINYINT(1), txt TEXT, vc VARCHAR(20), ch CHAR(5),
    num DECIMAL(12, 2), num8 DECIMAL(20, 8), dbl DOUBLE, raw BLOB, vb VARBINARY(300), day DATE,
    dt DATETIME(6), dt0 DATETIME, ts TIMESTAMP(3) NULL, tm TIME, doc JSON, st SET('a', 'b'), en ENUM('x', 'y'),
    moved_at DATETIME) ENGINE=InnoDB"""


def test_mysql_fast_payloads_equal_the_generic_encoding(mysql_db):
    with mysql_db.begin() as conn:
        conn.exec_driver_sql("SET SESSION sql_mode = ''")  # allow zero dates for the odd rows
        conn.exec_driver_sql(MYSQL_DDL)
        ins = sa.text("INSERT INTO typed VALUES (:id, :big, :ti, :txt, :vc, :ch, :num, :num8, :dbl, :raw, :vb, "
                      ":day, :dt, :dt0, :ts, :tm, :doc, :st, :en, :moved)")
        base = dict(big=None, ti=None, txt=None, vc=None, ch=None, num=None, num8=None, dbl=None, raw=None, vb=None,
                    day=None, dt=None, dt0=None, ts=None, tm=None, doc=None, st=None, en=None, moved=OLD)
        rows = [
            dict(id=1, big=2**64 - 1, ti=1, txt="plain \"q\" \\ é😀", vc="v", ch="ab", num="12.30",
                 num8="0.00000001", dbl=0.1, raw=bytes(range(256)), vb=b"\x00\xff", day="2024-02-29",
                 dt="2025-01-02 03:04:05.123456", dt0="2025-01-02 03:04:05", ts="2025-01-02 03:04:05.5",
                 tm="10:11:12", doc='{"a": [1, 2.5]}', st="a,b", en="y"),
            dict(id=2),
            dict(id=3, num="-0.01", dt="2025-01-02 03:04:05.000000", day="0001-01-01", txt=""),
            dict(id=20, day="0000-00-00"),           # zero dates: PyMySQL keeps the text
            dict(id=21, dt0="2025-00-10 00:00:00"),
        ]
        conn.execute(ins, [{**base, **r} for r in rows])
        conn.execute(ins, [{**base, "id": 22, "txt": "ctl\x01\x1f"}])
    fast = RecMySQL(mysql_db)
    (fplan, fb), (_g, gb) = fetch_both(mysql_db, fast, portable(MySQLSourceOps(mysql_db)))
    # MariaDB writes control characters as \u001F where orjson writes \u001f: the same JSON string.
    assert_same_batches(fb, gb, other_bytes=frozenset({"22"}))
    assert "\\u001F" in fb.records[-1]["payload"]
    assert sorted(k[0] for k in fast.generic_keys) == [20, 21]
    layout = fast.layout(fplan)
    # num8 (8 decimals) dbl tm st in Python; the 16 others by the server (MariaDB's JSON is LONGTEXT:
    # reflected as text, read as text by the generic path too).
    assert (layout.sql_columns, layout.py_columns) == (16, 4)


@pytest.mark.parametrize("no_backslash_escapes", [False, True])
def test_mysql_literal_upsert_stores_what_the_generic_upsert_stores(mysql_db, no_backslash_escapes):
    schema.metadata.create_all(mysql_db)
    if no_backslash_escapes:
        @sa.event.listens_for(mysql_db, "connect")
        def _mode(dbapi_conn, _record):
            with dbapi_conn.cursor() as cur:
                cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
        mysql_db.dispose()
    _upsert_twice(mysql_db, MySQLArchiveOps(mysql_db), "fast")
    _upsert_twice(mysql_db, portable(MySQLArchiveOps(mysql_db)), "generic")
    fast, generic = _stored(mysql_db, "fast"), _stored(mysql_db, "generic")
    assert fast == generic and len(fast) == 30
    assert fast["1"][0]["tag"] == "second" and fast["25"][0]["tag"] == "first"


def test_mysql_fast_archive_end_to_end(mysql_db, tmp_path):
    source = make_engine(f"sqlite:///{tmp_path / 'source.db'}")
    schema.metadata.create_all(mysql_db)
    try:
        _exec(source, "CREATE TABLE typed (id INTEGER PRIMARY KEY, moved_at DATETIME, amount NUMERIC(12,2), "
                      "note TEXT)")
        with source.begin() as conn:
            conn.execute(sa.text("INSERT INTO typed VALUES (:i, :m, :a, :n)"),
                         [{"i": i, "m": "2025-01-01 10:00:00", "a": i / 4, "n": f"it's \\ {i}"} for i in range(1, 40)])
        spec = PolicySpec("typed", date_column="moved_at", batch_size=7)
        assert archive_table(source, mysql_db, spec, now=NOW).rows_deleted == 39
        arc = archived(mysql_db, "typed")
        assert arc["5"] == {"id": 5, "moved_at": "2025-01-01T10:00:00", "amount": "1.25", "note": "it's \\ 5"}
    finally:
        source.dispose()


# --- PostgreSQL streaming: COPY while the source is read -------------------------------

class SmallChunks(PostgresSourceOps):
    stream_first_rows = 2
    stream_chunk_rows = 3


def _orders(engine: sa.Engine, n: int) -> sa.Table:
    md = sa.MetaData()
    table = sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("moved_at", sa.DateTime(timezone=True)), sa.Column("note", sa.Text))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "moved_at": datetime(2025, 1, 1, tzinfo=timezone.utc),
                                       "note": f"n{i}"} for i in range(1, n + 1)])
    return table


ORDERS = PolicySpec("orders", date_column="moved_at", batch_size=10)


@postgres_only
def test_postgres_streamed_batches_in_many_chunks(engines):
    _orders(engines.source, 25)
    result = archive_table(engines.source, engines.archive, ORDERS, now=NOW, source_ops=SmallChunks(engines.source))
    assert (result.rows_read, result.rows_archived, result.rows_deleted, result.batches) == (25, 25, 25, 3)
    arc = archived(engines.archive, "orders")
    assert sorted(map(int, arc)) == list(range(1, 26))
    assert arc["7"] == {"id": 7, "moved_at": "2025-01-01T00:00:00+00:00", "note": "n7"}


@postgres_only
def test_postgres_rows_archived_already_are_replaced_in_place(engines):
    """A rerun after a crash: COPY meets existing copies, the batch goes through ON CONFLICT instead."""
    _orders(engines.source, 12)
    ar = schema.archived_rows
    with engines.archive.begin() as conn:
        conn.execute(ar.insert(), [{"table_name": "orders", "source_pk": str(i), "payload": {"stale": True},
                                    "archived_at": NOW - timedelta(days=1), "run_id": 1} for i in (4, 11)])
        old_ids = dict(conn.execute(sa.select(ar.c.source_pk, ar.c.id)).all())
    result = archive_table(engines.source, engines.archive, ORDERS, now=NOW, run_id=2,
                           source_ops=SmallChunks(engines.source))
    assert result.rows_deleted == 12
    with engines.archive.connect() as conn:
        rows = {r.source_pk: r for r in conn.execute(sa.select(ar).where(ar.c.table_name == "orders"))}
    assert len(rows) == 12 and {k: rows[k].id for k in old_ids} == old_ids  # updated in place
    assert rows["4"].payload == {"id": 4, "moved_at": "2025-01-01T00:00:00+00:00", "note": "n4"}
    assert {r.run_id for r in rows.values()} == {2}


@postgres_only
def test_postgres_source_failure_while_streaming_moves_nothing(engines, databases):
    """A row of the batch is locked elsewhere: the FOR UPDATE read fails mid-stream (lock timeout); the
    error names the source side, the archive transaction rolls back, nothing is deleted."""
    from archiver.engine.errors import DatabaseError
    _orders(engines.source, 10)
    url = engines.source.url
    src = make_engine(url.update_query_dict({"options": (url.query.get("options", "") + " -clock_timeout=300").strip()}))
    try:
        with engines.source.connect() as other:
            other.execute(sa.text("SELECT 1 FROM orders WHERE id = 6 FOR UPDATE"))
            with pytest.raises(DatabaseError) as err:
                archive_table(src, engines.archive, ORDERS, now=NOW, source_ops=SmallChunks(src))
            other.rollback()
    finally:
        src.dispose()
    assert err.value.side == "source" and "lock not available" in str(err.value)
    assert archived(engines.archive, "orders") == {}
    with engines.source.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM orders")).scalar() == 10


@postgres_only
def test_an_archive_side_that_skips_rows_stops_the_batch(engines):
    """The engine deletes only when the archive upsert took every streamed row."""
    from archiver.engine.errors import EngineError

    class Lossy(PostgresArchiveOps):
        def upsert_stream(self, conn, table_name, chunks, archived_at, run_id):
            chunks = iter(chunks)
            next(chunks)  # drops the first chunk
            return super().upsert_stream(conn, table_name, chunks, archived_at, run_id)

    class LossyCopy(PostgresArchiveOps):
        def copy_in(self, conn, source):
            class SkipFirstLine:
                def __init__(self):
                    self.first = True

                def read(self, size=-1):
                    data = source.read(size)
                    if self.first and data:
                        self.first = False
                        data = data[data.index(b"\n") + 1:]
                    return data

                readline = read
            return super().copy_in(conn, SkipFirstLine())

    _orders(engines.source, 10)
    # One batch after another, streamed into COPY (the record path).
    with pytest.raises(EngineError, match="took 8 of 10 rows"):
        archive_table(engines.source, engines.archive, ORDERS, now=NOW, source_ops=SmallChunks(engines.source),
                      archive_ops=Lossy(engines.archive), pipeline=False)
    # Pipelined, COPY to COPY in bytes (the passthrough).
    with pytest.raises(EngineError, match="took 9 of 10 rows"):
        archive_table(engines.source, engines.archive, ORDERS, now=NOW, archive_ops=LossyCopy(engines.archive))
    assert archived(engines.archive, "orders") == {}
    with engines.source.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM orders")).scalar() == 10


def test_mysql_packed_rows_equal_the_generic_encoding(mysql_db):
    """Integer key and every column rendered by the server: one packed text column per row."""
    with mysql_db.begin() as conn:
        conn.exec_driver_sql("SET SESSION sql_mode = ''")
        conn.exec_driver_sql("CREATE TABLE typed (id BIGINT PRIMARY KEY, moved_at DATETIME, d DATE, "
                             "amount DECIMAL(12,2), note TEXT) ENGINE=InnoDB")
        conn.execute(sa.text("INSERT INTO typed VALUES (:i, :m, :d, :a, :n)"), [
            {"i": 1, "m": OLD, "d": "2024-02-29", "a": "12.30", "n": "tab\there \"q\" \\ é"},
            {"i": 2, "m": "2025-01-01 10:11:12", "d": None, "a": None, "n": None},
            {"i": 3, "m": "0000-00-00 00:00:00", "d": "2025-01-01", "a": "-1.00", "n": "zero date: no row date"},
            {"i": 4, "m": OLD, "d": "0000-00-00", "a": "0.05", "n": "exotic payload"},
            {"i": 2**40, "m": OLD, "d": "2025-01-01", "a": "1.00", "n": ""},
        ])
    fast = RecMySQL(mysql_db)
    (fplan, fb), (_g, gb) = fetch_both(mysql_db, fast, portable(MySQLSourceOps(mysql_db)))
    assert fplan.extra["mysql_packed"] is not None
    assert_same_batches(fb, gb)
    assert fast.generic_keys == [(3,), (4,)]  # zero dates in the payload
    dates = {r["source_pk"]: r["row_date"] for r in fb.records}
    assert dates["2"] == "2025-01-01 10:11:12.000000" and dates["3"] is None


def test_mysql_archive_keeps_keys_that_differ_only_in_case(mysql_db, tmp_path):
    """MySQL's default collation would make 'a' and 'A' one archived row: the second row's upsert would
    overwrite the first's copy and both would be deleted from the source (a lost row)."""
    source = make_engine(f"sqlite:///{tmp_path / 'source.db'}")
    schema.metadata.create_all(mysql_db)
    try:
        _exec(source, "CREATE TABLE t (k TEXT PRIMARY KEY, moved_at TEXT, v TEXT)",
              "INSERT INTO t VALUES ('a', '2025-01-01', 'lower'), ('A', '2025-01-01', 'upper')")
        result = archive_table(source, mysql_db, PolicySpec("t", date_column="moved_at"), now=NOW)
        assert result.rows_deleted == 2
        assert archived(mysql_db, "t") == {"a": {"k": "a", "moved_at": "2025-01-01", "v": "lower"},
                                           "A": {"k": "A", "moved_at": "2025-01-01", "v": "upper"}}
    finally:
        source.dispose()


# --- PostgreSQL purge by ctid ----------------------------------------------------------

@postgres_only
@pytest.mark.parametrize("bulk", [False, True], ids=["by-archived_at", "physical-order"])
def test_postgres_purge_deletes_exactly_the_expired_rows_of_the_table(engines, bulk):
    from archiver.engine.purge import purge_table

    class Forced(PostgresArchiveOps):
        def _bulk_purge(self, conn, expired):
            return bulk

    ar = schema.archived_rows
    rows = []
    for i in range(1, 121):  # interleaved tables and ages, so every batch mixes them
        table = "orders" if i % 3 else "customers"
        age = timedelta(days=400 - i) if i % 4 else timedelta(days=1)
        rows.append({"table_name": table, "source_pk": str(i), "payload": {"i": i},
                     "archived_at": NOW - age, "row_date": None})
    with engines.archive.begin() as conn:
        conn.execute(ar.insert(), rows)
    ops = Forced(engines.archive)
    spec = PolicySpec("orders", delete_after_days=10, batch_size=7)
    result = purge_table(engines.archive, spec, now=NOW, archive_ops=ops)
    expected = {r["source_pk"] for r in rows if r["table_name"] == "orders" and r["archived_at"] < NOW - timedelta(days=10)}
    assert result.rows_deleted == len(expected) == 60 and result.batches == 9
    with engines.archive.connect() as conn:
        left = {(t, pk) for t, pk in conn.execute(sa.select(ar.c.table_name, ar.c.source_pk))}
    assert left == {(r["table_name"], r["source_pk"]) for r in rows} - {("orders", pk) for pk in expected}
    assert purge_table(engines.archive, spec, now=NOW, archive_ops=Forced(engines.archive)).rows_deleted == 0


@sqlite_only
def test_sqlite_archive_commits_are_synced_during_a_run(engines):
    """synchronous=FULL on the archive connection while batches commit (WAL+NORMAL could lose the
    last archive commits on power loss after their source DELETE reached the disk); restored after."""
    seen = []

    class Watch(SQLiteArchiveOps):
        def upsert(self, conn, table_name, records, archived_at, run_id):
            seen.append(conn.connection.dbapi_connection.execute("PRAGMA synchronous").fetchone()[0])
            return super().upsert(conn, table_name, records, archived_at, run_id)

    _exec(engines.source, "CREATE TABLE typed (id INTEGER PRIMARY KEY, moved_at TEXT)",
          "INSERT INTO typed VALUES (1, '2025-01-01'), (2, '2025-01-01'), (3, '2025-01-01')")
    spec = PolicySpec("typed", date_column="moved_at", batch_size=2)
    assert archive_table(engines.source, engines.archive, spec, now=NOW, archive_ops=Watch(engines.archive)) \
        .rows_deleted == 3
    assert seen == [2, 2]  # FULL
    with engines.archive.connect() as conn:
        assert conn.connection.dbapi_connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL again
