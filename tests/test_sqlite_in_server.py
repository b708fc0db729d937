"""In-server moves on SQLite: the archive connection attaches the source file and copies each batch
with one INSERT … SELECT (archiver/engine/backends/sqlite/in_server.py).

The archived rows must be exactly what the generic path stores, a batch with a value SQLite cannot
render must take the generic path, the source must stay write-locked from a batch's count to its
DELETE, an interrupted batch must be reconciled by the next run, the path must stay off where SQL
cannot copy the rows exactly, and the archive connection must go back to the pool detached. The
SIGKILL tests through the CLI (tests/test_crash_safety.py) run this path on SQLite too.
"""
from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from archiver.engine import schema
from archiver.engine.archive import archive_table
from archiver.engine.connections import make_engine
from archiver.engine.policy import PolicySpec
from tests.engine_support import NOW, archived, assert_no_loss, source_rows

OLD = (NOW - timedelta(days=90)).strftime("%Y-%m-%d %H:%M:%S")
NEW = (NOW - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")

DDL = """CREATE TABLE typed (id INTEGER PRIMARY KEY, i INTEGER, flag BOOLEAN, txt TEXT, vc VARCHAR(20),
    num NUMERIC(12, 2), day DATE, dt DATETIME, moved_at DATETIME NOT NULL)"""
TRICKY = "plain \"q\" \\ back/slash é€😀\u2028 tab\there"

ROWS = [  # id, i, flag, txt, vc, num, day, dt, moved_at
    *[(n, n * 7, n % 2, f"{TRICKY} {n}", f"v{n}", n + 0.25, "2024-02-29", f"2025-01-02 03:04:05.{n:06d}", OLD)
      for n in range(1, 31)],
    (31, None, None, None, None, None, None, None, OLD),
    (32, -1, 0, "", "", -12, "0001-01-01", "2025-01-02T03:04:05", OLD.replace(" ", "T")),
    (33, 2**62, 1, "x", "y", 99999999.99, "9999-12-31", "2025-01-02 03:04:05.123", OLD + ".250"),
    # values SQLite cannot render as the Python encoder writes them: their batches go the generic way
    (40, "text in an integer column", 0, "x", "y", 1.5, None, None, OLD),
    (41, 1, 0.5, "x", "y", 1.5, None, None, OLD),
    (42, 1, 0, "x", "y", 0.125, None, None, OLD),                       # printf rounds differently
    (43, 1, 0, "x", "y", 1.5, "2025-02-29", "2025-02-30 10:00:00", OLD),
    (44, 1, 0, "x", "y", 1.5, None, None, "2025-01-01T10:00:00+02:00"),  # the date column itself
    *[(n, n, 1, "x", "y", 2.5, None, None, OLD) for n in range(50, 70)],
    *[(n, n, 1, "new", "y", 2.5, None, None, NEW) for n in range(70, 75)],  # do not qualify yet
]
QUALIFYING = {str(r[0]) for r in ROWS if r[-1] != NEW}
EXOTIC = {"40", "41", "42", "43", "44"}


def _pair(root: Path, *, one_file: bool = False) -> tuple[sa.Engine, sa.Engine]:
    root.mkdir()
    source = make_engine(f"sqlite:///{root / 'source.db'}")
    archive = source if one_file else make_engine(f"sqlite:///{root / 'archive.db'}")
    schema.metadata.create_all(archive)
    return source, archive


def _typed(source: sa.Engine) -> None:
    with source.begin() as conn:
        conn.exec_driver_sql(DDL)
        conn.connection.dbapi_connection.executemany("INSERT INTO typed VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", ROWS)


def _stored(archive: sa.Engine, table: str = "typed") -> dict[str, tuple]:
    """source_pk -> every column of its archived row as stored (the text SQLite holds), but the id."""
    with archive.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT source_pk, payload, row_date, archived_at, run_id, root_id, depth FROM archived_rows "
            "WHERE table_name = ?", (table,)).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def _ids(source: sa.Engine, table: str = "typed") -> set[str]:
    """The keys left in the source table (read raw: some stored dates are no dates to SQLAlchemy)."""
    with source.connect() as conn:
        return {str(r[0]) for r in conn.exec_driver_sql(f"SELECT id FROM {table}")}


def _move(source: sa.Engine, archive: sa.Engine, spec: PolicySpec, *, in_server: bool = True, **kwargs):
    return archive_table(source, archive, spec, now=NOW, run_id=7, in_server=in_server, **kwargs)


@pytest.mark.parametrize("spec", [PolicySpec("typed", date_column="moved_at", batch_size=4, batch_mode="fixed"),
                                  PolicySpec("typed", date_column="moved_at")], ids=["fixed-4", "adaptive"])
def test_in_server_copies_equal_the_generic_path_byte_for_byte(tmp_path, spec):
    fast_src, fast_arc = _pair(tmp_path / "fast")
    slow_src, slow_arc = _pair(tmp_path / "slow")
    _typed(fast_src)
    _typed(slow_src)

    fast = _move(fast_src, fast_arc, spec)
    slow = _move(slow_src, slow_arc, spec, in_server=False)

    assert fast.extra.get("in_server") is True and "in_server" not in slow.extra
    assert fast.extra.get("redone", 0) >= 1  # the batches holding EXOTIC rows went the generic way
    assert (fast.rows_archived, fast.rows_deleted) == (slow.rows_archived, slow.rows_deleted) == (len(QUALIFYING),) * 2
    stored = _stored(fast_arc)
    assert set(stored) == QUALIFYING and EXOTIC <= set(stored)
    assert stored == _stored(slow_arc)  # payload text, row_date, archived_at, run_id, root_id, depth
    assert all(row[3:] == (7, None, 0) for row in stored.values())
    assert _ids(fast_src) == _ids(slow_src) == {str(n) for n in range(70, 75)}


def test_the_source_stays_write_locked_from_the_count_to_the_delete(tmp_path):
    source, archive = _pair(tmp_path / "p")
    _typed(source)
    src_file, arc_file = source.url.database, archive.url.database
    seen: list[tuple] = []

    def checkpoint(name: str) -> None:
        if name != "after_archive_commit" or seen:
            return
        with sqlite3.connect(arc_file) as other:  # the batch's copies are committed ...
            copied = other.execute("SELECT count(*) FROM archived_rows").fetchone()[0]
        reader = sqlite3.connect(src_file)
        try:  # ... its rows still in the source, which nobody else may write until the DELETE commits
            still = reader.execute("SELECT count(*) FROM typed WHERE id <= 4").fetchone()[0]
        finally:
            reader.close()
        writer = sqlite3.connect(src_file, timeout=0, isolation_level=None)
        try:
            writer.execute("UPDATE typed SET txt = 'changed' WHERE id = 1")
            outcome = "written"
        except sqlite3.OperationalError as exc:
            outcome = str(exc)
        finally:
            writer.close()
        seen.append((copied, still, outcome))

    result = _move(source, archive, PolicySpec("typed", date_column="moved_at", batch_size=4, batch_mode="fixed"),
                   checkpoint=checkpoint)
    assert result.extra.get("in_server") is True
    assert seen == [(4, 4, "database is locked")]
    assert "changed" not in _stored(archive)["1"][0]  # the copy is the row that was deleted


class _Crash(Exception):
    pass


def test_a_batch_stopped_between_its_copy_and_its_delete_is_reconciled_by_the_next_run(tmp_path):
    source, archive = _pair(tmp_path / "p")
    _typed(source)
    batches = []

    def crash_at_the_second_batch(name: str) -> None:
        if name == "after_archive_commit":
            batches.append(name)
            if len(batches) == 2:
                raise _Crash

    spec = PolicySpec("typed", date_column="moved_at", batch_size=4, batch_mode="fixed")
    with pytest.raises(_Crash):
        _move(source, archive, spec, checkpoint=crash_at_the_second_batch)
    src, arc = _ids(source), set(_stored(archive))
    assert src | arc == {str(r[0]) for r in ROWS}
    assert src & arc == {"5", "6", "7", "8"}  # batch 2: copied and committed, not deleted

    again = _move(source, archive, spec)
    assert again.extra.get("in_server") is True
    src, arc = _ids(source), set(_stored(archive))
    assert arc == QUALIFYING and src == {str(n) for n in range(70, 75)}


RELATIONAL_DDL = [
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, created_at DATETIME NOT NULL, total NUMERIC(12, 2), note TEXT)",
    "CREATE TABLE items (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE, "
    "sku VARCHAR(20), qty INTEGER)",
    "CREATE TABLE item_notes (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES items (id) ON DELETE CASCADE, "
    "body TEXT)",
    "CREATE TABLE shipments (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders (id) "
    "ON DELETE CASCADE, carrier TEXT)",
]


def _orders(source: sa.Engine, exotic: bool = False) -> None:
    with source.begin() as conn:
        for sql in RELATIONAL_DDL:
            conn.exec_driver_sql(sql)
        raw = conn.connection.dbapi_connection
        raw.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                        [(o, NEW if o > 20 else OLD, o + 0.5, f"{TRICKY} {o}") for o in range(1, 26)])
        raw.executemany("INSERT INTO items VALUES (?, ?, ?, ?)",
                        [(o * 10 + i, o, f"SKU-{i}", "many" if exotic and o == 7 and i == 1 else i)
                         for o in range(1, 26) for i in range(1, 4)])
        raw.executemany("INSERT INTO item_notes VALUES (?, ?, ?)",
                        [(n, item, f"note {n}") for n, item in enumerate([11, 11, 52, 73, 211, 999], 1)
                         if item != 999] + [(9, None, "an orphan note")])
        raw.executemany("INSERT INTO shipments VALUES (?, ?, ?)", [(o, o, "ups") for o in range(1, 26, 2)])


def _all_stored(archive: sa.Engine) -> dict[tuple[str, str], tuple]:
    """(table, source_pk) -> its archived row as stored, the root's key in place of its id."""
    with archive.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT a.table_name, a.source_pk, a.payload, a.row_date, a.archived_at, a.run_id, r.source_pk, a.depth "
            "FROM archived_rows a LEFT JOIN archived_rows r ON r.id = a.root_id").all()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def _left(source: sa.Engine) -> dict[str, set[int]]:
    with source.connect() as conn:
        return {t: {r[0] for r in conn.exec_driver_sql(f"SELECT id FROM {t}")}
                for t in ("orders", "items", "item_notes", "shipments")}


@pytest.mark.parametrize("exotic", [False, True], ids=["sql", "a child row sqlite cannot render"])
def test_objects_move_inside_sqlite_as_the_generic_path_moves_them(tmp_path, exotic):
    fast_src, fast_arc = _pair(tmp_path / "fast")
    slow_src, slow_arc = _pair(tmp_path / "slow")
    _orders(fast_src, exotic)
    _orders(slow_src, exotic)
    spec = PolicySpec("orders", batch_size=6, batch_mode="fixed")

    fast = _move(fast_src, fast_arc, spec)
    slow = _move(slow_src, slow_arc, spec, in_server=False)

    assert fast.extra.get("in_server") is True and "in_server" not in slow.extra
    assert fast.extra.get("redone", 0) == (1 if exotic else 0)
    assert (fast.rows_archived, fast.rows_deleted) == (slow.rows_archived, slow.rows_deleted) == (20, 20)
    assert fast.children == slow.children == {"items": 60, "item_notes": 4, "shipments": 10}
    stored = _all_stored(fast_arc)
    assert stored == _all_stored(slow_arc)  # payloads, row dates, run ids, roots and depths alike
    assert stored[("item_notes", "1")][4:] == ("1", 2) and stored[("items", "11")][4:] == ("1", 1)
    assert stored[("items", "11")][1] == stored[("orders", "1")][1]  # dated by its root
    left = _left(fast_src)
    assert left == _left(slow_src)
    assert left == {"orders": set(range(21, 26)), "items": {o * 10 + i for o in range(21, 26) for i in range(1, 4)},
                    "item_notes": {5, 9}, "shipments": {21, 23, 25}}


def test_an_object_batch_stopped_between_its_copy_and_its_delete_is_reconciled(tmp_path):
    source, archive = _pair(tmp_path / "p")
    _orders(source)
    copies = []

    def crash_at_the_second_batch(name: str) -> None:
        if name == "after_archive_commit":
            copies.append(name)
            if len(copies) == 2:
                raise _Crash

    spec = PolicySpec("orders", batch_size=6, batch_mode="fixed")
    with pytest.raises(_Crash):
        _move(source, archive, spec, checkpoint=crash_at_the_second_batch)
    left, stored = _left(source), _all_stored(archive)
    assert {k for (t, k) in stored if t == "orders"} == {str(o) for o in range(1, 13)}
    assert set(range(7, 13)) <= left["orders"] and {71, 72, 73} <= left["items"]  # batch 2 in both places

    again = _move(source, archive, spec)
    assert again.extra.get("in_server") is True
    left, stored = _left(source), _all_stored(archive)
    assert left["orders"] == set(range(21, 26)) and left["item_notes"] == {5, 9}
    assert len([k for k in stored if k[0] == "items"]) == 60 and len(stored) == 20 + 60 + 4 + 10


NOT_MOVABLE = {
    "composite key": ["CREATE TABLE t (a INTEGER, b INTEGER, moved_at DATETIME, PRIMARY KEY (a, b))",
                      "INSERT INTO t VALUES (1, 1, :old), (1, 2, :old), (2, 1, :new)"],
    "text key": ["CREATE TABLE t (id TEXT PRIMARY KEY, moved_at DATETIME)",
                 "INSERT INTO t VALUES ('a', :old), ('b', :old), ('c', :new)"],
    "a column encoded in Python": ["CREATE TABLE t (id INTEGER PRIMARY KEY, f REAL, moved_at DATETIME)",
                                   "INSERT INTO t VALUES (1, 0.1, :old), (2, 1e300, :old), (3, 0.5, :new)"],
    "a text date column": ["CREATE TABLE t (id INTEGER PRIMARY KEY, moved_at TEXT)",
                           "INSERT INTO t VALUES (1, :old), (2, :old), (3, :new)"],
    "a reference that holds rows back": [
        "CREATE TABLE t (id INTEGER PRIMARY KEY, moved_at DATETIME)",
        "CREATE TABLE c (id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t (id) ON DELETE SET NULL)",
        "INSERT INTO t VALUES (1, :old), (2, :old), (3, :new), (4, :old)", "INSERT INTO c VALUES (10, 4)"],
    "a child table reached by two relations": [
        "CREATE TABLE t (id INTEGER PRIMARY KEY, moved_at DATETIME)",
        "CREATE TABLE c (id INTEGER PRIMARY KEY, a INTEGER REFERENCES t (id) ON DELETE CASCADE, "
        "b INTEGER REFERENCES t (id) ON DELETE CASCADE)",
        "INSERT INTO t VALUES (1, :old), (2, :old), (3, :new)", "INSERT INTO c VALUES (10, 1, 2)"],
    "a child table with a composite key": [
        "CREATE TABLE t (id INTEGER PRIMARY KEY, moved_at DATETIME)",
        "CREATE TABLE c (t_id INTEGER NOT NULL REFERENCES t (id) ON DELETE CASCADE, n INTEGER, PRIMARY KEY (t_id, n))",
        "INSERT INTO t VALUES (1, :old), (2, :old), (3, :new)", "INSERT INTO c VALUES (1, 1), (1, 2), (3, 1)"],
    "one file": ["CREATE TABLE t (id INTEGER PRIMARY KEY, moved_at DATETIME)",
                 "INSERT INTO t VALUES (1, :old), (2, :old), (3, :new)"],
}


@pytest.mark.parametrize("case", list(NOT_MOVABLE))
def test_not_used_where_sql_cannot_copy_the_rows_exactly(tmp_path, case):
    source, archive = _pair(tmp_path / "p", one_file=case == "one file")
    with source.begin() as conn:
        for sql in NOT_MOVABLE[case]:
            conn.execute(sa.text(sql), {"old": OLD, "new": NEW})
    original = source_rows(source, "t")

    result = _move(source, archive, PolicySpec("t", date_column="moved_at"))

    assert "in_server" not in result.extra
    assert result.rows_archived == result.rows_deleted == 2
    src, arc = source_rows(source, "t"), archived(archive, "t")
    assert len(src) == (2 if case == "a reference that holds rows back" else 1) and len(arc) == 2
    assert_no_loss(original, src, arc)


def test_the_archive_connection_goes_back_to_the_pool_detached(tmp_path):
    source, archive = _pair(tmp_path / "p")
    archive = make_engine(archive.url, poolclass=sa.pool.QueuePool, pool_size=1, max_overflow=0)
    with source.begin() as conn:
        for name in ("a", "b"):
            conn.exec_driver_sql(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, moved_at DATETIME)")
            conn.execute(sa.text(f"INSERT INTO {name} VALUES (1, :old), (2, :old)"), {"old": OLD})

    first = _move(source, archive, PolicySpec("a", date_column="moved_at"))
    with archive.connect() as conn:  # the one pooled connection the run used
        attached = [row[1] for row in conn.exec_driver_sql("PRAGMA database_list")]
    second = _move(source, archive, PolicySpec("b", date_column="moved_at"))

    assert attached == ["main"]
    assert first.extra.get("in_server") is True and second.extra.get("in_server") is True
    assert set(archived(archive, "a")) == set(archived(archive, "b")) == {"1", "2"}


@pytest.mark.parametrize("one_file", [False, True], ids=["two-files", "one-file"])
def test_the_archive_file_checkpoints_less_often_than_a_source(tmp_path, one_file):
    """The service's own archive file checkpoints its WAL every 64 MB (16384 pages); a source file,
    whose application has its own writers, keeps SQLite's default (1000), as does an archive that is
    the source's file too."""
    from archiver.extensions import db
    from tests.app_support import Databases, make_app

    archive_url = f"sqlite:///{tmp_path / 'archive.db'}"
    source_url = archive_url if one_file else f"sqlite:///{tmp_path / 'source.db'}"
    app = make_app(Databases(backend="sqlite", source_url=source_url, archive_url=archive_url))
    with app.app_context():
        pages = {}
        for key, engine in db.engines.items():
            with engine.connect() as conn:
                pages[key] = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    assert pages == {None: 1000 if one_file else 16384, "source": 1000}
