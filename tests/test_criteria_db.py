"""Compiled criteria against a real source table (SQLite, and PostgreSQL and MariaDB when configured)."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from archiver.engine.criteria import compile_criteria

NASTY = "O'Brien; DROP TABLE crit_items --"

ROWS = [
    dict(id=1, status="closed", amount=Decimal("50.00"), qty=1, note="it's done", flag=True,
         created_at=datetime(2024, 1, 1, 10, 0), day=date(2024, 1, 1), deleted_at=None),
    dict(id=2, status="closed", amount=Decimal("150.00"), qty=2, note="100% sure", flag=False,
         created_at=datetime(2024, 2, 1), day=date(2024, 2, 1), deleted_at=datetime(2024, 3, 1)),
    dict(id=3, status="open", amount=Decimal("5.50"), qty=-3, note="50%_off", flag=None,
         created_at=datetime(2023, 12, 31, 23, 59, 59), day=date(2023, 12, 31), deleted_at=None),
    dict(id=4, status="new", amount=Decimal("-1.25"), qty=0, note=None, flag=True,
         created_at=datetime(2024, 6, 15), day=None, deleted_at=None),
    dict(id=5, status=NASTY, amount=Decimal("0.00"), qty=10, note="x%y", flag=False,
         created_at=datetime(2025, 1, 1), day=date(2025, 1, 1), deleted_at=None),
    dict(id=6, status="Closed", amount=Decimal("100.00"), qty=5, note="Its caps", flag=None,
         created_at=datetime(2024, 3, 1), day=None, deleted_at=None),
]


@pytest.fixture
def items(source_engine) -> sa.Table:
    """A small source table, created then reflected the way the service sees it."""
    md = sa.MetaData()
    table = sa.Table(
        "crit_items", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("amount", sa.Numeric(10, 2), nullable=False),
        sa.Column("qty", sa.Integer, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("flag", sa.Boolean),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("day", sa.Date),
        sa.Column("deleted_at", sa.DateTime),
    )
    md.create_all(source_engine)
    with source_engine.begin() as conn:
        conn.execute(table.insert(), ROWS)
    return sa.Table("crit_items", sa.MetaData(), autoload_with=source_engine)


CASES = [
    ("status = 'closed' AND amount < 100", [1]),
    ("status = 'closed'", [1, 2]),  # '=' is case-sensitive on SQLite and PostgreSQL (MariaDB: below)
    ("status IN ('open', 'new')", [3, 4]),
    ("id NOT IN (1, 2, 3)", [4, 5, 6]),
    ("amount BETWEEN 0 AND 50", [1, 3, 5]),
    ("amount NOT BETWEEN 0 AND 50", [2, 4, 6]),
    ("amount = 5.5", [3]),
    ("amount = -1.25", [4]),
    ("qty < -1", [3]),
    ("qty > -1 AND qty <> 10", [1, 2, 4, 6]),
    ("note LIKE '%''s%'", [1]),
    ("note = 'it''s done'", [1]),
    ("note LIKE '100!%%' ESCAPE '!'", [2]),
    ("note LIKE '%!%!_%' ESCAPE '!'", [3]),
    ("note LIKE '%!%%' ESCAPE '!'", [2, 3, 5]),
    ("note NOT LIKE '%s%'", [3, 5]),
    ("note ILIKE 'IT%'", [1, 6]),
    ("note = 'x%y'", [5]),
    ("note = 'x_y' OR note = 'x%'", []),
    ("note IS NULL", [4]),
    ("deleted_at IS NOT NULL", [2]),
    ("NOT (status = 'open' OR status = 'new')", [1, 2, 5, 6]),
    ("flag = TRUE", [1, 4]),
    ("flag = FALSE", [2, 5]),
    ("flag IS NULL", [3, 6]),
    ("created_at < '2024-01-01'", [3]),
    ("created_at >= '2024-01-01 10:00:00' AND created_at < '2024-06-01'", [1, 2, 6]),
    ("created_at BETWEEN '2024-01-01T10:00:00' AND '2024-02-01'", [1, 2]),
    ("day = '2024-01-01'", [1]),
    ("day < '2024-01-01' OR day IS NULL", [3, 4, 6]),
    ("amount > qty", [1, 2, 3, 6]),
    ("crit_items.qty = 5", [6]),
    ('"status" = \'open\'', [3]),
    (f"status = '{NASTY.replace(chr(39), chr(39) * 2)}'", [5]),
    ("status = 'x'' OR ''1''=''1'", []),
]


#: A criterion compares the way the source database does. A MariaDB/MySQL column compares in its
#: collation, case-insensitive by default (utf8mb4_general_ci here): 'closed' = 'Closed' there, as in
#: any query the operator runs on that table.
CASE_INSENSITIVE = {"status = 'closed'": [1, 2, 6]}


def expected_rows(backend: str, text: str, expected: list[int]) -> list[int]:
    return CASE_INSENSITIVE.get(text, expected) if backend == "mariadb" else expected


def test_compiled_criteria_select_exactly_the_expected_rows(databases, source_engine, items):
    # One test over all cases: each backend gets one throwaway schema, not one per case.
    wrong = {}
    with source_engine.connect() as conn:
        for text, expected in CASES:
            expected = expected_rows(databases.backend, text, expected)
            expr = compile_criteria(text, items)
            got = conn.execute(sa.select(items.c.id).where(expr).order_by(items.c.id)).scalars().all()
            if got != expected:
                wrong[text] = (got, expected)
    assert wrong == {}


def test_criteria_only_narrow_the_age_filter(source_engine, items):
    age = items.c.created_at < datetime(2024, 1, 15)
    with source_engine.connect() as conn:
        base = conn.execute(sa.select(items.c.id).where(age).order_by(items.c.id)).scalars().all()
        for text in ("status = 'open' OR status <> 'open'", "qty > -100 OR note IS NULL", "id >= 0"):
            expr = compile_criteria(text, items)
            got = conn.execute(sa.select(items.c.id).where(age, expr).order_by(items.c.id)).scalars().all()
            assert got == base == [1, 3]


def test_injection_attempt_in_a_string_is_just_data(databases, source_engine, items):
    expr = compile_criteria("status = 'x''; DROP TABLE crit_items; --' OR status = 'closed'", items)
    with source_engine.connect() as conn:
        assert (conn.execute(sa.select(items.c.id).where(expr).order_by(items.c.id)).scalars().all()
                == expected_rows(databases.backend, "status = 'closed'", [1, 2]))
    assert sa.inspect(source_engine).has_table("crit_items")
    with source_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(items)).scalar_one() == len(ROWS)
