"""In-server moves: a MariaDB source and archive on one server move rows with INSERT … SELECT.

The archived rows must be exactly what the generic path stores (same keys, payloads, row
dates, run ids), rows the server cannot render must take the generic path, every batch
must be one atomic transaction (never a row in both places, never in neither), the
batch's rows must be locked while it is moved, and the path must stay off where it
cannot be used. Skipped when no local MariaDB answers; the crash tests (SIGKILL) are in
tests/test_crash_safety.py.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from archiver.engine import schema
from archiver.engine.archive import archive_table
from archiver.engine.connections import make_engine
from archiver.engine.errors import EngineError
from archiver.engine.backends import source_ops_for
from archiver.engine.backends.mysql import MySQLSourceOps, source as mysql_source
from archiver.engine.backends.mysql.in_server import InServerMove, same_server_database, open_in_server_move
from archiver.engine.check import check_policy
from archiver.engine.policy import PolicySpec
from tests.engine_support import NOW, RecMySQL, archived, assert_no_loss, source_rows
from tests.mariadb_support import Server, pad_table

OLD = (NOW - timedelta(days=90)).replace(tzinfo=None)
NEW = (NOW - timedelta(days=1)).replace(tzinfo=None)

# Small tables here: batches overlap (and so move inside the server) anyway. On tables this
# small two DELETEs in flight may deadlock, which the pipeline redoes alone (extra["redone"]);
# test_a_large_table_moves_pipelined_as_one_batch_at_a_time_does checks one at the threshold.
pytestmark = pytest.mark.usefixtures("overlap_small_tables")


TYPED_DDL = """CREATE TABLE typed (
    id BIGINT PRIMARY KEY, created_at DATETIME(6) NOT NULL, big BIGINT UNSIGNED, ti TINYINT(1), txt TEXT,
    vc VARCHAR(20), ch CHAR(5), num DECIMAL(12, 2), raw BLOB, day DATE, dt DATETIME(6), ts TIMESTAMP(3) NULL,
    en ENUM('x', 'y'), KEY ix_typed_created_at (created_at)) ENGINE=InnoDB"""
TRICKY = "plain \"q\" \\ back/slash é€😀\u2028 tab\there"


def typed_rows(n: int = 23, new_every: int = 5) -> list[dict]:
    rows = []
    for i in range(1, n + 1):
        rows.append(dict(
            id=i * 10, created_at=NEW if i % new_every == 0 else OLD.replace(microsecond=999_999 - i),
            big=2**64 - i, ti=i % 2,
            txt=None if i % 7 == 0 else f"{TRICKY} {i}", vc=f"v{i}", ch="ab", num=f"{i}.{i % 100:02d}",
            raw=bytes(range(i, i + 40)), day="2024-02-29", dt=f"2025-01-02 03:04:05.{i:06d}",
            ts="2025-01-02 03:04:05.500" if i % 3 else None, en="xy"[i % 2]))
    return rows


def make_typed(engine: sa.Engine, rows: list[dict], sql_mode: str | None = None) -> None:
    cols = list(rows[0])
    with engine.begin() as conn:
        if sql_mode is not None:
            conn.exec_driver_sql(f"SET SESSION sql_mode = '{sql_mode}'")
        conn.exec_driver_sql(TYPED_DDL)
        conn.execute(sa.text(f"INSERT INTO typed ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"),
                     rows)


def stored(engine: sa.Engine, table: str) -> dict[str, tuple]:
    """source_pk -> (payload text, row_date, archived_at, run_id) as stored."""
    ar = schema.archived_rows
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ar.c.source_pk, sa.cast(ar.c.payload, sa.Text), ar.c.row_date,
                                      ar.c.archived_at, ar.c.run_id).where(ar.c.table_name == table)).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def pair(server: Server, *, same_database: bool = False) -> tuple[sa.Engine, sa.Engine]:
    _, source = server.database()
    archive = source if same_database else server.database()[1]
    schema.metadata.create_all(archive)
    return source, archive


def qualifying(rows: list[dict]) -> set[str]:
    return {str(r["id"]) for r in rows if r["created_at"] < NOW.replace(tzinfo=None) - timedelta(days=30)}


def test_in_server_move_stores_what_the_generic_path_stores(server):
    rows = typed_rows()
    results, archives = {}, {}
    spec = PolicySpec("typed", batch_size=4)
    for mode in ("in_server", "generic"):
        source, archive = pair(server)
        make_typed(source, rows)
        original = source_rows(source, "typed")
        results[mode] = archive_table(source, archive, spec, now=NOW, run_id=7, in_server=mode == "in_server")
        archives[mode] = archive
        src, arc = source_rows(source, "typed"), archived(archive, "typed")
        assert set(arc) == qualifying(rows) and set(src) == set(original) - qualifying(rows)
        assert_no_loss(original, src, arc)
    assert results["in_server"].extra.get("in_server") is True
    assert "in_server" not in results["generic"].extra
    fast, generic = stored(archives["in_server"], "typed"), stored(archives["generic"], "typed")
    assert fast.keys() == generic.keys() and len(fast) == 19
    for key, (payload, *meta) in fast.items():
        assert payload == generic[key][0], key  # byte for byte (no control characters here)
        assert list(json.loads(payload)) == list(json.loads(generic[key][0]))
        assert meta == list(generic[key][1:]), key
    assert fast["10"][3] == 7 and fast["10"][1] == OLD  # row_date: archived_rows keeps whole seconds
    for r in results.values():
        assert (r.rows_read, r.rows_archived, r.rows_deleted, r.batches) == (19, 19, 19, 5)


def test_rows_the_server_cannot_render_take_the_generic_path(server):
    rows = typed_rows(12, new_every=100)
    rows[5]["day"] = "0000-00-00"  # id 60, in the second batch of 4: PyMySQL reads the zero date as text
    source, archive = pair(server)
    make_typed(source, rows, sql_mode="")
    original = source_rows(source, "typed")
    ops = RecMySQL(source)
    result = archive_table(source, archive, PolicySpec("typed", batch_size=4), now=NOW, source_ops=ops)
    assert result.extra.get("in_server") is True
    assert (60,) in ops.generic_keys  # the batch holding it went the generic way ...
    assert len(ops.generic_keys) == 1 and result.extra["redone"] >= 1
    src, arc = source_rows(source, "typed"), archived(archive, "typed")
    assert src == {} and set(arc) == {str(r["id"]) for r in rows}
    assert_no_loss(original, src, arc)
    assert arc["60"]["day"] == "0000-00-00"
    assert (result.rows_deleted, result.batches) == (12, 3)  # ... and the others went in-server


@pytest.mark.parametrize("exotic, batch_size", [
    ({10}, 3), ({300}, 3), ({40, 50}, 2), ({20, 70, 80, 150, 300}, 2), ({60, 130, 140, 220}, 4),
    (set(range(10, 310, 10)), 5),
])
def test_fallbacks_anywhere_in_the_pipeline(server, exotic, batch_size):
    """Batches the server cannot copy, first, last, adjacent or everywhere: each goes the generic
    way while the batches around it are in flight, and every row ends up archived once."""
    rows = typed_rows(30, new_every=100)
    for r in rows:
        if r["id"] in exotic:
            r["day"] = "0000-00-00"
    source, archive = pair(server)
    make_typed(source, rows, sql_mode="")
    original = source_rows(source, "typed")
    ops = RecMySQL(source)
    result = archive_table(source, archive, PolicySpec("typed", batch_size=batch_size), now=NOW, source_ops=ops)
    assert result.extra.get("in_server") is True
    assert {k[0] for k in ops.generic_keys} == exotic
    assert result.extra["redone"] >= 1
    assert source_rows(source, "typed") == {} and archived(archive, "typed") == original
    assert (result.rows_read, result.rows_archived, result.rows_deleted) == (30, 30, 30)


def test_control_characters_are_the_same_json_string(server):
    rows = typed_rows(3, new_every=100)
    rows[1]["txt"] = "ctl\x01\x1f end"
    source, archive = pair(server)
    make_typed(source, rows)
    original = source_rows(source, "typed")
    result = archive_table(source, archive, PolicySpec("typed"), now=NOW)
    assert result.extra.get("in_server") is True
    # MariaDB writes \u001F where the Python encoder writes \u001f: the same JSON string.
    assert "\\u001F" in stored(archive, "typed")["20"][0]
    assert archived(archive, "typed") == original


def test_archive_in_the_source_database_itself(server):
    rows = typed_rows(9)
    source, archive = pair(server, same_database=True)
    make_typed(source, rows)
    original = source_rows(source, "typed")
    result = archive_table(source, archive, PolicySpec("typed", batch_size=2), now=NOW)
    assert result.extra.get("in_server") is True and result.rows_deleted == len(qualifying(rows))
    assert_no_loss(original, source_rows(source, "typed"), archived(archive, "typed"))
    again = archive_table(source, archive, PolicySpec("typed", batch_size=2), now=NOW)
    assert again.rows_deleted == 0 and again.batches == 0


def test_custom_criteria_narrow_the_move(server):
    rows = typed_rows(20)
    source, archive = pair(server)
    make_typed(source, rows)
    spec = PolicySpec("typed", batch_size=3, custom_criteria="ti = 1 AND vc <> 'v3'")
    result = archive_table(source, archive, spec, now=NOW)
    expected = {str(r["id"]) for r in rows if str(r["id"]) in qualifying(rows) and r["ti"] == 1 and r["vc"] != "v3"}
    assert result.extra.get("in_server") is True
    assert set(archived(archive, "typed")) == expected and result.rows_deleted == len(expected)


def test_rows_already_archived_are_replaced_not_duplicated(server):
    rows = typed_rows(8, new_every=100)
    source, archive = pair(server)
    make_typed(source, rows)
    # A copy left by an earlier crash of the generic path, with stale values, and an unrelated row.
    with archive.begin() as conn:
        conn.execute(schema.archived_rows.insert(), [
            {"table_name": "typed", "source_pk": "30", "payload": {"stale": True}, "archived_at": NOW, "run_id": 1},
            {"table_name": "other", "source_pk": "30", "payload": {"keep": True}, "archived_at": NOW, "run_id": 1}])
    original = source_rows(source, "typed")
    result = archive_table(source, archive, PolicySpec("typed", batch_size=3), now=NOW, run_id=2)
    assert result.extra.get("in_server") is True and result.rows_deleted == 8
    assert archived(archive, "typed") == original
    assert stored(archive, "typed")["30"][3] == 2
    assert archived(archive, "other") == {"30": {"keep": True}}


def test_the_batch_rows_are_locked_while_it_moves_and_a_row_added_meanwhile_moves_too(server):
    rows = typed_rows(12, new_every=100)  # ids 10..120; batches of 3: (0,30], (30,60], ...
    source, archive = pair(server)
    make_typed(source, rows)
    attempts: dict[str, str] = {}
    seen = {"after_select": 0}

    def probe(name: str) -> None:
        if name != "after_select":
            return
        seen[name] += 1
        if seen[name] != 2:
            return
        # Batch 2 (ids 40, 50, 60) is locked now: another session cannot change a row of it.
        # It can add a qualifying row inside its key range (READ COMMITTED takes no gap locks).
        with source.connect() as other:
            other.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
            for label, stmt in (("update", "UPDATE typed SET vc = 'changed' WHERE id = 50"),
                                ("insert", f"INSERT INTO typed (id, created_at, vc) VALUES (55, '{OLD}', 'new')")):
                try:
                    other.exec_driver_sql(stmt)
                    other.commit()
                    attempts[label] = "done"
                except sa.exc.OperationalError as exc:
                    attempts[label] = f"error {exc.orig.args[0]}"
                    other.rollback()

    original = source_rows(source, "typed")
    result = archive_table(source, archive, PolicySpec("typed", batch_size=3), now=NOW, checkpoint=probe)
    assert attempts == {"update": "error 1205", "insert": "done"}  # the update timed out on the row lock
    # Row 55 made batch 2's copy one row more than it had locked: the batch was rolled back
    # and moved again by key (the generic way), row 55 with it.
    assert result.extra.get("in_server") is True and result.extra["redone"] >= 1
    assert result.rows_deleted == 13 and source_rows(source, "typed") == {}
    arc = archived(archive, "typed")
    assert set(arc) == set(original) | {"55"} and arc["50"] == original["50"]
    assert_no_loss({**original, "55": arc["55"]}, {}, arc)


def test_a_delete_that_does_not_match_rolls_the_whole_batch_back(server, monkeypatch):
    rows = typed_rows(15, new_every=100)
    source, archive = pair(server)
    make_typed(source, rows)
    original = source_rows(source, "typed")
    real = mysql_source.execute_literal  # the key-list DELETE's statement (MySQLSourceOps.delete_key_text)

    def short_delete(conn, sql, label):
        # Every batch after the first deletes one row too few, as if a row had vanished under it.
        if sql.startswith("DELETE") and "IN (10," not in sql:
            sql = sql[:sql.rindex(",")] + ")"
        return real(conn, sql, label)

    monkeypatch.setattr(mysql_source, "execute_literal", short_delete)
    with pytest.raises(EngineError, match="matched 2 of 3 locked rows"):
        archive_table(source, archive, PolicySpec("typed", batch_size=3), now=NOW)
    src, arc = source_rows(source, "typed"), archived(archive, "typed")
    assert_no_loss(original, src, arc)
    assert not set(src) & set(arc)  # rolled back as a whole: the copies went with the delete
    assert {"40", "50", "60"} <= set(src)
    assert set(arc) == {"10", "20", "30"}
    monkeypatch.setattr(mysql_source, "execute_literal", real)
    archive_table(source, archive, PolicySpec("typed", batch_size=3), now=NOW)
    assert source_rows(source, "typed") == {} and archived(archive, "typed") == original


def test_stop_between_batches_and_progress_in_order(server):
    rows = typed_rows(30, new_every=100)
    source, archive = pair(server)
    make_typed(source, rows)
    original = source_rows(source, "typed")
    progress = []
    result = archive_table(source, archive, PolicySpec("typed", batch_size=4), now=NOW,
                           should_stop=lambda: len(progress) >= 2, on_batch=progress.append)
    assert result.stopped and result.extra.get("in_server") is True
    src, arc = source_rows(source, "typed"), archived(archive, "typed")
    assert_no_loss(original, src, arc)
    assert not set(src) & set(arc)
    assert len(arc) == result.rows_deleted == 4 * result.batches and 2 <= result.batches <= 3
    assert [p.batch for p in progress] == list(range(1, result.batches + 1))
    assert [p.total_rows for p in progress] == [4 * i for i in range(1, result.batches + 1)]
    rest = archive_table(source, archive, PolicySpec("typed", batch_size=4), now=NOW)
    assert rest.rows_deleted == 30 - result.rows_deleted
    assert archived(archive, "typed") == original


@pytest.mark.parametrize("ddl, why", [
    ("CREATE TABLE t (a INT, b INT, created_at DATETIME, PRIMARY KEY (a, b))", "composite key"),
    ("CREATE TABLE t (a VARCHAR(10) PRIMARY KEY, b INT, created_at DATETIME)", "text key"),
    ("CREATE TABLE t (a INT PRIMARY KEY, b DOUBLE, created_at DATETIME)", "a column encoded in Python"),
])
def test_not_used_where_the_server_cannot_write_the_whole_record(server, ddl, why):
    source, archive = pair(server)
    with source.begin() as conn:
        conn.exec_driver_sql(ddl)
        conn.execute(sa.text("INSERT INTO t VALUES (:a, :b, :c)"),
                     [{"a": i, "b": i, "c": OLD} for i in range(1, 6)])
    original = source_rows(source, "t")
    result = archive_table(source, archive, PolicySpec("t", batch_size=2), now=NOW)
    assert "in_server" not in result.extra, why
    assert result.rows_deleted == 5 and archived(archive, "t") == original


def test_not_used_when_the_source_login_cannot_write_the_archive(server):
    rows = typed_rows(7)
    src_name, root_source = server.database()
    arc_name, archive = server.database()
    schema.metadata.create_all(archive)
    make_typed(root_source, rows)
    user = server.user(f"GRANT SELECT, DELETE ON `{src_name}`.* TO {{user}}",
                       f"GRANT SELECT ON `{arc_name}`.* TO {{user}}")
    source = server.engine(src_name, user=user)
    original = source_rows(source, "typed")
    result = archive_table(source, archive, PolicySpec("typed", batch_size=2), now=NOW)
    assert "in_server" not in result.extra
    assert result.rows_deleted == len(qualifying(rows))
    assert_no_loss(original, source_rows(source, "typed"), archived(archive, "typed"))


def test_the_probe_needs_one_server(server, tmp_path):
    rows = typed_rows(4)
    source, archive = pair(server)
    make_typed(source, rows)
    sqlite_archive = make_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    schema.metadata.create_all(sqlite_archive)
    try:
        result = archive_table(source, sqlite_archive, PolicySpec("typed"), now=NOW)
        assert "in_server" not in result.extra and result.rows_deleted == 4
    finally:
        sqlite_archive.dispose()
    ops = source_ops_for(source)
    with source.connect() as sconn, archive.connect() as aconn:
        # Both on this server: the archive connection sees the source connection's named lock.
        assert same_server_database(sconn, aconn) == archive.url.database
        plan = check_policy(sconn, PolicySpec("typed"), ops, NOW)
        sconn.rollback()
        mover = open_in_server_move(ops, plan, sconn, aconn, archive, now=NOW, run_id=None,
                                    checkpoint=lambda _name: None)
        assert isinstance(mover, InServerMove)
        mover.close()


def test_a_large_table_moves_pipelined_as_one_batch_at_a_time_does(server, monkeypatch):
    """At the real size threshold (10,000 rows), in-server and pipelined runs store what one batch
    at a time stores, redoing a batch alone at most rarely; a smaller table runs one at a time.

    (MariaDB 10.11 here: the DELETE of one particular batch of this table, by key list, waits
    for a row of the batch before it, whose own DELETE waits for this one; InnoDB ends the
    deadlock by rolling one back, and the pipeline moves that batch again alone.)"""
    monkeypatch.setattr(MySQLSourceOps, "min_pipeline_rows", 10_000)
    stored_by = {}
    for mode in ("in_server", "pipelined", "sequential"):
        source, archive = pair(server)
        with source.begin() as conn:
            conn.exec_driver_sql(EVENTS_DDL)
        pad_table(source, "events", 1, 12_000, EVENTS_VALUES)
        original = source_rows(source, "events")
        result = archive_table(source, archive, PolicySpec("events", batch_size=500), now=NOW, run_id=1,
                               in_server=mode == "in_server", pipeline=mode != "sequential")
        assert result.extra.get("redone", 0) <= 2, mode
        assert result.extra.get("in_server", False) is (mode == "in_server")
        assert result.extra.get("pipelined", False) is (mode == "pipelined")
        assert result.rows_deleted == result.rows_archived == 10_800 and result.batches == 22
        assert_no_loss(original, source_rows(source, "events"), archived(archive, "events"))
        stored_by[mode] = stored(archive, "events")
    assert stored_by["in_server"] == stored_by["pipelined"] == stored_by["sequential"]

    source, archive = pair(server)  # the same table under the threshold: one batch at a time
    with source.begin() as conn:
        conn.exec_driver_sql(EVENTS_DDL)
    pad_table(source, "events", 1, 3_000, EVENTS_VALUES)
    result = archive_table(source, archive, PolicySpec("events", batch_size=500), now=NOW)
    assert "in_server" not in result.extra and "pipelined" not in result.extra and result.rows_deleted == 2_700


EVENTS_DDL = """CREATE TABLE events (id BIGINT PRIMARY KEY, created_at DATETIME NOT NULL, user_id INT NOT NULL,
    kind VARCHAR(32) NOT NULL, amount DECIMAL(12, 2), note TEXT, KEY ix_events_created_at (created_at)) ENGINE=InnoDB"""
# Nine rows in ten are 90 days old, the tenth a day old; notes with quotes and backslashes.
EVENTS_VALUES = (f"IF(seq % 10 = 0, '{NEW}', '{OLD}') - INTERVAL seq SECOND, seq % 97, "
                 "ELT(1 + seq % 3, 'click', 'view', 'buy'), (seq % 10000) / 100, "
                 "CONCAT('note \"', seq, '\" \\\\ ', MD5(seq))")


# --- objects: a table with child tables ------------------------------------------------------

OBJECT_DDL = [
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, created_at DATETIME(6) NOT NULL, total DECIMAL(12, 2), note TEXT, "
    "KEY ix_orders_created_at (created_at)) ENGINE=InnoDB",
    "CREATE TABLE items (id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL, sku VARCHAR(20), qty INT, day DATE, "
    "CONSTRAINT fk_items FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE) ENGINE=InnoDB",
    "CREATE TABLE item_notes (id BIGINT PRIMARY KEY, item_id BIGINT, body TEXT, "
    "CONSTRAINT fk_notes FOREIGN KEY (item_id) REFERENCES items (id) ON DELETE CASCADE) ENGINE=InnoDB",
    "CREATE TABLE shipments (id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL, carrier TEXT, "
    "CONSTRAINT fk_ship FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE) ENGINE=InnoDB",
]


def make_objects(engine: sa.Engine, zero_date_item: int | None = None) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION sql_mode = ''")
        for sql in OBJECT_DDL:
            conn.exec_driver_sql(sql)
        conn.execute(sa.text("INSERT INTO orders VALUES (:id, :at, :total, :note)"),
                     [{"id": o, "at": NEW if o > 20 else OLD, "total": f"{o}.50", "note": f"{TRICKY} {o}"}
                      for o in range(1, 26)])
        conn.execute(sa.text("INSERT INTO items VALUES (:id, :o, :sku, :qty, :day)"),
                     [{"id": o * 10 + i, "o": o, "sku": f"SKU-{i}", "qty": i,
                       "day": "0000-00-00" if o * 10 + i == zero_date_item else "2024-02-29"}
                      for o in range(1, 26) for i in range(1, 4)])
        conn.execute(sa.text("INSERT INTO item_notes VALUES (:id, :item, :body)"),
                     [{"id": n, "item": item, "body": f"note {n}"}
                      for n, item in enumerate([11, 11, 52, 73, 211, None], 1)])
        conn.execute(sa.text("INSERT INTO shipments VALUES (:id, :o, 'ups')"), [{"id": o, "o": o} for o in range(1, 26, 2)])


def stored_objects(engine: sa.Engine) -> dict[tuple[str, str], tuple]:
    """(table, source_pk) -> its archived row as stored, the root's key in place of its id."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT a.table_name, a.source_pk, CAST(a.payload AS CHAR), a.row_date, a.archived_at, a.run_id, "
            "r.source_pk, a.depth FROM archived_rows a LEFT JOIN archived_rows r ON r.id = a.root_id").all()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def left_objects(engine: sa.Engine) -> dict[str, set[int]]:
    with engine.connect() as conn:
        return {t: {r[0] for r in conn.exec_driver_sql(f"SELECT id FROM {t}")}
                for t in ("orders", "items", "item_notes", "shipments")}


@pytest.mark.parametrize("zero_date_item", [None, 72], ids=["server-rendered", "a child row the server cannot render"])
def test_objects_move_inside_the_server_as_the_generic_path_moves_them(server, zero_date_item):
    results, archives, sources = {}, {}, {}
    spec = PolicySpec("orders", batch_size=6, batch_mode="fixed")
    for mode in ("in_server", "generic"):
        source, archive = pair(server)
        make_objects(source, zero_date_item)
        ops = RecMySQL(source)
        results[mode] = archive_table(source, archive, spec, now=NOW, run_id=7, in_server=mode == "in_server",
                                      source_ops=ops)
        archives[mode], sources[mode] = archive, source
    fast, slow = results["in_server"], results["generic"]
    assert fast.extra.get("in_server") is True and "in_server" not in slow.extra
    assert fast.extra.get("redone", 0) == (0 if zero_date_item is None else 1)
    assert (fast.rows_archived, fast.rows_deleted) == (slow.rows_archived, slow.rows_deleted) == (20, 20)
    assert fast.children == slow.children == {"items": 60, "item_notes": 4, "shipments": 10}
    stored = stored_objects(archives["in_server"])
    assert stored == stored_objects(archives["generic"])  # payloads, dates, run ids, roots and depths alike
    assert stored[("item_notes", "1")][4:] == ("1", 2) and stored[("items", "11")][4:] == ("1", 1)
    assert stored[("items", "11")][1] == stored[("orders", "1")][1]  # dated by its root
    left = left_objects(sources["in_server"])
    assert left == left_objects(sources["generic"])
    assert left == {"orders": set(range(21, 26)), "items": {o * 10 + i for o in range(21, 26) for i in range(1, 4)},
                    "item_notes": {5, 6}, "shipments": {21, 23, 25}}


class _Stop(Exception):
    pass


def test_an_object_batch_is_one_transaction_with_its_children(server):
    source, archive = pair(server)
    make_objects(source)
    copies = []

    def fail_after_the_second_copy(name: str) -> None:
        if name == "after_archive_insert":
            copies.append(name)
            if len(copies) == 2:
                raise _Stop

    with pytest.raises(_Stop):
        archive_table(source, archive, PolicySpec("orders", batch_size=6, batch_mode="fixed"), now=NOW,
                      checkpoint=fail_after_the_second_copy)
    stored = stored_objects(archive)
    archived_orders = {int(k) for (t, k) in stored if t == "orders"}
    left = left_objects(source)
    assert not archived_orders & left["orders"]  # each batch whole in one place, never in both
    assert archived_orders | left["orders"] == set(range(1, 26))
    for (table, key), row in stored.items():  # every archived child's root is archived, none is left
        if table != "orders":
            assert int(row[4]) in archived_orders and int(key) not in left[table]
    again = archive_table(source, archive, PolicySpec("orders", batch_size=6, batch_mode="fixed"), now=NOW)
    assert again.extra.get("in_server") is True
    assert left_objects(source)["orders"] == set(range(21, 26)) and len(stored_objects(archive)) == 94


def test_an_object_with_a_reference_that_holds_rows_back_goes_the_generic_way(server):
    source, archive = pair(server)
    make_objects(source)
    with source.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE invoices (id BIGINT PRIMARY KEY, order_id BIGINT, CONSTRAINT fk_inv "
                             "FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE RESTRICT) ENGINE=InnoDB")
        conn.exec_driver_sql("INSERT INTO invoices VALUES (1, 3)")
    result = archive_table(source, archive, PolicySpec("orders", batch_size=6), now=NOW)
    assert "in_server" not in result.extra
    assert result.rows_deleted == 19 and result.rows_skipped == 1
    assert left_objects(source)["orders"] == {3, *range(21, 26)}


def test_an_object_batch_holds_its_child_rows_locked_until_it_commits(server):
    source, archive = pair(server)
    make_objects(source)
    seen: list[str] = []

    def try_to_change_a_child(name: str) -> None:
        if name != "after_archive_insert" or seen:
            return
        with source.connect() as other:
            other.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
            try:
                other.exec_driver_sql("UPDATE items SET qty = 99 WHERE id = 11")
                seen.append("changed")
            except sa.exc.OperationalError as exc:
                seen.append(f"waited: {exc.orig.args[0]}")
            other.rollback()

    result = archive_table(source, archive, PolicySpec("orders", batch_size=6, batch_mode="fixed"), now=NOW,
                           checkpoint=try_to_change_a_child)
    assert result.extra.get("in_server") is True
    assert seen == ["waited: 1205"]  # a lock wait timeout: the batch had item 11 locked
    assert json.loads(stored_objects(archive)[("items", "11")][0])["qty"] == 1  # its copy is what was deleted
