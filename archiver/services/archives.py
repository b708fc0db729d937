"""Reading, exporting and restoring archived rows (the /archives use cases).

Listing pages are one keyset query each (no OFFSET, no COUNT) and are
serialised with orjson; the stored JSON payload text is passed through as an
``orjson.Fragment`` instead of being parsed and re-encoded. Exports stream in
keyset chunks, each read in its own short query.

Every read is audited (``archive.list``, ``archive.read``, ``archive.export``): a page or a row
is returned only after its audit record is committed (one INSERT per request); an export is
recorded before its first byte and gets its row count when the stream ends. Restores are
audited with their selection and result (``archive.restore``).

CSV exports neutralise spreadsheet formulas by default (OWASP "CSV injection"): a cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (plain
numbers such as ``-12.5`` are left alone). ``raw=True`` writes every value exactly.
"""
from __future__ import annotations

import functools
import itertools
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

import orjson
import sqlalchemy as sa

from ..engine.backends import archive_ops_for
from ..engine.errors import LeaseLost
from ..engine.failures import describe_error
from ..engine.criteria import CriteriaError
from ..engine.lease import TableLock
from ..engine.payload_filter import compile_payload_filter, types_from_payload
from ..engine.restore import (ArchiveFilters, RestoreError, RestoreResult, RestoreSelection,
                              reflect_source_table, restore_rows)
from ..engine.schema import archived_rows
from ..errors import Conflict, DomainError, InvalidInput, NotFound
from ..extensions import db
from ..models import ArchivePolicy, RunKind, RunStatus
from . import audit, runs
from .audit import Actor
from .cursors import decode_cursor, decode_key_cursor, encode_cursor, encode_key_cursor
from .locks import TableHeld, table_lock
from .source_db import archive_engine, reflect_table, source_engine

log = logging.getLogger(__name__)

EXPORT_CHUNK_ROWS = 2000
RESTORE_MAX_IDS = 10_000
MAX_DB_ID = 2**63 - 1
_C = archived_rows.c


# --- helpers ---------------------------------------------------------------

_UTC = timezone.utc


def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC datetime (SQLite hands back naive values, which are UTC)."""
    if value is None:
        return None
    tz = value.tzinfo
    if tz is _UTC:  # PostgreSQL in a UTC session: already right (the common case, no conversion)
        return value
    if tz is None:
        return value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)


def _row_item(row: sa.Row) -> dict[str, Any]:
    """One row of ``_row_columns()`` as a JSON-ready dict (payload passed through as its text)."""
    id_, source_pk, row_date, archived_at, payload = row
    return {"id": id_, "source_pk": source_pk, "row_date": _utc(row_date),
            "archived_at": _utc(archived_at), "payload": orjson.Fragment(payload)}


def _row_columns() -> tuple[Any, ...]:
    # Payload as its stored JSON text: no parse + re-encode on the hot path.
    return (_C.id, _C.source_pk, _C.row_date, _C.archived_at, sa.cast(_C.payload, sa.Text).label("payload"))


@functools.lru_cache(maxsize=4)
def _page_query(ascending: bool, after_cursor: bool) -> sa.Select:
    """The unfiltered listing query for one order, with bound parameters ``table_name``, ``last_id``
    (only after a cursor) and ``page_limit``. Built once per shape, so SQLAlchemy computes its cache
    key once instead of on every request (Select objects are immutable: safe to share across threads)."""
    stmt = sa.select(*_row_columns()).where(_C.table_name == sa.bindparam("table_name", type_=sa.String))
    if after_cursor:
        last = sa.bindparam("last_id", type_=sa.BigInteger)
        stmt = stmt.where(_C.id > last if ascending else _C.id < last)
    stmt = stmt.order_by(_C.id.asc() if ascending else _C.id.desc())
    return stmt.limit(sa.bindparam("page_limit", type_=sa.Integer))


def _keyset(stmt: sa.Select, order: str, last_id: int | None) -> sa.Select:
    if order == "asc":
        if last_id is not None:
            stmt = stmt.where(_C.id > last_id)
        return stmt.order_by(_C.id.asc())
    if last_id is not None:
        stmt = stmt.where(_C.id < last_id)
    return stmt.order_by(_C.id.desc())


def filters_details(filters: ArchiveFilters) -> dict[str, Any]:
    """The filters that are set, as JSON-ready values (for the audit trail)."""
    return {name: (value.isoformat() if isinstance(value, datetime) else value)
            for name in filters.FIELDS if (value := getattr(filters, name)) is not None}


# --- payload filters -----------------------------------------------------------

def payload_columns(table_name: str) -> dict[str, sa.types.TypeEngine]:
    """The columns a payload filter may name, with their types: the source table's (reflected), or,
    when it is gone, those of the table's newest archived payload (JSON types). Empty if neither."""
    try:
        table = reflect_table(table_name)
    except sa.exc.SQLAlchemyError:
        table = None
    if table is not None:
        return {c.name: c.type for c in table.columns}
    newest = db.session.execute(
        sa.select(sa.cast(_C.payload, sa.Text)).where(_C.table_name == table_name)
        .order_by(_C.id.desc()).limit(1)).scalar()
    if newest is None:
        return {}
    payload = orjson.loads(newest)
    return types_from_payload(payload) if isinstance(payload, dict) else {}


def compiled(table_name: str, filters: ArchiveFilters) -> ArchiveFilters:
    """``filters`` with its payload condition (``where``) compiled for the table's columns;
    InvalidInput naming ``where`` if it is not allowed (the criteria parser's reason)."""
    if filters.where is None:
        return filters
    try:
        clause = compile_payload_filter(filters.where, table_name, payload_columns(table_name),
                                        archive_ops_for(archive_engine()).payload_reads)
    except CriteriaError as exc:
        raise InvalidInput(f"invalid where: {str(exc)[:300]}", {"where": [str(exc)[:300]]}) from None
    if clause is None:
        return ArchiveFilters.from_mapping({**{k: getattr(filters, k) for k in filters.FIELDS}, "where": None})
    return filters.with_payload_clause(clause)


def _uncomparable() -> InvalidInput:
    return InvalidInput("The where filter cannot be applied to the stored values of this column",
                        {"where": ["a value stored in the archive cannot be read as that column's type"]})


def table_is_known(table_name: str) -> bool:
    """A table is known when it has a policy or at least one archived row."""
    has_rows = db.session.execute(sa.select(_C.id).where(_C.table_name == table_name).limit(1)).first()
    if has_rows is not None:
        return True
    return db.session.execute(
        sa.select(ArchivePolicy.id).where(ArchivePolicy.table_name == table_name)).first() is not None


def ensure_known(table_name: str) -> None:
    """NotFound unless the table has a policy or archived rows."""
    if not table_is_known(table_name):
        raise NotFound("No archive for this table")


# --- tables overview ---------------------------------------------------------

def table_summaries(granted: set[str] | None) -> list[dict[str, Any]]:
    """Per-table archive statistics and policy; ``granted=None`` means every table (admin).

    One aggregate query over archived_rows (GROUP BY table_name) plus one policy query.
    """
    stats = sa.select(_C.table_name, sa.func.count().label("row_count"),
                      sa.func.min(_C.archived_at).label("oldest_archived_at"),
                      sa.func.max(_C.archived_at).label("newest_archived_at"),
                      sa.func.min(_C.row_date).label("oldest_row_date"),
                      sa.func.max(_C.row_date).label("newest_row_date")).group_by(_C.table_name)
    policies = sa.select(ArchivePolicy)
    if granted is not None:
        if not granted:
            return []
        stats = stats.where(_C.table_name.in_(sorted(granted)))
        policies = policies.where(ArchivePolicy.table_name.in_(sorted(granted)))
    by_table = {r.table_name: r for r in db.session.execute(stats)}
    policy_by_table = {p.table_name: p for p in db.session.execute(policies).scalars()}
    names = set(granted) if granted is not None else set(by_table) | set(policy_by_table)
    out = []
    for name in sorted(names):
        r = by_table.get(name)
        p = policy_by_table.get(name)
        out.append({
            "table_name": name,
            "row_count": int(r.row_count) if r else 0,
            "oldest_archived_at": _utc(r.oldest_archived_at) if r else None,
            "newest_archived_at": _utc(r.newest_archived_at) if r else None,
            "oldest_row_date": _utc(r.oldest_row_date) if r else None,
            "newest_row_date": _utc(r.newest_row_date) if r else None,
            "policy": None if p is None else {
                "date_column": p.date_column, "archive_after_days": p.archive_after_days,
                "delete_after_days": p.delete_after_days, "enabled": p.enabled},
        })
    return out


# --- listing -----------------------------------------------------------------

SORTS = ("id", "row_date")


def list_rows_json(table_name: str, filters: ArchiveFilters, *, actor: Actor, order: str = "desc",
                   limit: int = 50, cursor: str | None = None, must_exist: bool = False,
                   sort: str = "id") -> bytes:
    """One page of archived rows as JSON bytes: ``{"items": [...], "next_cursor": str|null}``.

    ``sort``: ``id`` (archive order, the default) or ``row_date`` (the policy's date column; rows
    without a date come last in either order). ``must_exist``: an empty first page of an unknown
    table is NotFound (admins). The read is audited (table, filters, page, rows returned) and
    committed before the page is returned.
    """
    filters = compiled(table_name, filters)
    fp = filters.fingerprint()
    clauses = filters.clauses()
    position: Any = None
    try:
        if sort == "row_date":
            key_order = f"row_date:{order}"
            position = decode_key_cursor(cursor, table_name, key_order, fp) if cursor is not None else None
            rows = _date_page(table_name, clauses, order, limit, position)
        else:
            position = decode_cursor(cursor, table_name, order, fp) if cursor is not None else None
            stmt = _page_query(order == "asc", position is not None)
            if clauses:
                stmt = stmt.where(*clauses)
            params = {"table_name": table_name, "page_limit": limit + 1}
            if position is not None:
                params["last_id"] = position
            # The request's session connection (already checked out for the token's user lookup),
            # a Core query on it without the ORM's per-statement work.
            rows = db.session.connection().execute(stmt, params).all()
    except sa.exc.DataError:
        db.session.rollback()
        raise _uncomparable() from None
    if not rows and must_exist and cursor is None:
        ensure_known(table_name)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        if sort == "row_date":
            key = ["n", None, last.id] if last.row_date is None else ["d", _utc(last.row_date).isoformat(), last.id]
            next_cursor = encode_key_cursor(table_name, f"row_date:{order}", fp, key)
        else:
            next_cursor = encode_cursor(table_name, order, fp, last.id)
    body = orjson.dumps({"items": [_row_item(r) for r in rows], "next_cursor": next_cursor})
    details: dict[str, Any] = {"rows": len(rows), "order": order, "limit": limit}
    if sort != "id":
        details["sort"] = sort
    if clauses:
        details["filters"] = filters_details(filters)
    if position is not None:
        details["after" if sort == "row_date" else "after_id"] = position
    audit.record_now(audit.ARCHIVE_LIST, actor, target=table_name, details=details, read=True)
    return body


def position_cursor(table_name: str, filters: ArchiveFilters, order: str, sort: str, item: Mapping[str, Any]) -> str:
    """A cursor for the rows after ``item`` (a listed row: ``id`` and ``row_date`` as listed) in
    ``order``: lets a page link back (the reversed order from its first row) as well as on."""
    fp = filters.fingerprint()
    if sort == "row_date":
        row_date = item.get("row_date")
        key = ["n", None, item["id"]] if row_date is None else ["d", str(row_date), item["id"]]
        return encode_key_cursor(table_name, f"row_date:{order}", fp, key)
    return encode_cursor(table_name, order, fp, int(item["id"]))


def _date_page(table_name: str, clauses: list, order: str, limit: int, position: list | None) -> list[sa.Row]:
    """A page ordered by (row_date, id), rows without a date after the dated ones; keyset both ways."""
    asc = order == "asc"
    base = sa.select(*_row_columns()).where(_C.table_name == table_name, *clauses)
    phase, last_date, last_id = "d", None, None
    if position is not None:
        try:
            phase, date_text, last_id = position
            if phase not in ("d", "n") or not isinstance(last_id, int) or isinstance(last_id, bool):
                raise ValueError
            last_date = datetime.fromisoformat(date_text) if phase == "d" else None
        except (TypeError, ValueError):
            raise InvalidInput("Invalid cursor", {"cursor": ["Not a cursor issued for this listing"]},
                               code="invalid_cursor") from None
    rows: list[sa.Row] = []
    if phase == "d":
        dated = base.where(_C.row_date.is_not(None))
        if last_date is not None:
            if asc:
                dated = dated.where(sa.or_(_C.row_date > last_date,
                                           sa.and_(_C.row_date == last_date, _C.id > last_id)))
            else:
                dated = dated.where(sa.or_(_C.row_date < last_date,
                                           sa.and_(_C.row_date == last_date, _C.id < last_id)))
        dated = dated.order_by(*((_C.row_date.asc(), _C.id.asc()) if asc else (_C.row_date.desc(), _C.id.desc())))
        rows = list(db.session.execute(dated.limit(limit + 1)).all())
        last_id = None
    if len(rows) <= limit:
        undated = base.where(_C.row_date.is_(None))
        if last_id is not None:
            undated = undated.where(_C.id > last_id if asc else _C.id < last_id)
        undated = undated.order_by(_C.id.asc() if asc else _C.id.desc())
        rows += db.session.execute(undated.limit(limit + 1 - len(rows))).all()
    return rows


#: Rows of an object listed with one of its rows (the rest are only counted).
OBJECT_ROWS_SHOWN = 1000


def get_row_json(table_name: str, row_id: int, readable: set[str] | None = None, *,
                 actor: Actor = audit.SYSTEM) -> bytes:
    """One archived row of ``table_name`` as JSON bytes, with the rows of its object (the archived
    rows that moved with it, or with the row it moved with); NotFound if absent or of another table.

    ``readable``: the tables the caller may read (None: all); rows of other tables are only counted.
    Audited (table, row id, object rows listed) before it is returned.
    """
    if row_id < 1 or row_id > MAX_DB_ID:
        raise NotFound("Archived row not found")
    stmt = sa.select(*_row_columns(), _C.root_id, _C.depth).where(_C.table_name == table_name, _C.id == row_id)
    row = db.session.execute(stmt).first()
    if row is None:
        raise NotFound("Archived row not found")
    item = _row_item(row[:5])
    item["depth"] = row.depth
    item["object"] = _object_of(row.id, row.root_id, readable)
    body = orjson.dumps(item)
    audit.record_now(audit.ARCHIVE_READ, actor, target=table_name,
                     details={"row_id": row_id, "rows": 1, "object_rows": len(item["object"]["rows"])}, read=True)
    return body


def _object_of(row_id: int, root_id: int | None, readable: set[str] | None) -> dict[str, Any]:
    """The other archived rows of a row's object: its root (when it moved with one) and the rows
    that moved with that root, as links (table, id, source key, depth)."""
    root = root_id if root_id is not None else row_id
    members = db.session.execute(
        sa.select(_C.id, _C.table_name, _C.source_pk, _C.depth)
        .where(sa.or_(_C.id == root, _C.root_id == root), _C.id != row_id)
        .order_by(_C.depth, _C.table_name, _C.id).limit(OBJECT_ROWS_SHOWN + 1)).all()
    shown, hidden = [], 0
    for m in members[:OBJECT_ROWS_SHOWN]:
        if readable is None or m.table_name in readable:
            shown.append({"table_name": m.table_name, "id": m.id, "source_pk": m.source_pk, "depth": m.depth})
        else:
            hidden += 1
    return {"root_id": root_id, "rows": shown, "hidden_rows": hidden,
            "truncated": len(members) > OBJECT_ROWS_SHOWN}


# --- export ------------------------------------------------------------------

@dataclass
class ExportStream:
    chunks: Iterator[bytes]
    filename: str
    mimetype: str


def _safe_filename_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100] or "table"


def _export_batches(engine: sa.Engine, table_name: str, filters: ArchiveFilters,
                    order: str) -> Iterator[list[sa.Row]]:
    """Keyset chunks, each read in its own short query (no long transaction)."""
    base = sa.select(*_row_columns()).where(_C.table_name == table_name, *filters.clauses())
    last_id: int | None = None
    while True:
        with engine.connect() as conn:
            rows = conn.execute(_keyset(base, order, last_id).limit(EXPORT_CHUNK_ROWS)).all()
        if not rows:
            return
        yield rows
        if len(rows) < EXPORT_CHUNK_ROWS:
            return
        last_id = rows[-1].id


def _jsonl_chunks(batches: Iterator[list[sa.Row]]) -> Iterator[bytes]:
    for rows in batches:
        yield b"".join(orjson.dumps(_row_item(r)) + b"\n" for r in rows)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _utc(value).isoformat()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def neutralise(value: str) -> str:
    """``value`` made inert for spreadsheets (OWASP CSV injection): a leading ``'`` when it starts
    with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return; plain numbers (``-12.5``) stay as
    they are, since no spreadsheet reads them as formulas."""
    if value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _csv_field(value: str | None, raw: bool = True) -> str:
    # NULL is an unquoted empty field; every value is quoted (so "" is an empty string),
    # the convention PostgreSQL's COPY ... CSV uses. Unless ``raw``, formulas are neutralised.
    if value is None:
        return ""
    if not raw:
        value = neutralise(value)
    return '"' + value.replace('"', '""') + '"'


def _csv_cell(value: Any, json_column: bool) -> str | None:
    if value is None:
        return None
    if json_column or isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


CSV_META_COLUMNS = ("id", "source_pk", "row_date", "archived_at")
CSV_PAYLOAD_PREFIX = "payload."


def _csv_chunks(batches: Iterator[list[sa.Row]], table: sa.Table | None, raw: bool = False) -> Iterator[bytes]:
    columns: list[str] = [c.name for c in table.columns] if table is not None else []
    json_cols = {c.name for c in table.columns if isinstance(c.type, sa.JSON)} if table is not None else set()
    header_sent = False
    for rows in batches:
        lines = []
        for r in rows:
            payload = orjson.loads(r.payload)
            if not header_sent:
                columns += [k for k in payload if k not in columns]
                header = list(CSV_META_COLUMNS) + [CSV_PAYLOAD_PREFIX + c for c in columns]
                lines.append(",".join(_csv_field(h, raw) for h in header))
                header_sent = True
            cells = [str(r.id), r.source_pk, _iso(r.row_date), _iso(r.archived_at)]
            cells += [_csv_cell(payload.get(c), c in json_cols) for c in columns]
            lines.append(",".join(_csv_field(v, raw) for v in cells))
        yield ("\r\n".join(lines) + "\r\n").encode("utf-8")
    if not header_sent:
        header = list(CSV_META_COLUMNS) + [CSV_PAYLOAD_PREFIX + c for c in columns]
        yield (",".join(_csv_field(h, raw) for h in header) + "\r\n").encode("utf-8")


def _reflect_or_none(table_name: str) -> sa.Table | None:
    try:
        return reflect_table(table_name)
    except sa.exc.SQLAlchemyError:
        log.warning("export of %s: source table could not be reflected; CSV columns from the first row",
                    table_name)
        return None


def _counted(batches: Iterator[list[sa.Row]], engine: sa.Engine, event_id: int,
             details: dict[str, Any]) -> Iterator[list[sa.Row]]:
    """``batches`` passed through, counting rows; the audit record gets the count when the stream
    ends (``complete``: false when the client went away or a read failed)."""
    rows = 0
    complete = False
    try:
        for batch in batches:
            rows += len(batch)
            yield batch
        complete = True
    finally:
        try:
            audit.complete(engine, event_id, {**details, "rows": rows, "complete": complete},
                           outcome="success" if complete else "failure")
        except Exception:  # noqa: BLE001 - the export itself is over; keep its record as started
            log.exception("could not record the row count of export audit event %s", event_id)


def export_rows(table_name: str, filters: ArchiveFilters, *, actor: Actor, fmt: str = "jsonl",
                order: str = "asc", raw: bool = False, must_exist: bool = False) -> ExportStream:
    """A lazily read export of the (filtered) archive of ``table_name`` as JSON Lines or CSV.

    Audited before the first byte (table, filters, format); the row count is added when the
    stream ends. CSV cells are neutralised against formula injection unless ``raw``.
    """
    if must_exist:
        ensure_known(table_name)
    filters = compiled(table_name, filters)
    details: dict[str, Any] = {"format": fmt, "order": order, "raw": raw, "rows": None, "complete": False}
    if not filters.is_empty():
        details["filters"] = filters_details(filters)
    engine = archive_engine()
    raw_batches = _export_batches(engine, table_name, filters, order)
    try:  # the first chunk now: a where filter the stored values cannot take is a 400, not a cut stream
        first = next(raw_batches, None)
    except sa.exc.DataError:
        raise _uncomparable() from None
    event_id = audit.record_started(audit.ARCHIVE_EXPORT, actor, target=table_name, details=details)
    batches = _counted(itertools.chain([first] if first else [], raw_batches), engine, event_id, details)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    filename = f"{_safe_filename_part(table_name)}-archive-{stamp}.{fmt}"
    if fmt == "csv":
        return ExportStream(_csv_chunks(batches, _reflect_or_none(table_name), raw), filename, "text/csv")
    return ExportStream(_jsonl_chunks(batches), filename, "application/x-ndjson")


# --- restore -----------------------------------------------------------------

def _selection_details(selection: RestoreSelection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if selection.ids is not None:
        out["ids"] = list(selection.ids[:100])
        out["id_count"] = len(selection.ids)
    if not selection.filters.is_empty():
        out["filters"] = filters_details(selection.filters)
    if not out:
        out["all"] = True
    return out


def restore(table_name: str, selection: RestoreSelection, username: str | None = None, *,
            actor: Actor | None = None) -> dict[str, Any]:
    """Restore the selected archived rows into the source table, recorded as a ``restore`` run.

    Holds the table's lock throughout (the one archive and purge runs take), so no
    other run works on the table meanwhile (TableHeld, a Conflict, if one is running). A source
    table that is gone raises the engine's RestoreError as it is. Audited (selection and result,
    or the reason it failed) once the table is known.
    """
    actor = actor or (Actor.system(username) if username else audit.SYSTEM)
    username = username or actor.username or "system"
    ensure_known(table_name)
    selection = RestoreSelection(ids=selection.ids, filters=compiled(table_name, selection.filters))
    details: dict[str, Any] = {"selection": _selection_details(selection)}
    try:
        result = _restore(table_name, selection, username)
    except Exception as exc:
        db.session.rollback()
        message = exc.message if isinstance(exc, DomainError) else describe_error(exc)[:300]
        try:
            audit.record_now(audit.ARCHIVE_RESTORE, actor, target=table_name,
                             details={**details, "error": message}, outcome="failure")
        except Exception:  # noqa: BLE001 - the restore's own error is the one to report
            log.exception("could not audit the failed restore of %s", table_name)
            db.session.rollback()
        raise
    audit.record_now(audit.ARCHIVE_RESTORE, actor, target=table_name,
                     details={**details, **{k: v for k, v in result.items() if k not in ("conflicts", "failed")}})
    return result


def _restore(table_name: str, selection: RestoreSelection, username: str) -> dict[str, Any]:
    db.session.rollback()  # no open snapshot on the archive DB while we write to it (SQLite)
    reflect_source_table(source_engine(), table_name)
    lease = table_lock(table_name)
    if not lease.acquire(RunKind.RESTORE.value):
        raise TableHeld(table_name, lease.blocker)
    try:
        return _restore_with_lease(table_name, selection, username, lease)
    finally:
        try:
            lease.release()
        except Exception:  # noqa: BLE001 - it dies with this process or goes stale
            log.warning("could not release the lock on %s after a restore", table_name)


def _restore_with_lease(table_name: str, selection: RestoreSelection, username: str,
                        lease: TableLock) -> dict[str, Any]:
    run_id = runs.start_run(RunKind.RESTORE.value, table_name, runs.trigger_for_user(username))
    # End the session's read transaction now: on SQLite a snapshot taken before the restore's
    # archive writes would make finish_run's UPDATE fail with "database is locked".
    db.session.rollback()
    lease.attach(run_id)
    # Every run of this table needs this lock: one still "running" belongs to a process that died.
    runs.abandon_dead_runs(table_name, run_id, lease.taken_over)
    try:
        result = restore_rows(source_engine(), archive_engine(), table_name, selection, lease=lease)
    except (RestoreError, LeaseLost) as exc:
        db.session.rollback()
        runs.finish_run(run_id, RunStatus.FAILED.value, error=str(exc)[:500])
        raise Conflict(f"Restore stopped: {exc}") from None
    except Exception as exc:
        log.exception("restore of %s failed (run %s)", table_name, run_id)
        db.session.rollback()
        runs.finish_run(run_id, RunStatus.FAILED.value, error=f"restore failed: {describe_error(exc)}")
        raise
    status = RunStatus.SUCCEEDED if not (result.conflict_count or result.failed_count) else RunStatus.PARTIAL
    runs.finish_run(run_id, status.value, _counts(result))
    return {"run_id": run_id, "status": status.value, "restored": result.restored,
            "already_present": result.already_present, "conflict_count": result.conflict_count,
            "conflicts": result.conflicts, "failed_count": result.failed_count, "failed": result.failed,
            "not_found": result.not_found, "children": result.children,
            "conflict_tables": result.conflict_tables}


def _counts(result: RestoreResult) -> runs.RunCounts:
    return runs.RunCounts(rows_read=result.rows_read, rows_written=result.restored,
                          rows_deleted=result.archive_deleted,
                          rows_conflict=result.conflict_count + result.failed_count, batches=result.batches)


def selection_from_request(data: Mapping[str, Any]) -> RestoreSelection:
    """The restore selection from a validated request body."""
    ids = data.get("ids")
    return RestoreSelection(ids=tuple(ids) if ids is not None else None,
                            filters=ArchiveFilters.from_mapping(data.get("filters")))
