"""Per-dialect SQL: the seam where fast paths plug in without changing callers.

Two strategy objects, looked up by SQLAlchemy dialect name:

* :class:`SourceOps` (source side): how a connection is opened for a batch
  (row locks / SQLite write lock), the age predicate, the keyset SELECT,
  turning rows into archive records (:meth:`SourceOps.fetch_batch`), the
  DELETE by keys and the dry-run COUNT.
* :class:`ArchiveOps` (archive side): the bulk upsert into ``archived_rows``
  and the bounded purge batch.

A fast path (PostgreSQL COPY, server-side JSON, ...) is a subclass registered
with :func:`register_source_ops` / :func:`register_archive_ops`; the engine
only calls the methods below. Every batch is set-based: one SELECT, one bulk
upsert, one DELETE (chunked only past the driver's parameter limit).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from .errors import UnsupportedDateColumn
from .plan import TablePlan
from .rowcodec import canonical_pk, lenient_sqlite_type, to_utc_datetime
from .schema import archived_rows


@dataclass
class Batch:
    """One locked batch: its primary keys (DB order), the last key, and archive records.

    ``records`` are dicts with ``source_pk`` (canonical text), ``payload``
    (JSON text) and ``row_date``: an aware UTC datetime, None, or the same
    instant as naive UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` (a fast path
    that has it as text already; see :func:`row_date_datetime` /
    :func:`row_date_text`).
    """

    keys: list[tuple]
    last_key: tuple | None
    records: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.keys)


class BatchStream:
    """A batch whose rows are read while the archive consumes them (see ``SourceOps.stream_batch``).

    ``chunks()`` yields lists of records (the same dicts as ``Batch.records``)
    as the source returns them; ``finish()`` reads whatever is left and returns
    the whole :class:`Batch` (keys, last key, records). The source
    transaction's row locks cover every row once it has been read.
    """

    def __init__(self, chunks: Iterator[tuple[list[tuple], list[dict[str, Any]]]]) -> None:
        self._chunks = chunks
        self.keys: list[tuple] = []
        self.records: list[dict[str, Any]] = []
        self._first = next(chunks, None)

    def __bool__(self) -> bool:
        return self._first is not None

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        """Each chunk of records once (keys and records are kept as they go)."""
        while self._first is not None or self._chunks is not None:
            if self._first is not None:
                chunk, self._first = self._first, None
            else:
                chunk = next(self._chunks, None)
                if chunk is None:
                    self._chunks = None
                    return
            keys, records = chunk
            self.keys += keys
            self.records += records
            yield records

    def close(self) -> None:
        """Stop reading (closes the source cursor; call it before ending the transaction)."""
        if self._chunks is not None:
            self._chunks.close()
            self._chunks = None
        self._first = None

    def finish(self) -> Batch:
        """Read the rest and return the whole batch."""
        for _ in self.chunks():
            pass
        return Batch(self.keys, self.keys[-1] if self.keys else None, self.records)


def row_date_datetime(value: datetime | str | None) -> datetime | None:
    """A record's ``row_date`` as an aware UTC datetime (or None)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    return value


def row_date_text(value: datetime | str | None) -> str | None:
    """A record's ``row_date`` as naive UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` (or None)."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def sqlite_pragmas(conn: sa.Connection, **values: int) -> Callable[[], None]:
    """Set integer PRAGMAs on a SQLite connection for a run; returns what puts the old values back.

    Run on the driver's connection, outside any transaction (SQLite refuses
    some PRAGMAs inside one).
    """
    dbapi = conn.connection.dbapi_connection
    before = {name: dbapi.execute(f"PRAGMA {name}").fetchone()[0] for name in values}
    for name, value in values.items():
        dbapi.execute(f"PRAGMA {name} = {int(value)}")

    def restore() -> None:
        conn.rollback()
        raw = conn.connection.dbapi_connection
        for name, value in before.items():
            raw.execute(f"PRAGMA {name} = {int(value)}")

    return restore


# --------------------------------------------------------------------------- source

class SourceOps:
    """Source-side operations (portable SQLAlchemy Core; row locks with FOR UPDATE)."""

    #: DELETE ... IN (...) is split so that one statement stays under this many parameters.
    max_params = 30000
    #: Two source transactions can lock and delete disjoint batches at once (row locks), so
    #: batches may overlap (:mod:`.pipeline`). False where a writer excludes the others.
    pipelines = False

    def pipelines_for(self, plan: TablePlan, conn: sa.Connection) -> bool:
        """Whether batches of ``plan``'s table may overlap (see :attr:`pipelines`)."""
        return self.pipelines

    def prepare_pipelined(self, conn: sa.Connection) -> None:
        """Session settings for a connection that runs batches beside another (none by default)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # connections -----------------------------------------------------------
    def connect(self) -> sa.Connection:
        """A connection whose transactions lock what a batch reads."""
        return self.engine.connect()

    def prepare(self, conn: sa.Connection) -> Callable[[], None] | None:
        """Per-run session settings (none by default); returns how to undo them (or None)."""
        return None

    # predicate ---------------------------------------------------------------
    def select_column(self, column: sa.Column) -> Any:
        return column

    def age_predicate(self, table: sa.Table, column: sa.Column, cutoff: datetime) -> sa.ColumnElement[bool]:
        """``column < cutoff`` compared correctly for the column's type."""
        ctype = column.type
        if isinstance(ctype, sa.DateTime) and ctype.timezone:
            return column < sa.literal(cutoff, sa.DateTime(timezone=True))
        if isinstance(ctype, (sa.DateTime, sa.Date)):
            # Naive timestamps are UTC by the project's convention; DATE counts as midnight.
            naive = cutoff.astimezone(timezone.utc).replace(tzinfo=None)
            return column < sa.literal(naive, sa.DateTime())
        raise UnsupportedDateColumn(table.name, column.name, _type_name(ctype))

    def key_column(self, column: sa.Column) -> Any:
        """A primary-key column as compared with the key values read back (keyset, DELETE)."""
        return column

    def keyset_after(self, pk: list[sa.Column]) -> sa.ColumnElement[bool]:
        """``pk > :k0`` (or the row-value comparison for a composite key)."""
        pk = [self.key_column(c) for c in pk]
        if len(pk) == 1:
            return pk[0] > sa.bindparam("k0")
        return sa.tuple_(*pk) > sa.tuple_(*[sa.bindparam(f"k{i}") for i in range(len(pk))])

    # statements ------------------------------------------------------------
    def select_statement(self, plan: TablePlan, first: bool, columns: Sequence[Any] | None = None) -> sa.Select:
        """The keyset batch SELECT of ``columns`` (default: the plan's), locking the rows."""
        stmt = sa.select(*(plan.columns if columns is None else columns)).where(plan.predicate)
        if not first:
            stmt = stmt.where(self.keyset_after(plan.pk))
        return stmt.order_by(*plan.pk).limit(sa.bindparam("batch_limit")).with_for_update()

    def select_batch(self, conn: sa.Connection, plan: TablePlan, after: tuple | None, limit: int) -> Sequence[Any]:
        key = "select_first" if after is None else "select_next"
        stmt = plan.extra.get(key)
        if stmt is None:
            stmt = plan.extra[key] = self.select_statement(plan, after is None)
        params: dict[str, Any] = {"batch_limit": limit}
        if after is not None:
            params.update({f"k{i}": v for i, v in enumerate(after)})
        return conn.execute(stmt, params).all()

    def fetch_batch(self, conn: sa.Connection, plan: TablePlan, after: tuple | None, limit: int) -> Batch:
        """SELECT (and lock) the next batch after ``after`` and encode it for the archive."""
        rows = self.select_batch(conn, plan, after, limit)
        if not rows:
            return Batch([], None, [])
        pk_idx, date_idx, dumps = plan.pk_idx, plan.date_idx, plan.encoder.dumps
        keys: list[tuple] = []
        records: list[dict[str, Any]] = []
        single = pk_idx[0] if len(pk_idx) == 1 else None
        for row in rows:
            if single is not None:
                v = row[single]
                key = (v,)
                spk = str(v) if type(v) is int else canonical_pk(key)
            else:
                key = tuple(row[i] for i in pk_idx)
                spk = canonical_pk(key)
            keys.append(key)
            records.append({"source_pk": spk, "payload": dumps(row), "row_date": to_utc_datetime(row[date_idx])})
        return Batch(keys, keys[-1], records)

    def stream_batch(self, conn: sa.Connection, plan: TablePlan, after: tuple | None,
                     limit: int) -> BatchStream | None:
        """Like fetch_batch, but read in chunks while the archive writes them; None: not supported."""
        return None

    def delete_keys(self, conn: sa.Connection, plan: TablePlan, keys: list[tuple]) -> int:
        """DELETE exactly these primary keys; returns the rows deleted."""
        stmt = plan.extra.get("delete")
        if stmt is None:
            keys_cols = [self.key_column(c) for c in plan.pk]
            if len(keys_cols) == 1:
                cond = keys_cols[0].in_(sa.bindparam("keys", expanding=True))
            else:
                cond = sa.tuple_(*keys_cols).in_(sa.bindparam("keys", expanding=True))
            stmt = plan.extra["delete"] = sa.delete(plan.table).where(cond)
        single = len(plan.pk) == 1
        step = max(1, self.max_params // len(plan.pk))
        deleted = 0
        for i in range(0, len(keys), step):
            chunk = keys[i:i + step]
            values = [k[0] for k in chunk] if single else chunk
            deleted += conn.execute(stmt, {"keys": values}).rowcount
        return deleted

    def count(self, conn: sa.Connection, plan: TablePlan) -> int:
        """How many rows qualify now (dry run / preview)."""
        stmt = sa.select(sa.func.count()).select_from(plan.table).where(plan.predicate)
        return int(conn.execute(stmt).scalar_one())


class SQLiteSourceOps(SourceOps):
    """SQLite: BEGIN IMMEDIATE holds the write lock for the batch; dates may be TEXT."""

    max_params = 30000  # SQLite >= 3.32 allows 32766 variables

    def connect(self) -> sa.Connection:
        return self.engine.connect().execution_options(sqlite_begin="IMMEDIATE")

    def prepare(self, conn: sa.Connection) -> Callable[[], None] | None:
        # A larger page cache for the run: the DELETEs touch the date index all over.
        return sqlite_pragmas(conn, cache_size=-8000)

    def select_column(self, column: sa.Column) -> Any:
        lenient = lenient_sqlite_type(column.type)
        if lenient is None:
            return column
        if column.primary_key:
            # Key values must round-trip byte for byte into the keyset and the DELETE: keep the text.
            return sa.type_coerce(column, sa.String).label(column.name)
        return sa.type_coerce(column, lenient).label(column.name)

    def key_column(self, column: sa.Column) -> Any:
        if lenient_sqlite_type(column.type) is None:
            return column
        return sa.type_coerce(column, sa.String)

    def age_predicate(self, table: sa.Table, column: sa.Column, cutoff: datetime) -> sa.ColumnElement[bool]:
        # SQLite keeps dates as text in whatever format the writer used. datetime()
        # normalises 'YYYY-MM-DD', 'YYYY-MM-DD HH:MM:SS[.fff]', the 'T' form and a
        # trailing 'Z'/'+HH:MM' (converted to UTC) to 'YYYY-MM-DD HH:MM:SS', dropping
        # fractions. The cutoff is a whole second, so floor(value) < cutoff <=> value < cutoff.
        ctype = column.type
        if not isinstance(ctype, (sa.DateTime, sa.Date, sa.String, sa.types.NullType)):
            raise UnsupportedDateColumn(table.name, column.name, _type_name(ctype))
        text = cutoff.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return sa.func.datetime(sa.type_coerce(column, sa.String)) < sa.literal(text, sa.String)


class PostgresSourceOps(SourceOps):
    """PostgreSQL: FOR UPDATE row locks (READ COMMITTED re-checks the predicate after a lock wait)."""

    max_params = 60000
    pipelines = True


class MySQLSourceOps(SourceOps):
    """MySQL/MariaDB: FOR UPDATE (InnoDB), UTC session time zone, expanded keyset."""

    max_params = 60000
    pipelines = True

    def prepare(self, conn: sa.Connection) -> Callable[[], None] | None:
        # TIMESTAMP columns are converted to/from the session time zone; use UTC.
        conn.exec_driver_sql("SET time_zone = '+00:00'")
        conn.commit()

    def select_statement(self, plan: TablePlan, first: bool, columns: Sequence[Any] | None = None) -> sa.Select:
        # The keyset walk reads the primary key in order. Without the hint the optimizer may switch,
        # once rows are deleted, to an index on the date column plus a sort: every batch then reads
        # and locks every remaining old row (seen on MariaDB 10.11: 4 ms -> 280 ms per batch).
        return force_primary_key(super().select_statement(plan, first, columns), plan.table)

    #: Batches overlap only on tables the server estimates at this many rows or more: below
    #: that, overlapping batches gains nothing, and a deadlock between them (which InnoDB ends
    #: by rolling one back, and the pipeline redoes alone) costs more.
    min_pipeline_rows = 10_000

    def pipelines_for(self, plan: TablePlan, conn: sa.Connection) -> bool:
        # A composite-key list is deleted through a range that reads (and locks) rows past its
        # keys, maybe of the next batch, which waits for this one: one key column only.
        if not self.pipelines or len(plan.pk) != 1:
            return False
        if self.min_pipeline_rows <= 0:
            return True
        t = sa.table("TABLES", sa.column("TABLE_SCHEMA"), sa.column("TABLE_NAME"), sa.column("TABLE_ROWS"),
                     schema="information_schema")
        estimate = conn.execute(sa.select(t.c.TABLE_ROWS).where(
            t.c.TABLE_SCHEMA == sa.func.database(), t.c.TABLE_NAME == plan.table.name)).scalar()
        conn.rollback()
        return int(estimate or 0) >= max(self.min_pipeline_rows, 2 * plan.spec.batch_size)

    def prepare_pipelined(self, conn: sa.Connection) -> None:
        # READ COMMITTED: no gap locks, so the source's own writers wait for nothing but the
        # batches' rows, each locked FOR UPDATE from its read to its commit. The batch protocol
        # needs no more: a batch deletes exactly the keys it locked. (SQLAlchemy puts the level
        # back when the connection returns to the pool.)
        conn.rollback()
        conn.execution_options(isolation_level="READ COMMITTED")

    def delete_head(self, conn: sa.Connection, plan: TablePlan) -> str:
        """``DELETE FROM <table> WHERE ``: a list of keys and :meth:`delete_tail` follow."""
        return f"DELETE FROM {conn.dialect.identifier_preparer.format_table(plan.table)} WHERE "

    def delete_tail(self, conn: sa.Connection, plan: TablePlan, n: int) -> str:
        """`` ORDER BY <key> LIMIT n`` after a list of ``n`` keys.

        For a long key list on a small table (or with stale statistics) the server prefers a
        full scan to the key lookups, locking every row it passes: rows of the batch in flight
        on the other connection, a deadlock with it (MariaDB 10.11 plans a full scan for
        10,000 keys of a 20,000-row table). Ordered by the key and cut at ``n`` rows, the
        DELETE walks the listed keys in the primary key instead. The list holds exactly the ``n`` keys the
        batch locked, so the LIMIT never leaves one behind.
        """
        cols = ", ".join(conn.dialect.identifier_preparer.quote(c.name) for c in plan.pk)
        return f" ORDER BY {cols} LIMIT {int(n)}"

    def delete_keys(self, conn: sa.Connection, plan: TablePlan, keys: list[tuple]) -> int:
        """DELETE exactly these keys through the primary key (values as bound parameters)."""
        prep = conn.dialect.identifier_preparer
        cols = [prep.quote(c.name) for c in plan.pk]
        head = self.delete_head(conn, plan)
        step = max(1, self.max_params // len(cols))
        deleted = 0
        for i in range(0, len(keys), step):
            chunk = keys[i:i + step]
            params = {f"k{r}_{c}": v for r, key in enumerate(chunk) for c, v in enumerate(key)}
            if len(cols) == 1:
                cond = f"{cols[0]} IN ({', '.join(f':k{r}_0' for r in range(len(chunk)))})"
            else:
                rows = ", ".join("(" + ", ".join(f":k{r}_{c}" for c in range(len(cols))) + ")" for r in range(len(chunk)))
                cond = f"({', '.join(cols)}) IN ({rows})"
            deleted += conn.execute(sa.text(head + cond + self.delete_tail(conn, plan, len(chunk))), params).rowcount
        return deleted

    def keyset_after(self, pk: list[sa.Column]) -> sa.ColumnElement[bool]:
        if len(pk) == 1:
            return super().keyset_after(pk)
        # (a, b) > (x, y) written out, which MySQL's range optimizer handles everywhere.
        pk = [self.key_column(c) for c in pk]
        ors = []
        for i in range(len(pk)):
            eqs = [pk[j] == sa.bindparam(f"k{j}") for j in range(i)]
            ors.append(sa.and_(*eqs, pk[i] > sa.bindparam(f"k{i}")))
        return sa.or_(*ors)


# --------------------------------------------------------------------------- archive

class ArchiveOps:
    """Archive-side operations on ``archived_rows``."""

    upsert_dialect_insert: Any = None
    #: True when :meth:`upsert_stream` takes record chunks as the source reads them.
    streams = False

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._upsert: sa.Insert | None = None

    def payload_param(self) -> Any:
        """The bound payload: JSON text written as is (serialized once, by orjson)."""
        return sa.bindparam("payload", type_=sa.Text)

    def _values(self) -> dict[str, Any]:
        return {
            "table_name": sa.bindparam("table_name", type_=sa.String),
            "source_pk": sa.bindparam("source_pk", type_=sa.String),
            "payload": self.payload_param(),
            "row_date": sa.bindparam("row_date", type_=sa.DateTime(timezone=True)),
            "archived_at": sa.bindparam("archived_at", type_=sa.DateTime(timezone=True)),
            "run_id": sa.bindparam("run_id", type_=sa.BigInteger),
        }

    def upsert_statement(self) -> Any:
        """INSERT ... ON CONFLICT (table_name, source_pk) DO UPDATE (sqlite/postgresql)."""
        insert = self.upsert_dialect_insert(archived_rows).values(**self._values())
        ex = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=[archived_rows.c.table_name, archived_rows.c.source_pk],
            set_={"payload": ex.payload, "row_date": ex.row_date, "archived_at": ex.archived_at, "run_id": ex.run_id},
        )

    def upsert(self, conn: sa.Connection, table_name: str, records: list[dict[str, Any]],
               archived_at: datetime, run_id: int | None) -> int:
        """Insert or replace the batch's archived copies (keyed by table_name, source_pk)."""
        if not records:
            return 0
        if self._upsert is None:
            self._upsert = self.upsert_statement()
        archived_at = self.datetime_param(archived_at)
        params = [{**r, "table_name": table_name, "archived_at": archived_at, "run_id": run_id,
                   "row_date": self.datetime_param(row_date_datetime(r["row_date"]))} for r in records]
        conn.execute(self._upsert, params)
        return len(records)

    def prepare(self, conn: sa.Connection) -> Callable[[], None] | None:
        """Per-run settings on the archive connection; returns how to undo them (or None)."""
        return None

    def upsert_stream(self, conn: sa.Connection, table_name: str, chunks: Iterable[list[dict[str, Any]]],
                      archived_at: datetime, run_id: int | None) -> int:
        """:meth:`upsert` for record chunks that arrive while it runs (when ``streams``)."""
        records = [r for chunk in chunks for r in chunk]
        return self.upsert(conn, table_name, records, archived_at, run_id)

    def datetime_param(self, value: datetime | None) -> datetime | None:
        return value

    def _expired(self, table_name: str, cutoff: datetime) -> sa.ColumnElement[bool]:
        return sa.and_(archived_rows.c.table_name == table_name,
                       archived_rows.c.archived_at < self.datetime_param(cutoff))

    def purge_batch(self, conn: sa.Connection, table_name: str, cutoff: datetime, limit: int) -> int:
        """Delete at most ``limit`` archived rows of ``table_name`` archived before ``cutoff``."""
        ids = conn.execute(sa.select(archived_rows.c.id).where(self._expired(table_name, cutoff))
                           .order_by(archived_rows.c.archived_at).limit(limit)).scalars().all()
        if not ids:
            return 0
        return conn.execute(sa.delete(archived_rows).where(
            archived_rows.c.id.in_(sa.bindparam("ids", expanding=True))), {"ids": list(ids)}).rowcount

    def count_expired(self, conn: sa.Connection, table_name: str, cutoff: datetime) -> int:
        stmt = sa.select(sa.func.count()).select_from(archived_rows).where(self._expired(table_name, cutoff))
        return int(conn.execute(stmt).scalar_one())


class _SubqueryPurge(ArchiveOps):
    def purge_batch(self, conn: sa.Connection, table_name: str, cutoff: datetime, limit: int) -> int:
        ids = (sa.select(archived_rows.c.id).where(self._expired(table_name, cutoff))
               .order_by(archived_rows.c.archived_at).limit(limit).scalar_subquery())
        return conn.execute(sa.delete(archived_rows).where(archived_rows.c.id.in_(ids))).rowcount


def _sqlite_datetime_text(value: datetime | str | None) -> str | None:
    """SQLAlchemy's SQLite DATETIME storage format, in UTC (so text comparisons order correctly)."""
    return row_date_text(value)


class SQLiteArchiveOps(_SubqueryPurge):
    """SQLite: the upsert goes straight to the driver's executemany (one prepared statement)."""

    def prepare(self, conn: sa.Connection) -> Callable[[], None] | None:
        # In WAL mode with synchronous=NORMAL a commit is not on disk until a later sync: after a
        # power loss the archive could lose batches whose source DELETE did reach the disk. FULL
        # syncs each archive commit before the source DELETE runs (one fsync per batch). A larger
        # page cache for the run: the upserts land all over archived_rows' indexes (~20% faster).
        return sqlite_pragmas(conn, synchronous=2, cache_size=-16000)

    upsert_dialect_insert = staticmethod(sqlite_dialect.insert)
    _UPSERT_SQL = (
        "INSERT INTO archived_rows (table_name, source_pk, payload, row_date, archived_at, run_id) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (table_name, source_pk) DO UPDATE SET "
        "payload = excluded.payload, row_date = excluded.row_date, archived_at = excluded.archived_at, "
        "run_id = excluded.run_id")

    def datetime_param(self, value: datetime | None) -> datetime | None:
        # SQLAlchemy stores SQLite datetimes as naive text: always write UTC.
        return None if value is None else value.astimezone(timezone.utc)

    def upsert(self, conn: sa.Connection, table_name: str, records: list[dict[str, Any]],
               archived_at: datetime, run_id: int | None) -> int:
        if not records:
            return 0
        at = _sqlite_datetime_text(archived_at)
        conn.exec_driver_sql(self._UPSERT_SQL, [
            (table_name, r["source_pk"], r["payload"],
             rd if (rd := r["row_date"]).__class__ is str else _sqlite_datetime_text(rd), at, run_id)
            for r in records])
        return len(records)


class PostgresArchiveOps(_SubqueryPurge):
    upsert_dialect_insert = staticmethod(pg_dialect.insert)

    def payload_param(self) -> Any:
        return sa.cast(sa.bindparam("payload", type_=sa.Text), pg_dialect.JSONB)

    def upsert_statement(self) -> Any:
        # RETURNING makes SQLAlchemy batch the executemany into multi-row VALUES
        # ("insertmanyvalues"), which it does not do for a bare ON CONFLICT insert.
        # Keys within one batch are distinct, so no row is hit twice by one statement.
        return super().upsert_statement().returning(archived_rows.c.id)


class MySQLArchiveOps(ArchiveOps):
    upsert_dialect_insert = staticmethod(mysql_dialect.insert)

    def upsert_statement(self) -> Any:
        insert = mysql_dialect.insert(archived_rows).values(**self._values())
        ins = insert.inserted
        return insert.on_duplicate_key_update(payload=ins.payload, row_date=ins.row_date,
                                              archived_at=ins.archived_at, run_id=ins.run_id)

    def datetime_param(self, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(timezone.utc).replace(tzinfo=None)


# --------------------------------------------------------------------------- registry

SOURCE_OPS: dict[str, type[SourceOps]] = {
    "sqlite": SQLiteSourceOps, "postgresql": PostgresSourceOps, "mysql": MySQLSourceOps, "mariadb": MySQLSourceOps,
}
ARCHIVE_OPS: dict[str, type[ArchiveOps]] = {
    "sqlite": SQLiteArchiveOps, "postgresql": PostgresArchiveOps, "mysql": MySQLArchiveOps, "mariadb": MySQLArchiveOps,
}


_GENERIC = (dict(SOURCE_OPS), dict(ARCHIVE_OPS))
_fast_loaded = False


def register_source_ops(dialect_name: str, cls: type[SourceOps]) -> None:
    """Use ``cls`` for source engines of ``dialect_name`` (a fast path)."""
    SOURCE_OPS[dialect_name] = cls


def register_archive_ops(dialect_name: str, cls: type[ArchiveOps]) -> None:
    """Use ``cls`` for archive engines of ``dialect_name`` (a fast path)."""
    ARCHIVE_OPS[dialect_name] = cls


def _load_fast_paths() -> None:
    """Register the built-in fast paths (fast_pg, fast_sqlite, fast_mysql) as the defaults.

    Done on first use, since they subclass the classes here; a class
    registered by the application for a dialect is kept.
    """
    global _fast_loaded
    if _fast_loaded:
        return
    _fast_loaded = True
    from . import fast_mysql, fast_pg, fast_sqlite  # noqa: PLC0415

    for registry, generic in zip((SOURCE_OPS, ARCHIVE_OPS), _GENERIC):
        before = dict(registry)
        for module in (fast_pg, fast_sqlite, fast_mysql):
            for name, cls in module.FAST_OPS.get(registry is SOURCE_OPS, {}).items():
                if before.get(name) is generic.get(name):
                    registry[name] = cls


def source_ops_for(engine: sa.Engine) -> SourceOps:
    _load_fast_paths()
    return SOURCE_OPS.get(engine.dialect.name, SourceOps)(engine)


def archive_ops_for(engine: sa.Engine) -> ArchiveOps:
    _load_fast_paths()
    cls = ARCHIVE_OPS.get(engine.dialect.name)
    if cls is None:
        raise NotImplementedError(f"archive database dialect {engine.dialect.name!r} is not supported")
    return cls(engine)


def force_primary_key(stmt: sa.Select, table: sa.Table) -> sa.Select:
    """``stmt`` reading ``table`` through its primary key (MySQL/MariaDB index hint; no-op elsewhere)."""
    for name in ("mysql", "mariadb"):
        stmt = stmt.with_hint(table, "FORCE INDEX (PRIMARY)", dialect_name=name)
    return stmt


def _type_name(ctype: sa.types.TypeEngine) -> str:
    try:
        return str(ctype)
    except Exception:  # noqa: BLE001 - some reflected types cannot compile without a dialect
        return type(ctype).__name__


