"""Put archived rows back into their source table (pure SQLAlchemy Core, no Flask).

Order of operations per batch, so that a crash can never lose a row:

1. read a batch of ``archived_rows`` (keyset on id, short read);
2. decode each payload with the reflected source column types;
3. look up which primary keys already exist in the source: those are
   conflicts and stay in the archive (a source row is never overwritten),
   unless the source row is identical to the archived copy (a restore that
   crashed after step 4), in which case only the archive copy is dropped;
4. insert the rest into the source and **commit**; if the insert fails on a
   constraint (a row inserted concurrently), retry that batch row by row;
5. delete exactly the restored archive ids and commit.

A crash between 4 and 5 leaves the row in both databases, never in neither.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator, Mapping, Sequence

import sqlalchemy as sa

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

    ``*_from`` bounds are inclusive, ``*_to`` bounds exclusive.
    """

    archived_from: datetime | None = None
    archived_to: datetime | None = None
    row_date_from: datetime | None = None
    row_date_to: datetime | None = None
    source_pk: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "ArchiveFilters":
        data = data or {}
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)

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
        return out

    def fingerprint(self) -> str:
        """A short stable hash of the filter values (binds a cursor to its filters)."""
        canon = {name: (v.isoformat() if isinstance(v, datetime) else v)
                 for name in sorted(self.__dataclass_fields__)
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
    restored: int = 0            # rows inserted into the source (and dropped from the archive)
    already_present: int = 0     # identical row already in the source; archive copy dropped
    conflict_count: int = 0      # primary key exists in the source with other values; left in archive
    conflicts: list[str] = field(default_factory=list)       # their source_pk values (capped)
    failed_count: int = 0        # could not be inserted (bad payload, other constraint); left in archive
    failed: list[str] = field(default_factory=list)          # their source_pk values (capped)
    not_found: list[int] = field(default_factory=list)       # requested ids not archived for this table
    rows_read: int = 0
    archive_deleted: int = 0
    batches: int = 0


@dataclass
class _Candidate:
    archive_id: int
    source_pk: str
    payload: Mapping[str, Any]
    values: dict[str, Any]
    key: str


def reflect_source_table(source: sa.Engine, table_name: str) -> sa.Table:
    """The reflected source table, or SourceTableMissing / RestoreError."""
    if not sa.inspect(source).has_table(table_name):
        raise SourceTableMissing(f"Source table {table_name!r} does not exist; create it before restoring")
    table = sa.Table(table_name, sa.MetaData(), autoload_with=source)
    if not list(table.primary_key.columns):
        raise RestoreError(f"Source table {table_name!r} has no primary key; rows cannot be restored safely")
    return table


def restore_rows(source: sa.Engine, archive: sa.Engine, table_name: str, selection: RestoreSelection,
                 *, batch_size: int = DEFAULT_BATCH_SIZE, report_cap: int = DEFAULT_REPORT_CAP,
                 lease: TableLease | None = None) -> RestoreResult:
    """Move the selected archived rows of ``table_name`` back into the source table.

    ``lease`` (the table's archive lease, already held) is renewed between
    batches; if it is lost (LeaseLost) the restore stops, every batch so far
    being complete.
    """
    table = reflect_source_table(source, table_name)
    result = RestoreResult()
    for batch in _archived_batches(archive, table_name, selection, batch_size, result):
        if lease is not None:
            lease.renew_if_due()
        result.batches += 1
        result.rows_read += len(batch)
        _restore_batch(source, archive, table, table_name, batch, result, report_cap)
    return result


def _archived_batches(archive: sa.Engine, table_name: str, selection: RestoreSelection, batch_size: int,
                      result: RestoreResult) -> Iterator[Sequence[sa.Row]]:
    c = archived_rows.c
    base = (sa.select(c.id, c.source_pk, c.payload, c.archived_at)
            .where(c.table_name == table_name, *selection.filters.clauses()))
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


def _note(names: list[str], value: str, cap: int) -> None:
    if len(names) < cap:
        names.append(value)


def _restore_batch(source: sa.Engine, archive: sa.Engine, table: sa.Table, table_name: str,
                   batch: Sequence[sa.Row], result: RestoreResult, cap: int) -> None:
    pk_cols = list(table.primary_key.columns)
    candidates: list[_Candidate] = []
    for row in batch:
        payload = row.payload
        try:
            if not isinstance(payload, Mapping):
                raise ValueError("payload is not an object")
            values = decode_row(payload, table.columns)
            if any(values.get(col.name) is None for col in pk_cols):
                raise ValueError("primary key value missing")
            key = canonical_pk([values[col.name] for col in pk_cols])
        except (ValueError, TypeError, ArithmeticError):
            result.failed_count += 1
            _note(result.failed, row.source_pk, cap)
            continue
        candidates.append(_Candidate(row.id, row.source_pk, payload, values, key))

    existing = _existing_rows(source, table, candidates)
    to_insert: list[_Candidate] = []
    done_ids: list[int] = []
    for cand in candidates:
        current = existing.get(cand.key)
        if current is None:
            to_insert.append(cand)
        elif _same_row(current, cand.payload):
            result.already_present += 1
            done_ids.append(cand.archive_id)
        else:
            result.conflict_count += 1
            _note(result.conflicts, cand.source_pk, cap)

    done_ids.extend(_insert(source, table, to_insert, result, cap))
    if done_ids:
        newest_seen = max(r.archived_at for r in batch)
        with archive.begin() as conn:
            # The archived_at guard keeps a row that the archiver re-archived meanwhile.
            res = conn.execute(sa.delete(archived_rows).where(
                archived_rows.c.table_name == table_name,
                archived_rows.c.id.in_(done_ids),
                archived_rows.c.archived_at <= newest_seen))
        result.archive_deleted += res.rowcount or 0


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


def _insert(source: sa.Engine, table: sa.Table, cands: Sequence[_Candidate], result: RestoreResult,
            cap: int) -> list[int]:
    """Insert candidates into the source, committed; returns the archive ids now in the source."""
    if not cands:
        return []
    try:
        with source.begin() as conn:
            conn.execute(table.insert(), [c.values for c in cands])
        result.restored += len(cands)
        return [c.archive_id for c in cands]
    except _ROW_ERRORS:
        pass  # a concurrent insert or a bad row: find out which, one row at a time
    inserted: list[int] = []
    for cand in cands:
        try:
            with source.begin() as conn:
                conn.execute(table.insert(), cand.values)
        except _ROW_ERRORS:
            current = _existing_rows(source, table, [cand]).get(cand.key)
            if current is not None and _same_row(current, cand.payload):
                result.already_present += 1
                inserted.append(cand.archive_id)
            elif current is not None:
                result.conflict_count += 1
                _note(result.conflicts, cand.source_pk, cap)
            else:
                result.failed_count += 1
                _note(result.failed, cand.source_pk, cap)
            continue
        result.restored += 1
        inserted.append(cand.archive_id)
    return inserted
