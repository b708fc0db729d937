"""The benchmark's data sets, built server-side on every backend, and their ground-truth check.

``events`` (N rows; ``--datasets events``). Row ``g`` (1..N)::

    id         g
    created_at anchor - (g % 400) days - (2 h + g % 72000 s)   (naive UTC)
    user_id    g % 5000
    kind       click | view | buy | refund  (by g % 4)
    amount     (g % 100000) / 100          numeric(12,2)
    note       first 100 hex chars of md5(g) md5(g+1) md5(g+2) md5(g+3)

``orders`` + ``order_items`` (N rows in all: N/4 orders, 3 items each; ``--datasets orders``).
Order ``g`` (1..N/4) has the same ``created_at`` as event ``g``, ``customer_id`` g % 5000,
``status`` paid | shipped | closed, ``total`` (g % 100000) / 100 and a 32-char ``note``
(md5(g)). Item ``i`` (1..3N/4) belongs to order ``(i + 2) / 3`` (``order_items.order_id
REFERENCES orders(id) ON DELETE CASCADE``, indexed), with ``sku`` 'SKU-' || i % 1000,
``quantity`` 1 + i % 5, ``price`` (i % 10000) / 100.

Rows spread evenly over 400 days: a row (an order and its items) is older than
``anchor - 30 days`` exactly when ``g % 400 >= 30`` (92.5% of them). Times of day stay
between 02:00 and 22:00 before the anchor, so any cutoff within two hours of
``anchor - 30 days`` selects the same rows: the project's job (its own clock) and the
references (the anchor) move the same set, and the check below knows which rows must
have moved from their keys alone.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

ARCHIVE_AFTER_DAYS = 30
DELETE_AFTER_DAYS = 365
DATE_COLUMN = "created_at"


def make_anchor() -> datetime:
    """'Now' for a data set: naive UTC, whole seconds."""
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def cutoff_for(anchor: datetime, days: int = ARCHIVE_AFTER_DAYS) -> datetime:
    return anchor - timedelta(days=days)


def expected_old(n: int) -> int:
    """How many of keys 1..n have ``g % 400 >= 30`` (older than 30 days)."""
    return (n // 400) * 370 + max(0, n % 400 - 29)


def note_for(g: int) -> str:
    return "".join(hashlib.md5(str(g + i).encode()).hexdigest() for i in range(4))[:100]


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


# --- SQL spellings per dialect (pg | sqlite | mariadb) ------------------------------

KEY = {"pg": "BIGINT", "sqlite": "INTEGER", "mariadb": "BIGINT"}  # SQLite: INTEGER PRIMARY KEY is the rowid
TIMESTAMP = {"pg": "TIMESTAMP", "sqlite": "TIMESTAMP", "mariadb": "DATETIME"}
NUMERIC = {"pg": "NUMERIC(12,2)", "sqlite": "NUMERIC(12,2)", "mariadb": "DECIMAL(12,2)"}
SUFFIX = {"pg": "", "sqlite": "", "mariadb": " ENGINE=InnoDB"}
INT_CAST = {"pg": "BIGINT", "sqlite": "INTEGER", "mariadb": "SIGNED"}


def series(dialect: str, n: int) -> str:
    """A FROM clause yielding ``g`` = 1..n."""
    n = int(n)
    if dialect == "pg":
        return f"generate_series(1, {n}) AS g"
    if dialect == "sqlite":
        return f"(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) SELECT g FROM s)"
    return f"(SELECT seq AS g FROM seq_1_to_{n}) AS s"


def idiv(dialect: str, a: str, b: int) -> str:
    return f"(({a}) DIV {b})" if dialect == "mariadb" else f"(({a}) / {b})"


def created_at(dialect: str, anchor: datetime) -> str:
    a = _ts(anchor)
    if dialect == "pg":
        return f"TIMESTAMP '{a}' - (g % 400) * INTERVAL '1 day' - (7200 + g % 72000) * INTERVAL '1 second'"
    if dialect == "sqlite":
        return f"datetime('{a}', '-' || (g % 400) || ' days', '-' || (7200 + g % 72000) || ' seconds')"
    return f"TIMESTAMP'{a}' - INTERVAL (g % 400) DAY - INTERVAL (7200 + g % 72000) SECOND"


def choice(dialect: str, expr: str, words: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{w}'" for w in words)
    if dialect == "pg":
        return f"(ARRAY[{quoted}])[1 + {expr} % {len(words)}]"
    if dialect == "mariadb":
        return f"ELT(1 + {expr} % {len(words)}, {quoted})"
    return "CASE " + " ".join(f"WHEN {expr} % {len(words)} = {i} THEN '{w}'" for i, w in enumerate(words)) + " END"


def md5_text(dialect: str, chars: int) -> str:
    """The first ``chars`` (≤ 100) of md5(g) md5(g+1) md5(g+2) md5(g+3), as ``note_for``."""
    if dialect == "pg":
        return f"substr(md5(g::text) || md5((g+1)::text) || md5((g+2)::text) || md5((g+3)::text), 1, {chars})"
    if dialect == "mariadb":
        return f"LEFT(CONCAT(MD5(g), MD5(g + 1), MD5(g + 2), MD5(g + 3)), {chars})"
    return f"substr(bench_note(g), 1, {chars})"  # a Python function registered on the connection


def concat(dialect: str, *parts: str) -> str:
    return f"CONCAT({', '.join(parts)})" if dialect == "mariadb" else "(" + " || ".join(parts) + ")"


# --- data sets ----------------------------------------------------------------------

@dataclass(frozen=True)
class Table:
    name: str
    parent: str | None = None       # the table this one references with ON DELETE CASCADE
    fk: str | None = None           # its foreign-key column
    per_parent: int = 1             # rows per parent row
    old_key: Callable[[str, str], str] = lambda dialect, key: f"({key}) % 400 >= 30"  # is the row old, by key


@dataclass(frozen=True)
class Dataset:
    name: str
    tables: tuple[Table, ...]       # parents first
    ddl: Callable[[str], list[str]] = field(repr=False)            # CREATE TABLE (MariaDB: with indexes)
    fill: Callable[[str, int, datetime], list[str]] = field(repr=False)
    indexes: Callable[[str], list[str]] = field(repr=False)        # secondary indexes after the fill (pg, sqlite)

    @property
    def root(self) -> Table:
        return self.tables[0]

    def sizes(self, n: int) -> dict[str, int]:
        """Rows per table for N rows in all."""
        if len(self.tables) == 1:
            return {self.root.name: n}
        roots = n // sum(t.per_parent for t in self.tables)
        return {t.name: roots * t.per_parent for t in self.tables}

    def expected(self, n: int) -> dict[str, int]:
        """Rows per table older than 30 days (those a policy ``archive_after_days=30`` moves)."""
        roots = self.sizes(n)[self.root.name]
        return {t.name: expected_old(roots) * t.per_parent for t in self.tables}

    def total(self, n: int) -> int:
        return sum(self.sizes(n).values())

    def build_sql(self, dialect: str, n: int, anchor: datetime) -> list[str]:
        return [*self.ddl(dialect), *self.fill(dialect, n, anchor),
                *([] if dialect == "mariadb" else self.indexes(dialect))]


def _events_ddl(d: str) -> list[str]:
    index = ",\n  KEY ix_events_created_at (created_at)" if d == "mariadb" else ""
    return [f"""CREATE TABLE events (
  id {KEY[d]} NOT NULL PRIMARY KEY,
  created_at {TIMESTAMP[d]} NOT NULL,
  user_id INTEGER NOT NULL,
  kind VARCHAR(32) NOT NULL,
  amount {NUMERIC[d]},
  note TEXT{index}
){SUFFIX[d]}"""]


def _events_fill(d: str, n: int, anchor: datetime) -> list[str]:
    return [f"""INSERT INTO events (id, created_at, user_id, kind, amount, note)
SELECT g, {created_at(d, anchor)}, g % 5000, {choice(d, 'g', ('click', 'view', 'buy', 'refund'))},
       (g % 100000) / 100.0, {md5_text(d, 100)}
FROM {series(d, n)}"""]


EVENTS = Dataset(
    "events", (Table("events"),), ddl=_events_ddl, fill=_events_fill,
    indexes=lambda d: ["CREATE INDEX ix_events_created_at ON events (created_at)"])


def _orders_ddl(d: str) -> list[str]:
    orders_index = ",\n  KEY ix_orders_created_at (created_at)" if d == "mariadb" else ""
    items_index = ",\n  KEY ix_order_items_order_id (order_id)" if d == "mariadb" else ""
    return [f"""CREATE TABLE orders (
  id {KEY[d]} NOT NULL PRIMARY KEY,
  created_at {TIMESTAMP[d]} NOT NULL,
  customer_id INTEGER NOT NULL,
  status VARCHAR(16) NOT NULL,
  total {NUMERIC[d]},
  note TEXT{orders_index}
){SUFFIX[d]}""", f"""CREATE TABLE order_items (
  id {KEY[d]} NOT NULL PRIMARY KEY,
  order_id {KEY[d]} NOT NULL,
  sku VARCHAR(32) NOT NULL,
  quantity INTEGER NOT NULL,
  price {NUMERIC[d]}{items_index},
  CONSTRAINT fk_order_items_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE
){SUFFIX[d]}"""]


def _orders_fill(d: str, n: int, anchor: datetime) -> list[str]:
    sizes = ORDERS.sizes(n)
    return [f"""INSERT INTO orders (id, created_at, customer_id, status, total, note)
SELECT g, {created_at(d, anchor)}, g % 5000, {choice(d, 'g', ('paid', 'shipped', 'closed'))},
       (g % 100000) / 100.0, {md5_text(d, 32)}
FROM {series(d, sizes['orders'])}""", f"""INSERT INTO order_items (id, order_id, sku, quantity, price)
SELECT g, {idiv(d, 'g + 2', 3)}, {concat(d, "'SKU-'", 'g % 1000')}, 1 + g % 5, (g % 10000) / 100.0
FROM {series(d, sizes['order_items'])}"""]


ORDERS = Dataset(
    "orders",
    (Table("orders"),
     Table("order_items", parent="orders", fk="order_id", per_parent=3,
           old_key=lambda d, key: f"{idiv(d, f'({key}) + 2', 3)} % 400 >= 30")),
    ddl=_orders_ddl, fill=_orders_fill,
    indexes=lambda d: ["CREATE INDEX ix_orders_created_at ON orders (created_at)",
                       "CREATE INDEX ix_order_items_order_id ON order_items (order_id)"])

DATASETS: dict[str, Dataset] = {"events": EVENTS, "orders": ORDERS}


# --- the ground truth after a pipeline ran ------------------------------------------

@dataclass
class Check:
    """What a pipeline moved, checked row by row against the data set's definition."""

    moved: int                                   # rows archived, all tables
    note: str = ""                               # "" when exact, else "MISMATCH: …"
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.note


def check(ds: Dataset, n: int, dialect: str, source_url: str, archive_url: str,
          archive_table: Callable[[str], tuple[str, str, str]] | None = None) -> Check:
    """Every row of every table is either still in the source (the young ones) or archived
    exactly once (the old ones), and each table archived ``per_parent`` × its parent's rows.

    The archive is the project's ``archived_rows`` keyed by (table_name, source_pk), unless
    ``archive_table(table)`` names another place: ``(url, table, key column)`` (pt-archiver's
    typed copies).
    """
    from .servers import query

    sizes, expected = ds.sizes(n), ds.expected(n)
    counts: dict[str, dict[str, int]] = {}
    problems: list[str] = []
    for t in ds.tables:
        old_src = t.old_key(dialect, "id")
        src_total, src_old = query(source_url, f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN {old_src} THEN 1 ELSE 0 END), 0) "
                                               f"FROM {t.name}")[0]
        if archive_table is None:
            a_url, a_table, a_key = archive_url, "archived_rows", f"CAST(source_pk AS {INT_CAST[dialect]})"
            where = f"table_name = '{t.name}'"
        else:
            a_url, a_table, a_key = archive_table(t.name)
            where = "1 = 1"
        arch_total, arch_old = query(a_url, f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN {t.old_key(dialect, a_key)} "
                                            f"THEN 1 ELSE 0 END), 0) FROM {a_table} WHERE {where}")[0]
        src_total, src_old, arch_total, arch_old = map(int, (src_total, src_old, arch_total, arch_old))
        old, young = expected[t.name], sizes[t.name] - expected[t.name]
        both = 0
        if src_old and arch_old:  # only when something went wrong: which old rows are in both places
            in_src = {int(r[0]) for r in query(source_url, f"SELECT id FROM {t.name} WHERE {old_src}")}
            in_arch = {int(r[0]) for r in query(a_url, f"SELECT {a_key} FROM {a_table} WHERE {where}")}
            both = len(in_src & in_arch)
        counts[t.name] = {"source": src_total, "source_old": src_old, "archived": arch_total,
                          "archived_old": arch_old, "expected": old, "in_both": both}
        lost = old - (arch_old + src_old - both)
        if arch_total - arch_old:
            problems.append(f"{arch_total - arch_old:,} young {t.name} rows archived")
        if src_total - src_old != young:
            problems.append(f"{young - (src_total - src_old):,} young {t.name} rows gone from the source")
        if both:
            problems.append(f"{both:,} {t.name} rows both in the source and the archive")
        if src_old - both:
            problems.append(f"{src_old - both:,} old {t.name} rows not archived (still in the source)")
        if lost:
            problems.append(f"{lost:,} {t.name} rows lost (in neither the source nor the archive)")
        if t.parent is not None and arch_total != t.per_parent * counts[t.parent]["archived"]:
            problems.append(f"archived {t.name} {arch_total:,} ≠ {t.per_parent} × "
                            f"{counts[t.parent]['archived']:,} archived {t.parent}")
    moved = sum(c["archived"] for c in counts.values())
    return Check(moved, ("MISMATCH: " + "; ".join(problems)) if problems else "", counts)
