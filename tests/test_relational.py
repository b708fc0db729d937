"""Relational archiving: a row moves with its dependent rows, and a foreign key never loses, breaks or stalls.

Ground truth in every test: each row of every table is in exactly one place
(the source, or ``archived_rows`` under its own table name), archived copies
equal the originals, and descendants link to the archived root they moved with.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from archiver.engine import schema
from archiver.engine.archive import archive_table, plan_table
from archiver.engine.backends import source_ops_for
from archiver.engine.errors import InvalidPolicy
from archiver.engine.policy import NamedChild, PolicySpec
from tests.engine_support import NOW, archived, source_rows  # noqa: F401
from tests.relational_support import (NEW, OLD, archived_rows_of, assert_each_row_in_one_place, create, fill_orders,
                                      insert, orders_schema, snapshot, spec)

def test_cascade_children_two_levels_deep_move_with_their_order(engines):
    md, orders, items, notes = orders_schema()
    create(engines.source, md)
    fill_orders(engines.source, orders, items, notes)
    original = snapshot(engines.source, "orders", "order_items", "item_notes")

    result = archive_table(engines.source, engines.archive, spec(), now=NOW, run_id=5)

    assert result.rows_deleted == 8 and result.rows_skipped == 0  # orders 1-3, 5-7, 9, 10 are old
    assert result.children == {"order_items": 24, "item_notes": 16}
    assert_each_row_in_one_place(engines.source, engines.archive, original)
    assert sorted(map(int, archived(engines.archive, "orders"))) == [1, 2, 3, 5, 6, 7, 9, 10]
    assert sorted(map(int, source_rows(engines.source, "order_items"))) == [40, 41, 42, 80, 81, 82]
    # Each descendant links to the archived order it moved with.
    roots = {r.id: int(r.source_pk) for r in archived_rows_of(engines.archive, "orders")}
    assert all(r.root_id is None and r.depth == 0 for r in archived_rows_of(engines.archive, "orders"))
    for r in archived_rows_of(engines.archive, "order_items"):
        assert roots[r.root_id] == int(r.source_pk) // 10 and r.depth == 1 and r.run_id == 5
    for r in archived_rows_of(engines.archive, "item_notes"):
        assert roots[r.root_id] == int(r.source_pk) // 100 and r.depth == 2
    # A second run moves nothing more.
    again = archive_table(engines.source, engines.archive, spec(), now=NOW)
    assert again.rows_deleted == 0 and again.children == {}
    assert_each_row_in_one_place(engines.source, engines.archive, original)


def test_a_composite_foreign_key(engines):
    md = sa.MetaData()
    shipments = sa.Table("shipments", md, sa.Column("region", sa.String(8), primary_key=True),
                         sa.Column("num", sa.Integer, primary_key=True, autoincrement=False),
                         sa.Column("created_at", sa.DateTime))
    lines = sa.Table("shipment_lines", md, sa.Column("region", sa.String(8), primary_key=True),
                     sa.Column("num", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("line", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("weight", sa.Numeric(8, 2)),
                     sa.ForeignKeyConstraint(["region", "num"], ["shipments.region", "shipments.num"],
                                             ondelete="CASCADE"))
    create(engines.source, md)
    insert(engines.source, shipments, [{"region": r, "num": n, "created_at": OLD if n != 2 else NEW}
                                       for r in ("eu", "us") for n in (1, 2, 3)])
    insert(engines.source, lines, [{"region": r, "num": n, "line": k, "weight": f"{n}.{k}5"}
                                   for r in ("eu", "us") for n in (1, 2, 3) for k in (1, 2)])
    original = snapshot(engines.source, "shipments", "shipment_lines")
    result = archive_table(engines.source, engines.archive, spec("shipments", batch_size=2), now=NOW)
    assert result.rows_deleted == 4 and result.children == {"shipment_lines": 8}
    assert_each_row_in_one_place(engines.source, engines.archive, original)
    assert sorted(archived(engines.archive, "shipment_lines")) == sorted(
        f'["{r}",{n},{k}]' for r in ("eu", "us") for n in (1, 3) for k in (1, 2))


@pytest.mark.parametrize("rule", ["RESTRICT", "NO ACTION", "SET NULL"])
def test_rows_a_live_row_references_are_skipped_not_failed_and_move_once_released(engines, rule):
    md, orders, items, notes = orders_schema()
    invoices = sa.Table("invoices", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id", ondelete=rule)))
    # A reference to a child row holds its whole order back too.
    returns = sa.Table("returns", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                       sa.Column("item_id", sa.Integer, sa.ForeignKey("order_items.id", ondelete=rule)))
    create(engines.source, md)
    fill_orders(engines.source, orders, items, notes)
    insert(engines.source, invoices, [{"id": 1, "order_id": 2}, {"id": 2, "order_id": 5}, {"id": 3, "order_id": 4}])
    insert(engines.source, returns, [{"id": 1, "item_id": 71}])
    original = snapshot(engines.source, "orders", "order_items", "item_notes")
    referrers = snapshot(engines.source, "invoices", "returns")

    result = archive_table(engines.source, engines.archive, spec(), now=NOW)

    # Old orders 1-3, 5-7, 9, 10; held: 2 and 5 (invoices), 7 (a return of its item 71).
    assert result.rows_deleted == 5 and result.rows_skipped == 3
    assert sorted(map(int, archived(engines.archive, "orders"))) == [1, 3, 6, 9, 10]
    assert sum(result.skipped.values()) == 3 and any("invoices(order_id) → orders(id)" in k for k in result.skipped)
    assert snapshot(engines.source, "invoices", "returns") == referrers  # referrers untouched
    assert_each_row_in_one_place(engines.source, engines.archive, original)

    with engines.source.begin() as conn:  # release order 2 and the returned item of order 7
        conn.execute(invoices.delete().where(invoices.c.id == 1))
        conn.execute(returns.delete())
    again = archive_table(engines.source, engines.archive, spec(), now=NOW)
    assert again.rows_deleted == 2 and again.rows_skipped == 1  # 2 and 7 move; 5 is still invoiced
    assert sorted(map(int, archived(engines.archive, "orders"))) == [1, 2, 3, 6, 7, 9, 10]
    assert_each_row_in_one_place(engines.source, engines.archive, original)


def test_a_whole_batch_held_back_does_not_stall_the_walk(engines):
    md, orders, items, notes = orders_schema()
    invoices = sa.Table("invoices", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id")))
    create(engines.source, md)
    fill_orders(engines.source, orders, items, notes)
    insert(engines.source, invoices, [{"id": i, "order_id": i} for i in (1, 2, 3)])  # the whole first batch
    result = archive_table(engines.source, engines.archive, spec(), now=NOW)
    assert result.rows_skipped == 3 and result.rows_deleted == 5
    assert sorted(map(int, archived(engines.archive, "orders"))) == [5, 6, 7, 9, 10]


def test_self_reference_moves_the_whole_subtree(engines):
    md = sa.MetaData()
    employees = sa.Table("employees", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                         sa.Column("manager_id", sa.Integer, sa.ForeignKey("employees.id", ondelete="CASCADE")),
                         sa.Column("created_at", sa.DateTime))
    create(engines.source, md)
    # 1 (old) manages 2 (new) who manages 3 (new) who manages 4 (old); 5 (old) alone; 6 (new) manages 7 (old).
    rows = [(1, None, OLD), (2, 1, NEW), (3, 2, NEW), (4, 3, OLD), (5, None, OLD), (6, None, NEW), (7, 6, OLD)]
    for id_, manager, created in rows:  # one by one: parents first
        insert(engines.source, employees, [{"id": id_, "manager_id": manager, "created_at": created}])
    original = snapshot(engines.source, "employees")
    result = archive_table(engines.source, engines.archive, spec("employees", batch_size=2), now=NOW)
    assert not result.stopped and result.rows_skipped == 0  # nothing holds a row back
    # 1 takes its reports 2, 3 (and 4, a root of its own); 5 and 7 move alone; 6 stays.
    assert sorted(map(int, source_rows(engines.source, "employees"))) == [6]
    assert_each_row_in_one_place(engines.source, engines.archive, original)
    by_pk = {int(r.source_pk): r for r in archived_rows_of(engines.archive, "employees")}
    assert by_pk[1].root_id is None and by_pk[5].root_id is None and by_pk[7].root_id is None
    assert by_pk[2].root_id == by_pk[3].root_id == by_pk[1].id and (by_pk[2].depth, by_pk[3].depth) == (1, 2)


def test_a_foreign_key_cycle_is_refused_naming_it(engines):
    md = sa.MetaData()
    sa.Table("a", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("created_at", sa.DateTime), sa.Column("b_id", sa.Integer))
    sa.Table("b", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("a_id", sa.Integer))
    create(engines.source, md)
    cyclic = spec("a", children=(NamedChild("b", ("a_id",), ("id",)),
                                 NamedChild("a", ("b_id",), ("id",), parent="b")))
    with pytest.raises(InvalidPolicy) as info:
        plan_table(engines.source, cyclic, NOW)
    assert "cycle a → b → a" in str(info.value) and list(info.value.problems) == ["children"]


def test_a_declared_cascade_cycle_is_refused_naming_it(engines):
    with engines.source.begin() as conn:  # a ↔ b both ON DELETE CASCADE (the keys added after both tables)
        conn.exec_driver_sql("CREATE TABLE a (id INTEGER PRIMARY KEY, created_at TIMESTAMP, b_id INTEGER)")
        conn.exec_driver_sql("CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id) ON DELETE CASCADE)")
    if engines.backend == "sqlite":  # SQLite cannot add a key to a table: make a again with it
        with engines.source.begin() as conn:
            conn.exec_driver_sql("DROP TABLE a")
            conn.exec_driver_sql("CREATE TABLE a (id INTEGER PRIMARY KEY, created_at TIMESTAMP, "
                                 "b_id INTEGER REFERENCES b(id) ON DELETE CASCADE)")
    else:
        with engines.source.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE a ADD CONSTRAINT a_b FOREIGN KEY (b_id) REFERENCES b(id) ON DELETE CASCADE")
    with pytest.raises(InvalidPolicy) as info:
        plan_table(engines.source, spec("a"), NOW)
    assert "cycle a → b → a" in str(info.value) and list(info.value.problems) == ["table_name"]


def test_a_reference_back_from_a_parent_to_its_own_child_is_refused_not_a_stall(engines):
    """order_items move with orders (CASCADE) while orders.featured_item → order_items (NO ACTION):
    no order of deletes can move such an order (its item goes first and is still referenced), so the
    policy is refused naming the loop, instead of a run that fails on every batch."""
    md = sa.MetaData()
    orders = sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("created_at", sa.DateTime), sa.Column("featured_item", sa.Integer))
    items = sa.Table("order_items", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id", ondelete="CASCADE")))
    create(engines.source, md)
    if engines.backend == "sqlite":
        with engines.source.begin() as conn:
            conn.exec_driver_sql("DROP TABLE order_items")
            conn.exec_driver_sql("DROP TABLE orders")
            conn.exec_driver_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, created_at TIMESTAMP, "
                                 "featured_item INTEGER REFERENCES order_items(id))")
            conn.exec_driver_sql("CREATE TABLE order_items (id INTEGER PRIMARY KEY, "
                                 "order_id INTEGER REFERENCES orders(id) ON DELETE CASCADE)")
    else:
        with engines.source.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE orders ADD CONSTRAINT featured FOREIGN KEY (featured_item) "
                                 "REFERENCES order_items(id)")
    with pytest.raises(InvalidPolicy) as info:
        plan_table(engines.source, spec("orders"), NOW)
    message = str(info.value)
    assert "cycle orders → order_items → orders" in message and list(info.value.problems) == ["table_name"]
    assert "orders(featured_item) → order_items(id) ON DELETE NO ACTION" in message
    del orders, items


def _employees_without_cascade(engine: sa.Engine, rows: list[tuple[int, int | None, object]]) -> None:
    md = sa.MetaData()
    employees = sa.Table("employees", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                         sa.Column("manager_id", sa.Integer, sa.ForeignKey("employees.id")),
                         sa.Column("created_at", sa.DateTime))
    create(engine, md)
    for id_, manager, created in rows:  # one by one: managers first
        insert(engine, employees, [{"id": id_, "manager_id": manager, "created_at": created}])


HOLD = "employees(manager_id) → employees(id) ON DELETE NO ACTION"


def test_a_self_reference_without_cascade_moves_a_manager_and_report_of_one_batch(engines):
    """employees.manager_id → employees (NO ACTION), both old and in one batch: the report and its
    manager leave in the same run (InnoDB checks a key row by row, so on MySQL/MariaDB the manager
    leaves on a second pass, after its reports; PostgreSQL and SQLite move both in one DELETE)."""
    # 1 manages 2 and 3 manages 4 and 5; 6 (new) manages 7; all but 6 old.
    _employees_without_cascade(engines.source, [(1, None, OLD), (2, 1, OLD), (3, None, OLD), (4, 3, OLD),
                                                (5, 3, OLD), (6, None, NEW), (7, 6, OLD)])
    original = snapshot(engines.source, "employees")
    result = archive_table(engines.source, engines.archive, spec("employees", batch_size=10), now=NOW)
    assert sorted(map(int, source_rows(engines.source, "employees"))) == [6]
    assert (result.rows_deleted, result.rows_read, result.rows_skipped, result.skipped) == (6, 6, 0, {})
    assert result.extra.get("passes", 1) == (2 if engines.backend == "mariadb" else 1)
    assert_each_row_in_one_place(engines.source, engines.archive, original)


def test_a_hierarchy_spread_over_batches_moves_in_one_run(engines, overlap_small_tables):
    """Reports usually have larger keys than their managers, so a batch in key order meets a manager
    before its reports: the manager is held (its reports stay, for now) and the run makes another
    pass once they have left, until a pass frees nothing. A manager whose report is too new to go
    stays, counted as skipped once."""
    # a chain 1 ← 2 ← 3 ← 4 ← 5 ← 6 (each managed by the one before), 7 ← 8 ← 9, and 10 (old) managing
    # 11 (new); batches of 2 rows.
    rows = [(1, None, OLD)] + [(i, i - 1, OLD) for i in range(2, 7)] + [(7, None, OLD), (8, 7, OLD), (9, 8, OLD),
                                                                       (10, None, OLD), (11, 10, NEW)]
    _employees_without_cascade(engines.source, rows)
    original = snapshot(engines.source, "employees")
    result = archive_table(engines.source, engines.archive, spec("employees", batch_size=2), now=NOW)
    assert sorted(map(int, source_rows(engines.source, "employees"))) == [10, 11]
    assert (result.rows_deleted, result.rows_read, result.rows_skipped) == (9, 10, 1)
    assert result.skipped == {HOLD: 1} and not result.stopped
    assert result.extra["passes"] > 2
    # the first pass overlapped its batches where rows lock (the others go one batch after another)
    assert bool(result.extra.get("pipelined")) == (engines.backend != "sqlite")
    assert_each_row_in_one_place(engines.source, engines.archive, original)
    again = archive_table(engines.source, engines.archive, spec("employees", batch_size=2), now=NOW)
    assert (again.rows_deleted, again.rows_skipped, again.extra.get("passes", 1)) == (0, 1, 1)  # nothing freed


def test_children_the_policy_names_move_like_cascade_children(engines):
    md = sa.MetaData()
    invoice = sa.Table("invoice", md, sa.Column("invoice_id", sa.Integer, primary_key=True, autoincrement=False),
                       sa.Column("created_at", sa.DateTime))
    # undeclared: no foreign key at all
    line = sa.Table("invoice_line", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("invoice_id", sa.Integer))
    # declared NO ACTION (the Chinook shape): would hold every invoice back if not named
    payment = sa.Table("payment", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                       sa.Column("invoice_id", sa.Integer, sa.ForeignKey("invoice.invoice_id")))
    create(engines.source, md)
    insert(engines.source, invoice, [{"invoice_id": i, "created_at": OLD if i < 4 else NEW} for i in range(1, 6)])
    insert(engines.source, line, [{"id": i * 10 + j, "invoice_id": i} for i in range(1, 6) for j in range(2)])
    insert(engines.source, payment, [{"id": i, "invoice_id": i} for i in range(1, 6)])
    original = snapshot(engines.source, "invoice", "invoice_line", "payment")
    named = spec("invoice", children=(NamedChild("invoice_line", ("invoice_id",), ("invoice_id",)),
                                      NamedChild("payment", ("invoice_id",), ("invoice_id",))))
    unnamed = archive_table(engines.source, engines.archive, spec("invoice"), now=NOW)
    assert unnamed.rows_deleted == 0 and unnamed.rows_skipped == 3  # held by payment's NO ACTION key
    result = archive_table(engines.source, engines.archive, named, now=NOW)
    assert result.rows_deleted == 3 and result.children == {"invoice_line": 6, "payment": 3}
    assert_each_row_in_one_place(engines.source, engines.archive, original)


@pytest.mark.parametrize("child, problem", [
    (NamedChild("nope", ("x",), ("id",)), "table nope not found"),
    (NamedChild("lines", ("nope",), ("id",)), "column nope not found in table lines"),
    (NamedChild("lines", ("order_id",), ("nope",)), "column nope not found in table orders"),
    (NamedChild("lines", ("label",), ("id",)), "cannot reference orders.id"),
    (NamedChild("lines", ("order_id", "label"), ("id",)), "same number of columns"),
])
def test_named_children_are_validated(engines, child, problem):
    md = sa.MetaData()
    sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("created_at", sa.DateTime))
    sa.Table("lines", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("order_id", sa.Integer), sa.Column("label", sa.String(10)))
    create(engines.source, md)
    with pytest.raises(InvalidPolicy) as info:
        plan_table(engines.source, spec(children=(child,)), NOW)
    assert problem in info.value.problems["children"][0]


def test_a_child_table_without_a_primary_key_is_refused(engines):
    md = sa.MetaData()
    sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("created_at", sa.DateTime))
    sa.Table("tags", md, sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id", ondelete="CASCADE")),
             sa.Column("tag", sa.String(10)))
    create(engines.source, md)
    with pytest.raises(InvalidPolicy, match="child table 'tags' of 'orders' has no primary key"):
        plan_table(engines.source, spec(), NOW)


# --- restore and purge follow the object -------------------------------------------------

def archived_object(engines) -> tuple[dict, sa.Table, sa.Table, sa.Table]:
    md, orders, items, notes = orders_schema()
    create(engines.source, md)
    fill_orders(engines.source, orders, items, notes)
    original = snapshot(engines.source, "orders", "order_items", "item_notes")
    archive_table(engines.source, engines.archive, spec(), now=NOW)
    return original, orders, items, notes


def ids_of(engine: sa.Engine, table: str, pks: list[int]) -> list[int]:
    by_pk = {int(r.source_pk): r.id for r in archived_rows_of(engine, table)}
    return [by_pk[pk] for pk in pks]


def test_restoring_a_parent_brings_its_descendants_back_parents_first(engines):
    from archiver.engine.restore import RestoreSelection, restore_rows
    original, *_ = archived_object(engines)
    selection = RestoreSelection(ids=tuple(ids_of(engines.archive, "orders", [2, 3])))
    result = restore_rows(engines.source, engines.archive, "orders", selection)
    assert (result.restored, result.conflict_count, result.failed_count) == (2, 0, 0)
    assert result.children == {"order_items": 6, "item_notes": 4}
    assert result.archive_deleted == 12
    for table, rows in original.items():  # every row of orders 2 and 3 is back, with its values
        back = source_rows(engines.source, table)
        for pk, payload in back.items():
            assert payload == rows[pk]
    assert {2, 3} <= set(map(int, source_rows(engines.source, "orders")))
    assert {20, 21, 22, 30, 31, 32} <= set(map(int, source_rows(engines.source, "order_items")))
    assert not {2, 3} & set(map(int, archived(engines.archive, "orders")))
    assert all(r.root_id not in selection.ids for r in archived_rows_of(engines.archive, "order_items"))


def test_a_key_conflict_anywhere_keeps_the_whole_object_archived(engines):
    from archiver.engine.restore import RestoreSelection, restore_rows
    original, orders, items, notes = archived_object(engines)
    with engines.source.begin() as conn:  # a new row took an archived item's key (order 4 stays in the source)
        conn.execute(items.insert(), {"id": 21, "order_id": 4, "sku": "another"})
    selection = RestoreSelection(ids=tuple(ids_of(engines.archive, "orders", [2, 3])))
    result = restore_rows(engines.source, engines.archive, "orders", selection)
    assert (result.restored, result.conflict_count) == (1, 1)
    assert result.conflicts == ["2"] and result.conflict_tables == {"order_items": 1}
    assert 2 not in set(map(int, source_rows(engines.source, "orders")))
    assert {"20", "21", "22"} <= set(archived(engines.archive, "order_items"))  # all of order 2 still archived
    assert source_rows(engines.source, "order_items")["21"]["sku"] == "another"


def test_purge_removes_descendants_with_their_parent_never_before(engines):
    from archiver.engine.purge import purge_table
    original, *_ = archived_object(engines)
    ar = schema.archived_rows
    with engines.archive.begin() as conn:  # orders 1 and 2 (and what moved with them) archived long ago
        old = {r.id: r.source_pk for r in archived_rows_of(engines.archive, "orders") if r.source_pk in ("1", "2")}
        conn.execute(ar.update().where(sa.or_(ar.c.id.in_(list(old)), ar.c.root_id.in_(list(old))))
                     .values(archived_at=NOW - timedelta(days=400)))
    # A policy on order_items itself never purges rows that moved with an order.
    items_only = purge_table(engines.archive, PolicySpec("order_items", delete_after_days=30), now=NOW)
    assert items_only.rows_deleted == 0
    result = purge_table(engines.archive, PolicySpec("orders", delete_after_days=30, batch_size=1), now=NOW)
    assert result.rows_deleted == 2 + 6 + 4 and result.children_deleted == 10
    assert sorted(map(int, archived(engines.archive, "orders"))) == [3, 5, 6, 7, 9, 10]
    assert not {10, 11, 12, 20, 21, 22} & set(map(int, archived(engines.archive, "order_items")))
    assert len(archived(engines.archive, "order_items")) == 18 and len(archived(engines.archive, "item_notes")) == 12


def test_preview_counts_what_moves_with_the_rows_and_what_references_hold(engines):
    from archiver.engine.archive import preview_archive
    md, orders, items, notes = orders_schema()
    invoices = sa.Table("invoices", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id")))
    create(engines.source, md)
    fill_orders(engines.source, orders, items, notes)
    insert(engines.source, invoices, [{"id": 1, "order_id": 2}, {"id": 2, "order_id": 4}])  # 4 is new
    preview = preview_archive(engines.source, spec(), now=NOW)
    assert preview.would_archive == 8
    assert [(m["table"], m["rows"]) for m in preview.moves_with] == [("order_items", 24), ("item_notes", 16)]
    assert preview.moves_with[0]["via"] == ["order_items(order_id) → orders(id) ON DELETE CASCADE"]
    assert preview.held_by == [{"reference": "invoices(order_id) → orders(id) ON DELETE NO ACTION",
                                "rule": "NO ACTION", "rows": 1}]
    assert source_rows(engines.source, "orders") and archived(engines.archive, "orders") == {}  # moved nothing


def test_preview_follows_a_self_reference_down(engines):
    from archiver.engine.archive import preview_archive
    md = sa.MetaData()
    employees = sa.Table("employees", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                         sa.Column("manager_id", sa.Integer, sa.ForeignKey("employees.id", ondelete="CASCADE")),
                         sa.Column("created_at", sa.DateTime))
    create(engines.source, md)
    for id_, manager, created in [(1, None, OLD), (2, 1, NEW), (3, 2, NEW), (4, None, NEW)]:
        insert(engines.source, employees, [{"id": id_, "manager_id": manager, "created_at": created}])
    preview = preview_archive(engines.source, spec("employees"), now=NOW)
    assert preview.would_archive == 1
    assert [(m["table"], m["rows"]) for m in preview.moves_with] == [("employees", 2)]


def test_rows_archived_already_are_replaced_roots_and_children_alike(engines):
    # A batch archived but not deleted (a crash between the two commits) is archived again by the next
    # run: every row is replaced in place under its own table name, none is doubled or misfiled.
    md, orders, items, notes = orders_schema()
    create(engines.source, md)
    fill_orders(engines.source, orders, items, notes)
    original = snapshot(engines.source, "orders", "order_items", "item_notes")

    def crash(name: str) -> None:
        if name == "after_archive_commit":
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        archive_table(engines.source, engines.archive, spec(), now=NOW, checkpoint=crash, pipeline=False)
    assert len(archived(engines.archive, "orders")) == 3 and len(archived(engines.archive, "order_items")) == 9
    archive_table(engines.source, engines.archive, spec(), now=NOW)
    assert_each_row_in_one_place(engines.source, engines.archive, original)
    assert {r.table_name for r in archived_rows_of(engines.archive, "order_items")} == {"order_items"}
    assert len(archived(engines.archive, "order_items")) == 24


def test_the_last_check_counts_child_rows_a_batch_would_leave_for_the_cascade(engines):
    """Before a batch's roots are deleted, the rows still referencing them are counted (an ON DELETE
    CASCADE would take them with no archived copy): by the parent's key, or through the parent row
    when the reference names another column."""
    md = sa.MetaData()
    parents = sa.Table("parents", md, sa.Column("id", sa.Integer, primary_key=True),
                       sa.Column("code", sa.String(10), unique=True, nullable=False),
                       sa.Column("created_at", sa.DateTime, nullable=False))
    sa.Table("by_key", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("parent_id", sa.Integer, sa.ForeignKey("parents.id", ondelete="CASCADE")))
    sa.Table("by_code", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("parent_code", sa.String(10), sa.ForeignKey("parents.code", ondelete="CASCADE")))
    create(engines.source, md)
    insert(engines.source, parents, [{"id": i, "code": f"c{i}", "created_at": OLD} for i in range(1, 6)])
    insert(engines.source, md.tables["by_key"], [{"id": 11, "parent_id": 1}, {"id": 12, "parent_id": 1},
                                                 {"id": 13, "parent_id": 2}, {"id": 14, "parent_id": 4}])
    insert(engines.source, md.tables["by_code"], [{"id": 21, "parent_code": "c2"}, {"id": 22, "parent_code": "c5"}])
    plan = plan_table(engines.source, PolicySpec("parents"), NOW)
    ops = source_ops_for(engines.source)
    edges = {e.child: e for e in plan.graph.child_edges}
    with engines.source.connect() as conn:
        assert ops.count_referencing(conn, plan, edges["by_key"], [(1,), (2,), (3,)]) == 3
        assert ops.count_referencing(conn, plan, edges["by_key"], [(3,), (5,)]) == 0
        assert ops.count_referencing(conn, plan, edges["by_code"], [(2,), (5,)]) == 2
        assert ops.count_referencing(conn, plan, edges["by_code"], [(1,), (4,)]) == 0
