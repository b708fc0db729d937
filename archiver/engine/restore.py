"""Put archived rows back into their source tables (pure SQLAlchemy Core, no Flask).

A selected archived row comes back as an *object*: with the archived rows that
moved with it (its descendants: ``root_id`` is its id), parents first. Order of
operations per batch, so that a crash can never lose a row:

1. read a batch of the selected ``archived_rows`` (keyset on id, short read),
   and their descendants;
2. decode each payload with its source table's reflected column types;
3. look up which primary keys already exist in the source: a row whose key
   exists with other values is a conflict, and its whole object stays in the
   archive (a source row is never overwritten); a row identical to its archived
   copy (a restore that crashed after step 4) counts as already there;
4. insert the objects' other rows into the source — tables parents first (by
   the source's foreign keys), a self-referencing table by depth — and
   **commit**, all objects of the batch in one transaction; if that fails on a
   constraint (a row inserted concurrently), each object again in its own;
5. delete exactly the restored objects' archive rows and commit.

A crash between 4 and 5 leaves the rows in both databases, never in neither.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import sqlalchemy as sa

from .backends import source_ops_for
from .graph import Reference
from .lease import TableLease
from .rowcodec import canonical_pk, decode_row, encode_row
from .schema import archived_rows

DEFAULT_BATCH_SIZE = 500
DEFAULT_REPORT_CAP = 100


class RestoreError(Exception):
    """The restore cannot start (the message is safe to show to a caller)."""


class SourceTableMissing(RestoreError):
    """The source table to restore into does not exist."""


@dataclass(frozen=True)
class ArchiveFilters:
    """Filters over one table's archived rows; datetimes are aware UTC.

    ``*_from`` bounds are inclusive, ``*_to`` bounds exclusive. ``where`` is a condition on the
    archived payloads in criteria syntax (``status = 'closed' AND amount >= 100``); it needs the
    table's column types, so the caller compiles it (:func:`archiver.engine.payload_filter.
    compile_payload_filter`) and passes the result with :meth:`with_payload_clause` before
    :meth:`clauses` is asked (which refuses an uncompiled ``where``, so no selection is ever wider
    than asked).
    """

    archived_from: datetime | None = None
    archived_to: datetime | None = None
    row_date_from: datetime | None = None
    row_date_to: datetime | None = None
    source_pk: str | None = None
    where: str | None = None
    payload_clause: Any = field(default=None, compare=False, repr=False)

    #: The filter values a caller sets (payload_clause is derived from ``where``).
    FIELDS: ClassVar[tuple[str, ...]] = ("archived_from", "archived_to", "row_date_from", "row_date_to",
                                         "source_pk", "where")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "ArchiveFilters":
        data = data or {}
        where = data.get("where")
        values = {name: data.get(name) for name in cls.FIELDS}
        values["where"] = where if isinstance(where, str) and where.strip() else None
        return cls(**values)

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.FIELDS)

    def with_payload_clause(self, clause: Any) -> "ArchiveFilters":
        return replace(self, payload_clause=clause)

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        """WHERE conditions on ``archived_rows`` (bound parameters only)."""
        c = archived_rows.c
        out: list[sa.ColumnElement[bool]] = []
        if self.archived_from is not None:
            out.append(c.archived_at >= self.archived_from)
        if self.archived_to is not None:
            out.append(c.archived_at < self.archived_to)
        if self.row_date_from is not None:
            out.append(c.row_date >= self.row_date_from)
        if self.row_date_to is not None:
            out.append(c.row_date < self.row_date_to)
        if self.source_pk is not None:
            out.append(c.source_pk == self.source_pk)
        if self.where is not None:
            if self.payload_clause is None:
                raise ValueError("ArchiveFilters.where must be compiled before use (with_payload_clause)")
            out.append(self.payload_clause)
        return out

    def fingerprint(self) -> str:
        """A short stable hash of the filter values (binds a cursor to its filters)."""
        canon = {name: (v.isoformat() if isinstance(v, datetime) else v)
                 for name in sorted(self.FIELDS)
                 if (v := getattr(self, name)) is not None}
        raw = json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class RestoreSelection:
    """Which archived rows to restore: explicit ids and/or filters (both = intersection).

    An empty selection means every archived row of the table; callers decide
    whether that is allowed.
    """

    ids: tuple[int, ...] | None = None
    filters: ArchiveFilters = field(default_factory=ArchiveFilters)


@dataclass
class RestoreResult:
    """Counts are of the selected rows (each with its object); ``children`` of the rows that came
    back with them, and ``conflict_tables`` of the rows that kept their objects archived, by table."""

    restored: int = 0            # rows inserted into the source (and dropped from the archive)
    already_present: int = 0     # identical row already in the source; archive copy dropped
    conflict_count: int = 0      # a key of its object exists in the source with other values; left archived
    conflicts: list[str] = field(default_factory=list)       # their source_pk values (capped)
    failed_count: int = 0        # could not be inserted (bad payload, other constraint); left in archive
    failed: list[str] = field(default_factory=list)          # their source_pk values (capped)
    not_found: list[int] = field(default_factory=list)       # requested ids not archived for this table
    children: dict[str, int] = field(default_factory=dict)   # descendants restored, by table
    conflict_tables: dict[str, int] = field(default_factory=dict)  # conflicting rows, by table
    rows_read: int = 0
    archive_deleted: int = 0
    batches: int = 0


@dataclass
class _Candidate:
    """One archived row of an object, decoded for its source table."""

    archive_id: int
    table_name: str
    source_pk: str
    payload: Mapping[str, Any]
    values: dict[str, Any]
    key: str
    depth: int


@dataclass
class _Object:
    """A selected archived row and the archived rows that moved with it (``rows[0]`` is the root)."""

    rows: list[_Candidate]
    newest: datetime  # the latest archived_at of its rows
    problem: str | None = None   # "conflict" or "failed": the object stays archived
    present: set[int] = field(default_factory=set)  # archive ids whose identical row is in the source already

    @property
    def root(self) -> _Candidate:
        return self.rows[0]


def reflect_source_table(source: sa.Engine, table_name: str) -> sa.Table:
    """The reflected source table, or SourceTableMissing / RestoreError."""
    if not sa.inspect(source).has_table(table_name):
        raise SourceTableMissing(f"Source table {table_name!r} does not exist; create it before restoring")
    table = source_ops_for(source).reflect_table(source, table_name)
    if not list(table.primary_key.columns):
        raise RestoreError(f"Source table {table_name!r} has no primary key; rows cannot be restored safely")
    return table


def restore_rows(source: sa.Engine, archive: sa.Engine, table_name: str, selection: RestoreSelection,
                 *, batch_size: int = DEFAULT_BATCH_SIZE, report_cap: int = DEFAULT_REPORT_CAP,
                 lease: TableLease | None = None) -> RestoreResult:
    """Move the selected archived rows of ``table_name``, each with its object, back into the source.

    ``lease`` (the table's archive lease, already held) is renewed between
    batches; if it is lost (LeaseLost) the restore stops, every batch so far
    being complete.
    """
    tables = _Tables(source)
    tables.get(table_name)  # raises when the table is gone or has no key
    result = RestoreResult()
    for batch in _archived_batches(archive, table_name, selection, batch_size, result):
        if lease is not None:
            lease.renew_if_due()
        result.batches += 1
        result.rows_read += len(batch)
        objects = _objects(archive, tables, batch, result, report_cap)
        _restore_objects(source, archive, tables, table_name, objects, result, report_cap)
    return result


class _Tables:
    """Source tables reflected once per restore, and the order parents come before children."""

    def __init__(self, source: sa.Engine) -> None:
        self.source = source
        self._tables: dict[str, sa.Table | RestoreError] = {}
        self._refs: list[Reference] | None = None

    def get(self, name: str) -> sa.Table:
        if name not in self._tables:
            try:
                self._tables[name] = reflect_source_table(self.source, name)
            except RestoreError as exc:
                self._tables[name] = exc
        table = self._tables[name]
        if isinstance(table, RestoreError):
            raise table
        return table

    def parents_first(self, names: set[str]) -> list[str]:
        """``names`` ordered so that a table referenced by another (foreign key) comes first."""
        if len(names) == 1:
            return list(names)
        if self._refs is None:
            with self.source.connect() as conn:
                self._refs = source_ops_for(self.source).foreign_keys(conn)
        needs = {n: {r.parent for r in self._refs if r.child == n and r.parent in names and r.parent != n}
                 for n in names}
        ordered: list[str] = []
        while len(ordered) < len(names):
            ready = sorted(n for n in names if n not in ordered and needs[n] <= set(ordered))
            ordered += ready or sorted(n for n in names if n not in ordered)  # a cycle: any order
        return ordered


def _archived_batches(archive: sa.Engine, table_name: str, selection: RestoreSelection, batch_size: int,
                      result: RestoreResult) -> Iterator[Sequence[sa.Row]]:
    c = archived_rows.c
    base = (sa.select(*_COLUMNS).where(c.table_name == table_name, *selection.filters.clauses()))
    if selection.ids is not None:
        ids = sorted(set(selection.ids))
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            with archive.connect() as conn:
                rows = conn.execute(base.where(c.id.in_(chunk)).order_by(c.id)).all()
            found = {r.id for r in rows}
            result.not_found.extend(i for i in chunk if i not in found)
            if rows:
                yield rows
        return
    last_id = 0
    while True:
        with archive.connect() as conn:
            rows = conn.execute(base.where(c.id > last_id).order_by(c.id).limit(batch_size)).all()
        if not rows:
            return
        last_id = rows[-1].id
        yield rows


_COLUMNS = (archived_rows.c.id, archived_rows.c.table_name, archived_rows.c.source_pk, archived_rows.c.payload,
            archived_rows.c.archived_at, archived_rows.c.depth)


def _note(names: list[str], value: str, cap: int) -> None:
    if len(names) < cap:
        names.append(value)


def _objects(archive: sa.Engine, tables: _Tables, batch: Sequence[sa.Row], result: RestoreResult,
             cap: int) -> list[_Object]:
    """Each selected row with its archived descendants, decoded (an undecodable one fails its object)."""
    below: dict[int, list[sa.Row]] = {}
    ids = [r.id for r in batch]
    with archive.connect() as conn:
        for i in range(0, len(ids), 5000):
            for row in conn.execute(sa.select(*_COLUMNS, archived_rows.c.root_id).where(
                    archived_rows.c.root_id.in_(ids[i:i + 5000]))):
                below.setdefault(row.root_id, []).append(row)
    objects = []
    for row in batch:
        members = [row, *below.get(row.id, [])]
        obj = _Object([], max(r.archived_at for r in members))
        for member in members:
            cand = _decode(tables, member)
            if cand is None:
                obj.problem = "failed"
                break
            obj.rows.append(cand)
        if obj.problem:
            result.failed_count += 1
            _note(result.failed, row.source_pk, cap)
            continue
        objects.append(obj)
    return objects


def _decode(tables: _Tables, row: sa.Row) -> _Candidate | None:
    try:
        table = tables.get(row.table_name)
        payload = row.payload
        if not isinstance(payload, Mapping):
            raise ValueError("payload is not an object")
        values = decode_row(payload, table.columns)
        pk_cols = list(table.primary_key.columns)
        if any(values.get(col.name) is None for col in pk_cols):
            raise ValueError("primary key value missing")
        key = canonical_pk([values[col.name] for col in pk_cols])
    except (RestoreError, ValueError, TypeError, ArithmeticError):
        return None
    return _Candidate(row.id, row.table_name, row.source_pk, payload, values, key, row.depth or 0)


def _restore_objects(source: sa.Engine, archive: sa.Engine, tables: _Tables, table_name: str,
                     objects: list[_Object], result: RestoreResult, cap: int) -> None:
    by_table: dict[str, list[_Candidate]] = {}
    for obj in objects:
        for cand in obj.rows:
            by_table.setdefault(cand.table_name, []).append(cand)
    existing = {(name, key): row for name, cands in by_table.items()
                for key, row in _existing_rows(source, tables.get(name), cands).items()}
    for obj in objects:
        for cand in obj.rows:
            current = existing.get((cand.table_name, cand.key))
            if current is None:
                continue
            if _same_row(current, cand.payload):
                obj.present.add(cand.archive_id)
            else:
                obj.problem = "conflict"
                result.conflict_tables[cand.table_name] = result.conflict_tables.get(cand.table_name, 0) + 1
        if obj.problem:
            result.conflict_count += 1
            _note(result.conflicts, obj.root.source_pk, cap)
    ready = [obj for obj in objects if not obj.problem]
    done = _insert(source, tables, ready, result, cap)
    for obj in done:
        if obj.root.archive_id in obj.present:
            result.already_present += 1
        else:
            result.restored += 1
        for cand in obj.rows[1:]:
            result.children[cand.table_name] = result.children.get(cand.table_name, 0) + 1
    _drop_archived(archive, table_name, done, result)


def _drop_archived(archive: sa.Engine, table_name: str, done: list[_Object], result: RestoreResult) -> None:
    """Delete the restored objects' archive rows, two statements per batch (a row archived again
    meanwhile, with a newer archived_at, is kept)."""
    if not done:
        return
    c = archived_rows.c
    newest = max(obj.newest for obj in done)
    below = [cand.archive_id for obj in done for cand in obj.rows[1:]]
    with archive.begin() as conn:
        for i in range(0, len(below), 5000):
            result.archive_deleted += conn.execute(sa.delete(archived_rows).where(
                c.id.in_(below[i:i + 5000]), c.archived_at <= newest)).rowcount or 0
        result.archive_deleted += conn.execute(sa.delete(archived_rows).where(
            c.table_name == table_name, c.id.in_([obj.root.archive_id for obj in done]),
            c.archived_at <= newest)).rowcount or 0


def _pk_filter(table: sa.Table, candidates: Sequence[_Candidate]) -> sa.ColumnElement[bool]:
    pk_cols = list(table.primary_key.columns)
    if len(pk_cols) == 1:
        col = pk_cols[0]
        return col.in_([c.values[col.name] for c in candidates])
    return sa.tuple_(*pk_cols).in_([tuple(c.values[col.name] for col in pk_cols) for c in candidates])


def _existing_rows(source: sa.Engine, table: sa.Table,
                   candidates: Sequence[_Candidate]) -> dict[str, Mapping[str, Any]]:
    """Source rows whose primary key matches a candidate, keyed by canonical pk."""
    if not candidates:
        return {}
    pk_names = [col.name for col in table.primary_key.columns]
    with source.connect() as conn:
        rows = conn.execute(sa.select(table).where(_pk_filter(table, candidates))).mappings().all()
    return {canonical_pk([r[n] for n in pk_names]): r for r in rows}


def _same_row(current: Mapping[str, Any], payload: Mapping[str, Any]) -> bool:
    """True when the source row holds exactly the archived values."""
    shared = [k for k in payload if k in current]
    return encode_row({k: current[k] for k in shared}) == {k: payload[k] for k in shared}


_ROW_ERRORS = (sa.exc.IntegrityError, sa.exc.DataError)


def _insert_all(conn: sa.Connection, tables: _Tables, objects: list[_Object]) -> None:
    """Insert the objects' rows not in the source yet: tables parents first, then by depth."""
    rows = [c for obj in objects for c in obj.rows if c.archive_id not in obj.present]
    order = tables.parents_first({c.table_name for c in rows})
    for name in order:
        mine = [c for c in rows if c.table_name == name]
        for depth in sorted({c.depth for c in mine}):
            conn.execute(tables.get(name).insert(), [c.values for c in mine if c.depth == depth])


def _insert(source: sa.Engine, tables: _Tables, objects: list[_Object], result: RestoreResult,
            cap: int) -> list[_Object]:
    """Insert the objects into the source, committed (all at once, else one by one); the ones now there."""
    if not objects:
        return []
    try:
        with source.begin() as conn:
            _insert_all(conn, tables, objects)
        return objects
    except _ROW_ERRORS:
        pass  # a concurrent insert or a bad row: find out which object, one at a time
    inserted: list[_Object] = []
    for obj in objects:
        try:
            with source.begin() as conn:
                _insert_all(conn, tables, [obj])
        except _ROW_ERRORS:
            if all(_now_present(source, tables, cand) for cand in obj.rows):
                obj.present = {cand.archive_id for cand in obj.rows}
                inserted.append(obj)
            elif any(_conflicting(source, tables, cand) for cand in obj.rows):
                result.conflict_count += 1
                _note(result.conflicts, obj.root.source_pk, cap)
                for cand in obj.rows:
                    if _conflicting(source, tables, cand):
                        result.conflict_tables[cand.table_name] = result.conflict_tables.get(cand.table_name, 0) + 1
            else:
                result.failed_count += 1
                _note(result.failed, obj.root.source_pk, cap)
            continue
        inserted.append(obj)
    return inserted


def _now_present(source: sa.Engine, tables: _Tables, cand: _Candidate) -> bool:
    current = _existing_rows(source, tables.get(cand.table_name), [cand]).get(cand.key)
    return current is not None and _same_row(current, cand.payload)


def _conflicting(source: sa.Engine, tables: _Tables, cand: _Candidate) -> bool:
    current = _existing_rows(source, tables.get(cand.table_name), [cand]).get(cand.key)
    return current is not None and not _same_row(current, cand.payload)
