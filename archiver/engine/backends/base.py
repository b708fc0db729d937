"""What every database backend provides: capabilities declared as data, and the ops it runs.

A backend (one package under ``engine/backends/``) declares a :class:`Backend`
with its :class:`Capabilities` and two ops classes:

* :class:`SourceOps` (source side): how a connection is opened for a batch
  (row locks / a write lock), the age predicate, the keyset SELECT that locks
  a batch and turns its rows into archive records (:meth:`SourceOps.fetch_batch`),
  the DELETE by keys and the dry-run COUNT.
* :class:`ArchiveOps` (archive side): the bulk upsert into ``archived_rows``,
  the bounded purge batch and the lease statement.

The classes here are the portable SQLAlchemy Core versions; a backend
subclasses them for its own SQL and fast paths. The batch loop
(:mod:`archiver.engine.batches`) asks ``Capabilities`` what a pair of
databases can do and calls the methods below; it never probes attributes.
Every batch is set-based: one SELECT, one bulk upsert, one DELETE (chunked
only past the driver's parameter limit).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Iterator, Sequence

import sqlalchemy as sa

from ..errors import DatabaseError, UnsupportedDateColumn
from ..graph import Reference
from ..payload_filter import PORTABLE_READS, PayloadReads
from ..rowcodec import canonical_pk, to_utc_datetime
from ..schema import archived_rows

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import Slot
    from ..plan import MemberTable, TablePlan


@dataclass(frozen=True)
class Capabilities:
    """What a database can do, as facts the batch loop and the policy check ask.

    ``row_locks``: ``SELECT … FOR UPDATE`` locks rows and writers do not
    exclude each other, so two batches may be in flight on two connections.
    ``server_json``: the batch SELECT can return each row's payload built by
    the server. ``streaming_reads``: a batch can stream from a server-side
    cursor while the archive writes it. ``copy``: ``COPY … FROM STDIN`` /
    ``TO STDOUT``. ``in_server_moves``: a source and an archive on one server
    can move a batch with ``INSERT … SELECT`` across databases.
    ``skip_locked``: ``FOR UPDATE SKIP LOCKED``. ``advisory_locks``:
    session-level named locks that die with their connection.
    ``text_dates``: the database has no date type, so a text column may be a
    policy's date column. ``max_bind_params``: bound parameters one statement
    may carry. ``statement_key_checks``: a foreign key is checked at the end of
    each statement, so one DELETE may take a row and the rows of its table that
    reference it in any order (InnoDB checks row by row: it may not).
    ``stale_snapshot_writes``: a transaction that has read may still write after
    another connection committed (SQLite's write then fails at once, so a
    transaction that read ends before one that writes begins).
    """

    row_locks: bool
    server_json: bool
    streaming_reads: bool
    copy: bool
    in_server_moves: bool
    skip_locked: bool
    advisory_locks: bool
    text_dates: bool
    max_bind_params: int
    signals: frozenset[str] = frozenset()
    statement_key_checks: bool = True
    stale_snapshot_writes: bool = True


@dataclass(frozen=True)
class ConnectionSettings:
    """Timeouts every connection of an engine gets (each backend applies them its own way in
    :meth:`Backend.configure_engine`). Seconds; 0 turns a statement, idle or lock timeout off.

    ``connect``: give up opening a connection. ``statement``: cancel one statement.
    ``lock``: give up waiting for a row or table lock (SQLite: its busy timeout).
    ``idle_in_transaction``: the server ends a session left idle inside a transaction (its
    row locks go with it). ``network``: a peer that stops answering (no RST: a dropped route,
    a dead host) is given up within about this long (TCP keepalives, TCP_USER_TIMEOUT, socket
    read/write timeouts).

    ``owned``: the database is the service's own (the archive), written by the service alone;
    a backend may tune it for the service's writes (SQLite: a WAL checkpoint every 64 MB of
    changes instead of every 4 MB). Never set for a source, whose application has its own needs.
    """

    connect: int = 10
    statement: int = 300
    lock: int = 30
    idle_in_transaction: int = 60
    network: int = 30
    owned: bool = False


#: A database without a backend package of its own: the portable protocol, one batch at a time.
PORTABLE_CAPABILITIES = Capabilities(row_locks=False, server_json=False, streaming_reads=False, copy=False,
                                     in_server_moves=False, skip_locked=False, advisory_locks=False,
                                     text_dates=False, max_bind_params=999)


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
        self._chunks: Iterator[tuple[list[tuple], list[dict[str, Any]]]] | None = chunks
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
                chunk = next(self._chunks, None)  # type: ignore[arg-type]
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
            self._chunks.close()  # type: ignore[attr-defined]
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


def type_name(ctype: sa.types.TypeEngine) -> str:
    """A column type as text (``VARCHAR(20)``), or its class name when it cannot compile alone."""
    try:
        return str(ctype)
    except Exception:  # noqa: BLE001 - some reflected types cannot compile without a dialect
        return type(ctype).__name__


def generic_reason(exc: BaseException) -> str:
    """A DB-API error described by its class only (backends name codes they know)."""
    orig = getattr(exc, "orig", exc)
    kind = type(exc).__name__ if isinstance(exc, sa.exc.DBAPIError) else type(orig).__name__
    if isinstance(exc, sa.exc.DBAPIError) and (exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError)):
        return f"unavailable or operation failed ({kind})"
    return kind


# --------------------------------------------------------------------------- source

class SourceOps:
    """Source-side operations (portable SQLAlchemy Core; row locks with FOR UPDATE)."""

    capabilities: Capabilities = PORTABLE_CAPABILITIES
    #: DELETE ... IN (...) is split so that one statement stays under this many parameters.
    max_params = 30000
    #: Use the backend's fast paths (server-built payloads, array DELETEs, ...). Tests turn it
    #: off to compare a fast path with the portable protocol on the same database.
    fast_enabled = True

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # errors ------------------------------------------------------------------
    def explain(self, exc: BaseException) -> str:
        """A safe reason for a DB-API error of this database (kind and code, never its text)."""
        return generic_reason(exc)

    def is_lock_conflict(self, exc: BaseException) -> bool:
        """True for a deadlock or a lock-wait timeout (the statement, maybe its transaction, was undone)."""
        return False

    # connections -----------------------------------------------------------
    def connect(self) -> sa.Connection:
        """A connection whose transactions lock what a batch reads."""
        return self.engine.connect()

    def prepare(self, conn: sa.Connection) -> Callable[[], None] | None:
        """Per-run session settings (none by default); returns how to undo them (or None)."""
        return None

    def overlaps(self, plan: "TablePlan", conn: sa.Connection) -> bool:
        """Whether this run's batches may overlap (asked only when the backend has ``row_locks``)."""
        return True

    def prepare_overlapped(self, conn: sa.Connection) -> None:
        """Session settings for a connection that runs batches beside another (none by default)."""

    def streams(self) -> bool:
        """Whether :meth:`stream_batch` streams (the backend can, and the fast path is on)."""
        return False

    # reflection --------------------------------------------------------------
    def reflect_table(self, conn: sa.Connection | sa.Engine, name: str) -> sa.Table:
        """The source table ``name``, reflected with this database's quirks corrected
        (:meth:`column_reflected`); raises NoSuchTableError."""
        return sa.Table(name, sa.MetaData(), autoload_with=conn,
                        listeners=[("column_reflect", self.column_reflected)])

    def column_reflected(self, inspector: Any, table: sa.Table, column: dict[str, Any]) -> None:
        """Adjust one reflected column's description before the Column is made (none by default)."""

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
        raise UnsupportedDateColumn(table.name, column.name, type_name(ctype))

    def date_sample_ok(self, column: sa.Column) -> sa.ColumnElement[bool] | None:
        """For a database with ``text_dates``: SQL that is true when a stored value of ``column``
        is a date the age predicate compares correctly (None: no such check, dates are typed)."""
        return None

    def key_column(self, column: sa.Column) -> Any:
        """A primary-key column as compared with the key values read back (keyset, DELETE)."""
        return column

    def keyset_after(self, pk: list[sa.Column]) -> sa.ColumnElement[bool]:
        """``pk > :k0`` (or the row-value comparison for a composite key)."""
        cols = [self.key_column(c) for c in pk]
        if len(cols) == 1:
            return cols[0] > sa.bindparam("k0")
        return sa.tuple_(*cols) > sa.tuple_(*[sa.bindparam(f"k{i}") for i in range(len(cols))])

    # statements ------------------------------------------------------------
    def select_statement(self, plan: "TablePlan", first: bool, columns: Sequence[Any] | None = None) -> sa.Select:
        """The keyset batch SELECT of ``columns`` (default: the plan's), locking the rows."""
        stmt = sa.select(*(plan.columns if columns is None else columns)).where(plan.predicate)
        if not first:
            stmt = stmt.where(self.keyset_after(plan.pk))
        return stmt.order_by(*plan.pk).limit(sa.bindparam("batch_limit")).with_for_update()

    def select_batch(self, conn: sa.Connection, plan: "TablePlan", after: tuple | None, limit: int) -> Sequence[Any]:
        key = "select_first" if after is None else "select_next"
        stmt = plan.extra.get(key)
        if stmt is None:
            stmt = plan.extra[key] = self.select_statement(plan, after is None)
        params: dict[str, Any] = {"batch_limit": limit}
        if after is not None:
            params.update({f"k{i}": v for i, v in enumerate(after)})
        return conn.execute(stmt, params).all()

    def fetch_batch(self, conn: sa.Connection, plan: "TablePlan", after: tuple | None, limit: int) -> Batch:
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

    def stream_batch(self, conn: sa.Connection, plan: "TablePlan", after: tuple | None,
                     limit: int) -> BatchStream | None:
        """Like fetch_batch, but read in chunks while the archive writes them (when :meth:`streams`)."""
        return None

    def delete_keys(self, conn: sa.Connection, plan: "TablePlan", keys: list[tuple]) -> int:
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

    def count(self, conn: sa.Connection, plan: "TablePlan") -> int:
        """How many rows qualify now (dry run / preview)."""
        stmt = sa.select(sa.func.count()).select_from(plan.table).where(plan.predicate)
        return int(conn.execute(stmt).scalar_one())

    def oldest_date(self, conn: sa.Connection, plan: "TablePlan") -> datetime | None:
        """The date (aware, UTC) of the oldest row that qualifies now, or None when none does: one
        ``MIN(date column)`` over the plan's predicate (an index on the date column serves it)."""
        stmt = sa.select(sa.func.min(plan.date_column)).where(plan.predicate)
        return to_utc_datetime(conn.execute(stmt).scalar())

    # relations -------------------------------------------------------------
    def foreign_keys(self, conn: sa.Connection) -> list[Reference]:
        """Every foreign key of the source's default schema (``ON DELETE`` rule included)."""
        refs = []
        pks: dict[str, tuple[str, ...]] = {}
        insp = sa.inspect(conn)
        for (_schema, table), fks in insp.get_multi_foreign_keys().items():
            for fk in fks:
                parent = fk["referred_table"]
                parent_cols = tuple(fk["referred_columns"])
                if not parent_cols:  # REFERENCES parent: its primary key
                    if parent not in pks:
                        pks[parent] = tuple(insp.get_pk_constraint(parent)["constrained_columns"])
                    parent_cols = pks[parent]
                rule = str((fk.get("options") or {}).get("ondelete") or "NO ACTION").upper()
                refs.append(Reference(table, tuple(fk["constrained_columns"]), parent, parent_cols, rule))
        return refs

    def one_of(self, column: Any, values: list[Any]) -> tuple[sa.ColumnElement[bool], dict[str, Any]] | None:
        """``column`` IN ``values`` as one condition whose parameters do not grow with the list (an
        array, a JSON text, ...), or None: the values then go as bound parameters, in chunks."""
        return None

    def _keys_in(self, cols: list[Any], values: list[tuple]) -> Iterator[tuple[sa.ColumnElement[bool], dict[str, Any]]]:
        """Conditions (with their parameters) that together select ``cols`` IN ``values``."""
        if len(cols) == 1:
            one = self.one_of(cols[0], [v[0] for v in values])
            if one is not None:
                yield one
                return
        target = cols[0] if len(cols) == 1 else sa.tuple_(*cols)
        cond = target.in_(sa.bindparam("values", expanding=True))
        step = max(1, self.max_params // len(cols))
        for i in range(0, len(values), step):
            chunk = values[i:i + step]
            yield cond, {"values": [v[0] for v in chunk] if len(cols) == 1 else chunk}

    def member_select(self, member: "MemberTable", needed: Sequence[str]) -> tuple[list[Any], dict[str, int]]:
        """The select list for rows of an object's table (archived with their root), and where each
        ``needed`` column's value is in a selected row."""
        return list(member.columns), {name: i for i, name in enumerate(member.names)}

    def member_records(self, conn: sa.Connection, member: "MemberTable",
                       rows: Sequence[Any]) -> list[dict[str, Any]]:
        """Archive records (source_pk, payload) of rows selected with :meth:`member_select`, in order."""
        dumps = member.encoder.dumps
        return [{"source_pk": str(k[0]) if len(k) == 1 and type(k[0]) is int else canonical_pk(k),
                 "payload": dumps(row)} for row in rows for k in (member.key(row),)]

    def select_referencing(self, conn: sa.Connection, table: sa.Table, columns: Sequence[sa.Column],
                           items: Sequence[Any], values: Iterable[tuple], *, lock: bool) -> list[Any]:
        """``items`` of the rows of ``table`` whose ``columns`` hold one of ``values`` (row locks with ``lock``)."""
        values = list(values)
        if not values:
            return []
        rows: list[Any] = []
        for cond, params in self._keys_in([self.key_column(c) for c in columns], values):
            stmt = sa.select(*items).where(cond)
            rows += conn.execute(stmt.with_for_update() if lock else stmt, params).all()
        return rows

    def count_referencing(self, conn: sa.Connection, plan: "TablePlan", edge: Reference,
                          parent_keys: list[tuple], exclude: Sequence[tuple] = ()) -> int:
        """Rows of ``edge.child`` (but the ``exclude`` keys) that reference one of these parent rows."""
        parent, child = plan.members[edge.parent], plan.members[edge.child]
        if not exclude and len(edge.columns) == 1 and edge.parent_columns == (parent.pk[0].name,) \
                and len(parent.pk) == 1:  # the reference holds the parent's key: no lookup of the parent
            column = self.key_column(child.table.c[edge.columns[0]])
            return sum(int(conn.execute(sa.select(sa.func.count()).select_from(child.table).where(cond), params)
                           .scalar_one()) for cond, params in self._keys_in([column], parent_keys))
        pcols = [self.key_column(c) for c in parent.pk]
        ptarget = pcols[0] if len(pcols) == 1 else sa.tuple_(*pcols)
        referenced = sa.select(*[parent.table.c[c] for c in edge.parent_columns]).where(
            ptarget.in_(sa.bindparam("keys", expanding=True)))
        ccols = [self.key_column(child.table.c[c]) for c in edge.columns]
        stmt = sa.select(sa.func.count()).select_from(child.table).where(
            (ccols[0] if len(ccols) == 1 else sa.tuple_(*ccols)).in_(referenced))
        params: dict[str, Any] = {}
        if exclude:
            kcols = [self.key_column(c) for c in child.pk]
            stmt = stmt.where((kcols[0] if len(kcols) == 1 else sa.tuple_(*kcols)).not_in(
                sa.bindparam("exclude", expanding=True)))
            params["exclude"] = [k[0] for k in exclude] if len(kcols) == 1 else list(exclude)
        total = 0
        step = max(1, self.max_params // (2 * max(len(pcols), len(child.pk))))
        for i in range(0, len(parent_keys), step):
            chunk = parent_keys[i:i + step]
            params["keys"] = [k[0] for k in chunk] if len(pcols) == 1 else chunk
            total += int(conn.execute(stmt, params).scalar_one())
        return total

    def delete_rows(self, conn: sa.Connection, table: sa.Table, pk: Sequence[sa.Column], keys: list[tuple]) -> int:
        """DELETE exactly these primary keys of ``table`` (a member of an object); the rows deleted."""
        return sum(conn.execute(sa.delete(table).where(cond), params).rowcount
                   for cond, params in self._keys_in([self.key_column(c) for c in pk], keys))


# --------------------------------------------------------------------------- archive

    # throttle signals (only asked when ``capabilities.signals`` names them) -----
    def replica_lag(self, conn: sa.Connection) -> float | None:
        """Seconds of replication lag seen on ``conn``'s server (None: not known there)."""
        raise NotImplementedError(f"{type(self).__name__} reads no replica lag")

    def active_sessions(self, conn: sa.Connection) -> int | None:
        """Sessions of ``conn``'s server running a statement now, ``conn`` left out."""
        raise NotImplementedError(f"{type(self).__name__} reads no active sessions")


class DatabaseSignals:
    """A throttle's signals read with the backends' own queries, each on a short connection of its
    own: load on the source, lag on ``replica`` (a replica's ops) or else on the source itself
    (a PostgreSQL primary knows its standbys' lag; a MariaDB source that is itself a replica its own)."""

    def __init__(self, source: SourceOps, replica: SourceOps | None = None) -> None:
        self.source, self.replica = source, replica or source

    def _read(self, ops: SourceOps, signal: str, query: Callable[[sa.Connection], Any]) -> Any:
        if signal not in ops.capabilities.signals:
            return None
        try:
            with ops.engine.connect() as conn:
                value = query(conn)
                conn.rollback()
                return value
        except sa.exc.DBAPIError as exc:
            side = "source" if ops is self.source else "replica"
            raise DatabaseError(side, f"cannot read {signal.replace('_', ' ')}: {ops.explain(exc)}") from exc

    def replica_lag(self) -> float | None:
        return self._read(self.replica, "replica_lag", self.replica.replica_lag)

    def active_sessions(self) -> int | None:
        return self._read(self.source, "active_sessions", self.source.active_sessions)


class ArchiveOps:
    """Archive-side operations on ``archived_rows`` (portable parts)."""

    capabilities: Capabilities = PORTABLE_CAPABILITIES
    #: How this database's SQL reads one key of a payload (the archive listing's ``where`` filters).
    payload_reads: PayloadReads = PORTABLE_READS
    #: True when :meth:`upsert_stream` takes record chunks as the source reads them.
    streams = False
    fast_enabled = True

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._upsert: Any = None

    def explain(self, exc: BaseException) -> str:
        """A safe reason for a DB-API error of this database (kind and code, never its text)."""
        return generic_reason(exc)

    def payload_param(self) -> Any:
        """The bound payload: JSON text written as is (serialized once, by orjson)."""
        return sa.bindparam("payload", type_=sa.Text)

    def values(self) -> dict[str, Any]:
        """The bound values of one ``archived_rows`` row."""
        return {
            "table_name": sa.bindparam("table_name", type_=sa.String),
            "source_pk": sa.bindparam("source_pk", type_=sa.String),
            "payload": self.payload_param(),
            "row_date": sa.bindparam("row_date", type_=sa.DateTime(timezone=True)),
            "archived_at": sa.bindparam("archived_at", type_=sa.DateTime(timezone=True)),
            "run_id": sa.bindparam("run_id", type_=sa.BigInteger),
            "root_id": sa.bindparam("root_id", type_=sa.BigInteger),
            "depth": sa.bindparam("depth", type_=sa.SmallInteger),
        }

    #: The columns an upsert replaces on an existing copy.
    REPLACED = ("payload", "row_date", "archived_at", "run_id", "root_id", "depth")

    def upsert_statement(self) -> Any:
        """INSERT … keyed by (table_name, source_pk), replacing an existing copy (:attr:`REPLACED`)."""
        raise NotImplementedError

    def upsert(self, conn: sa.Connection, table_name: str, records: list[dict[str, Any]],
               archived_at: datetime, run_id: int | None) -> int:
        """Insert or replace the batch's archived copies (keyed by table_name, source_pk)."""
        if not records:
            return 0
        if self._upsert is None:
            self._upsert = self.upsert_statement()
        archived_at = self.datetime_param(archived_at)
        params = [{"root_id": None, "depth": 0, **r, "table_name": table_name, "archived_at": archived_at,
                   "run_id": run_id, "row_date": self.datetime_param(row_date_datetime(r["row_date"]))}
                  for r in records]
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

    def expired(self, table_name: str, cutoff: datetime) -> sa.ColumnElement[bool]:
        """Rows of ``table_name`` archived strictly before ``cutoff`` by their own table's policy.

        A row that moved with a parent row (``root_id`` set) is not among them: it is
        purged with its root, never before (:meth:`purge_batch`).
        """
        return sa.and_(archived_rows.c.table_name == table_name, archived_rows.c.root_id.is_(None),
                       archived_rows.c.archived_at < self.datetime_param(cutoff))

    def below_expired(self, ids: Any, cutoff: datetime) -> sa.ColumnElement[bool]:
        """The rows that moved with these roots (``ids``: a list or a subquery) and were archived with them."""
        return sa.and_(archived_rows.c.root_id.in_(ids), archived_rows.c.archived_at < self.datetime_param(cutoff))

    def purge_batch(self, conn: sa.Connection, table_name: str, cutoff: datetime, limit: int) -> tuple[int, int]:
        """Delete at most ``limit`` expired archived rows of ``table_name`` and the rows that moved with
        them; (roots, descendants) deleted. Their ids are read first: MySQL takes no LIMIT in an IN subquery."""
        c = archived_rows.c
        ids = list(conn.execute(sa.select(c.id).where(self.expired(table_name, cutoff))
                                .order_by(c.archived_at, c.id).limit(limit)).scalars())
        roots = below = 0
        for i in range(0, len(ids), 30000):
            chunk = ids[i:i + 30000]
            below += conn.execute(sa.delete(archived_rows).where(self.below_expired(chunk, cutoff))).rowcount
            roots += conn.execute(sa.delete(archived_rows).where(c.id.in_(chunk))).rowcount
        return roots, below

    def purge_batch_in_one_statement(self, conn: sa.Connection, table_name: str, cutoff: datetime,
                                     limit: int) -> tuple[int, int]:
        """:meth:`purge_batch` as DELETE … WHERE id IN (SELECT … LIMIT n), where the database takes it
        (the descendants first, by the same subquery, in the same transaction)."""
        c = archived_rows.c
        ids = (sa.select(c.id).where(self.expired(table_name, cutoff))
               .order_by(c.archived_at, c.id).limit(limit).scalar_subquery())
        below = conn.execute(sa.delete(archived_rows).where(self.below_expired(ids, cutoff))).rowcount
        return conn.execute(sa.delete(archived_rows).where(c.id.in_(ids))).rowcount, below

    def archived_ids(self, conn: sa.Connection, table_name: str, source_pks: list[str]) -> dict[str, int]:
        """The ``archived_rows.id`` of these archived rows of ``table_name``, by source_pk."""
        c = archived_rows.c
        stmt = sa.select(c.source_pk, c.id).where(c.table_name == table_name,
                                                  c.source_pk.in_(sa.bindparam("pks", expanding=True)))
        out: dict[str, int] = {}
        for i in range(0, len(source_pks), 5000):
            out.update(conn.execute(stmt, {"pks": source_pks[i:i + 5000]}).all())
        return out

    def count_expired(self, conn: sa.Connection, table_name: str, cutoff: datetime) -> int:
        stmt = sa.select(sa.func.count()).select_from(archived_rows).where(self.expired(table_name, cutoff))
        return int(conn.execute(stmt).scalar_one())

    # table locks (``Capabilities.advisory_locks``; see engine/lease.py) ---------
    def lock_name(self, conn: sa.Connection, table_name: str) -> Any:
        """The advisory lock's name (or key) for a table of this archive database."""
        raise NotImplementedError

    def try_lock(self, conn: sa.Connection, name: Any) -> bool:
        """Take the session-level advisory lock ``name`` on ``conn`` without waiting; True when taken."""
        raise NotImplementedError

    def unlock(self, conn: sa.Connection, name: Any) -> None:
        """Release the advisory lock ``name`` held by ``conn``'s session."""
        raise NotImplementedError

    def bound_idle_session(self, conn: sa.Connection, seconds: int) -> None:
        """The server ends ``conn``'s session, and the advisory locks it holds, once it has waited
        ``seconds`` for a statement (its client vanished without closing the connection: a crashed
        host, a cut network); nothing where the database cannot say so."""


# --------------------------------------------------------------------------- backend

class Backend:
    """One database: its capabilities, ops classes and the hooks only it can answer.

    A subclass per database lives in its own package; the registry
    (:mod:`archiver.engine.backends`) finds it by SQLAlchemy dialect name.
    """

    name = "portable"
    capabilities: Capabilities = PORTABLE_CAPABILITIES
    source_ops: type[SourceOps] = SourceOps
    archive_ops: type[ArchiveOps] = ArchiveOps
    #: Top-level DB-API driver modules whose errors :meth:`explain` describes.
    drivers: tuple[str, ...] = ()

    def configure_engine(self, engine: sa.Engine, settings: ConnectionSettings | None = None) -> None:
        """Settings every connection of ``engine`` needs (event listeners); none by default."""

    def explain(self, exc: BaseException) -> str | None:
        """A safe reason for a DB-API error raised by this database's driver, else None."""
        return None

    def writes_expected(self, engine: sa.Engine) -> ContextManager[None]:
        """Within it, the transactions this thread begins on ``engine`` are about to write: where a
        transaction that read first could not write later (SQLite: another writer's commit made
        its snapshot stale, and the write fails at once), they take the write lock at BEGIN.
        Nothing to do for databases with row locks."""
        return nullcontext()

    def same_database(self, a: sa.Engine, b: sa.Engine) -> bool:
        """True when both engines open one database whose writers exclude each other (one file):
        the archive upsert and the source DELETE of a batch then commit together."""
        return False

    # the archive database as the service's own store: init-db, migrations, audit records ---------
    def schema_lock(self, conn: sa.Connection, name: str, wait_seconds: int) -> ContextManager[Any]:
        """One transaction on ``conn`` that no other process changing this database's schema (a lock
        called ``name``) shares; SchemaLockBusy when another holds it for ``wait_seconds``."""
        return conn.begin()

    def altering_tables(self, conn: sa.Connection) -> ContextManager[None]:
        """Around a migration's transaction on ``conn``: what altering a table needs (SQLite
        re-creates the table, so its foreign keys are off meanwhile); nothing elsewhere."""
        return nullcontext()

    def dangling_references(self, conn: sa.Connection) -> list[tuple[Any, ...]]:
        """Rows whose foreign key points nowhere, where the database could have let a migration
        leave some (:meth:`altering_tables`); checked before the migration commits."""
        return []

    def relax_commit(self, conn: sa.Connection) -> None:
        """This transaction's commit need not wait for durable storage (the audit record of a
        read): where the database can say so for one transaction; nothing elsewhere."""

    def open_in_server_move(self, sops: SourceOps, plan: "TablePlan", sconn: sa.Connection,
                            aconn: sa.Connection, archive: sa.Engine, *, now: datetime, run_id: int | None,
                            checkpoint: Callable[[str], None], overlapped: bool) -> "Mover | None":
        """A mover that copies each batch inside the server (``in_server_moves``), or None (among
        others, for a plan whose object it cannot move: children, referrers). ``overlapped``: this
        run's batches may overlap on two source connections."""
        return None

    def open_copy_pipe(self, sops: SourceOps, aops: ArchiveOps, plan: "TablePlan", slots: "list[Slot]",
                       aconn: sa.Connection, *, now: datetime, run_id: int | None,
                       checkpoint: Callable[[str], None]) -> "Mover | None":
        """A mover that pipes each batch COPY to COPY between two servers of this kind (``copy``), or None."""
        return None


class Mover:
    """Moves a run's batches by a backend's own protocol (in-server moves, COPY pipes)."""

    def run(self, stop_requested: Callable[[], bool], generic_batch: Callable[[tuple | None], tuple | None],
            committed: Callable[..., None], size: Callable[[], int]) -> None:
        """Move batches until none is left or ``stop_requested()``; ``generic_batch(after)`` moves
        one batch the portable way (for a batch this mover rolled back); ``committed(read, deleted)``
        is called for each committed batch, in order (with ``children={table: rows}`` when child rows
        moved with it); ``size()`` is the next batch's row count."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections and threads."""
