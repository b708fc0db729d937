"""Server-side payloads: the batch SELECT returns each row's JSON text, built by the database.

A helper shared by the backends whose databases can build JSON
(``Capabilities.server_json``: SQLite, PostgreSQL, MySQL/MariaDB). For each column type it knows, a dialect renders the
value in SQL exactly as :class:`~.rowcodec.RowEncoder` writes it in JSON; a
value it cannot render identically (a year outside 1..9999, text in an
INTEGER column on SQLite, ...) is *exotic*. Column types it does not know are
selected as they are and encoded in Python, per column.

The select list is: the primary-key columns and the date column (as the
generic path reads them), optionally the row date as UTC text, then the
payload as *groups*: a run of SQL-rendered columns comes back as one JSON
object text (NULL when any of its values is exotic), a Python-encoded column
as its raw value. Per row the groups are joined in table column order; with
no Python-encoded column the payload is the one object text as is.

A row with an exotic value is read again, by key, through the generic path in
the same transaction (its rows are locked), so every payload is the generic
encoding of the row, key for key and value for value.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import orjson
import sqlalchemy as sa

from ..errors import DatabaseError, LockConflict
from ..plan import TablePlan
from ..rowcodec import canonical_pk, converter_for, encode_value, orjson_default, to_utc_datetime
from .base import Batch, BatchStream, SourceOps


def value_json(value: Any, converter: Callable[[Any], Any] | None = None) -> str:
    """JSON text of one value as the generic encoder writes it inside a payload."""
    converted = converter(value) if value is not None and converter is not None else value
    try:
        return orjson.dumps(converted).decode()
    except (TypeError, orjson.JSONEncodeError):
        value = encode_value(value)
        try:
            return orjson.dumps(value, default=orjson_default).decode()
        except TypeError:  # integers beyond 64 bits
            return json.dumps(value, default=orjson_default, ensure_ascii=False, separators=(",", ":"))


def json_key(name: str) -> str:
    """A payload key as JSON text (``"name"``)."""
    return orjson.dumps(name).decode()


@dataclass(frozen=True)
class Member:
    """How the database renders one column of the payload.

    ``fragment``: SQL yielding the value's JSON text (NULL when exotic), for
    dialects that concatenate text; ``value``/``ok``: an SQL value for the
    database's own JSON object builder and the condition under which it is
    rendered exactly (dialects with such a builder).
    """

    column: sa.Column
    fragment: Any = None
    value: Any = None
    ok: Any = None


@dataclass
class FastLayout:
    """The fast SELECT's items for one table plan and how to assemble a payload from a row.

    ``pieces`` follow the key/date items: ``int`` is the select index of a
    JSON object text, ``(index, key_text, converter)`` a raw value encoded in
    Python.
    """

    items: list[Any]
    n_keys: int
    row_date_text: int | None  # select index of the row date as naive UTC text, if the dialect makes it
    pieces: list[Any]
    sql_columns: int  # columns whose JSON the database writes
    py_columns: int   # columns encoded in Python

    @property
    def single_object(self) -> int | None:
        """The select index of the payload when one SQL object holds every column, else None."""
        if len(self.pieces) == 1 and isinstance(self.pieces[0], int):
            return self.pieces[0]
        return None


class ServerJsonSourceOps(SourceOps):
    """fetch_batch with payloads built by the database (see the module docstring).

    With ``fast_enabled`` False it behaves exactly like the portable SourceOps.
    """

    # --- per dialect ------------------------------------------------------
    def member(self, column: sa.Column, col_type: sa.types.TypeEngine) -> Member | None:
        """How the database renders ``column`` (as selected with ``col_type``), or None: Python."""
        fragment = self.value_fragment(column, col_type)
        return None if fragment is None else Member(column, fragment=fragment)

    def value_fragment(self, expr: Any, col_type: sa.types.TypeEngine) -> sa.ColumnElement[str] | None:
        """JSON text of ``expr`` (SQL NULL when exotic; NULL values are handled by the caller)."""
        return None

    def object_expr(self, members: list[tuple[str, Member]]) -> sa.ColumnElement[str]:
        """One JSON object text for these members, NULL when any value is exotic.

        Default: text concatenation of the fragments (a NOT NULL column needs no
        NULL guard: a NULL would make the object NULL, i.e. take the generic path).
        """
        parts: list[Any] = []
        for i, (key, m) in enumerate(members):
            parts.append(("{" if i == 0 else ",") + json_key(key) + ":")
            frag = m.fragment
            if m.column.nullable is not False:
                frag = sa.case((m.column.is_(None), sa.literal_column("'null'")), else_=frag)
            parts.append(frag)
        parts.append("}")
        merged: list[Any] = []
        for p in parts:
            if isinstance(p, str) and merged and isinstance(merged[-1], str):
                merged[-1] += p
            else:
                merged.append(p)
        return self.concat([sa.literal(p, sa.Text) if isinstance(p, str) else p for p in merged])

    def concat(self, parts: Sequence[Any]) -> sa.ColumnElement[str]:
        """SQL concatenation that is NULL when any part is NULL."""
        out = parts[0]
        for part in parts[1:]:
            out = out.op("||")(part)
        return sa.type_coerce(out, sa.Text)

    def raw_select_column(self, plan: TablePlan, index: int) -> Any:
        """A column as the generic path selects it (keys, Python-encoded columns)."""
        return plan.columns[index]

    def date_select_column(self, plan: TablePlan) -> Any:
        """The date column as read for ``row_date`` (anything :func:`to_utc_datetime` takes)."""
        return self.raw_select_column(plan, plan.date_idx)

    def row_date_text_column(self, plan: TablePlan) -> sa.ColumnElement[str] | None:
        """Optional SQL for ``row_date`` as naive UTC text ``YYYY-MM-DD HH:MM:SS.ffffff``.

        Used only for rows whose payload came out of SQL (no exotic value), and
        only when not NULL; otherwise ``row_date`` is computed in Python from
        the date column. It must then stand for the instant
        :func:`to_utc_datetime` gives for the date column's value.
        """
        return None

    # --- layout -------------------------------------------------------------
    def layout(self, plan: TablePlan) -> FastLayout:
        cached = plan.extra.get("fast_layout")
        if cached is not None:
            return cached
        items: list[Any] = [self.raw_select_column(plan, i) for i in plan.pk_idx]
        items.append(self.date_select_column(plan))
        rd_sql = self.row_date_text_column(plan)
        rd_text = None
        if rd_sql is not None:
            items.append(rd_sql)
            rd_text = len(items) - 1
        pieces: list[Any] = []
        group: list[tuple[str, Member]] = []
        sql_cols = py_cols = 0

        def flush() -> None:
            if group:
                items.append(self.object_expr(list(group)))
                pieces.append(len(items) - 1)
                group.clear()

        for i, name in enumerate(plan.encoder.names):
            selected = plan.columns[i]
            m = self.member(plan.table.columns[name], selected.type)
            if m is not None:
                group.append((name, m))
                sql_cols += 1
            else:
                flush()
                items.append(self.raw_select_column(plan, i))
                pieces.append((len(items) - 1, json_key(name) + ":", converter_for(selected.type)))
                py_cols += 1
        flush()
        layout = FastLayout(items, len(plan.pk_idx), rd_text, pieces, sql_cols, py_cols)
        plan.extra["fast_layout"] = layout
        return layout

    def renders_objects(self, plan: TablePlan) -> bool:
        """Whether SQL alone can write every archive record of this table's objects (in-server moves):
        each child table reached by one relation (a tree), no reference that could hold a row back,
        every table keyed by one integer column (compared as stored) and rendered whole by the database."""
        if not self.fast_enabled or not plan.graph.is_tree or plan.graph.holds:
            return False
        for name in plan.graph.members:
            member = plan.members.get(name)
            if member is None or member.plan is None or len(member.pk) != 1:
                return False
            key = member.pk[0]
            if not isinstance(key.type, sa.Integer) or self.key_column(key) is not key:
                return False
            if self.layout(member.plan).single_object is None:
                return False
        return True

    def member_select(self, member: Any, needed: Sequence[str]) -> tuple[list[Any], dict[str, int]]:
        # The fast SELECT of the table's own plan (payloads built by the database), then the columns
        # the object's relations need.
        if not self.fast_enabled or member.plan is None:
            return super().member_select(member, needed)
        items = list(self.layout(member.plan).items)
        at = {}
        for name in needed:
            at[name] = len(items)
            items.append(member.table.c[name])
        return items, at

    def member_records(self, conn: sa.Connection, member: Any, rows: Sequence[Any]) -> list[dict[str, Any]]:
        if not self.fast_enabled or member.plan is None:
            return super().member_records(conn, member, rows)
        return self.records(conn, member.plan, rows)[1]

    def fast_select(self, plan: TablePlan, after: tuple | None, limit: int) -> tuple[sa.Select, dict[str, Any]]:
        key = "fast_first" if after is None else "fast_next"
        stmt = plan.extra.get(key)
        if stmt is None:
            stmt = plan.extra[key] = self.select_statement(plan, after is None, self.layout(plan).items)
        params: dict[str, Any] = {"batch_limit": limit}
        if after is not None:
            params.update({f"k{i}": v for i, v in enumerate(after)})
        return stmt, params

    def select_batch(self, conn: sa.Connection, plan: TablePlan, after: tuple | None, limit: int) -> Sequence[Any]:
        if not self.fast_enabled:
            return super().select_batch(conn, plan, after, limit)
        stmt, params = self.fast_select(plan, after, limit)
        result = conn.execute(stmt, params)
        if not self.plain_rows(conn, plan):
            return result.all()
        try:  # no column needs a result conversion: the driver's tuples as they are
            return result.cursor.fetchall()
        finally:
            result.close()

    def plain_rows(self, conn: sa.Connection, plan: TablePlan) -> bool:
        """True when no select item has a result processor (raw driver rows are what SQLAlchemy returns)."""
        plain = plan.extra.get("fast_plain_rows")
        if plain is None:
            plain = False
            if self.raw_rows:
                try:
                    plain = all(getattr(item, "type", sa.types.NULLTYPE)._cached_result_processor(
                        conn.dialect, None) is None for item in self.layout(plan).items)
                except Exception:  # noqa: BLE001 - a processor that needs the driver's type code
                    plain = False
            plan.extra["fast_plain_rows"] = plain
        return plain

    #: Read plain rows from the driver's cursor when no conversion is needed (see _plain_rows).
    raw_rows = False

    def fetch_batch(self, conn: sa.Connection, plan: TablePlan, after: tuple | None, limit: int) -> Batch:
        if not self.fast_enabled:
            return super().fetch_batch(conn, plan, after, limit)
        rows = self.select_batch(conn, plan, after, limit)
        if not rows:
            return Batch([], None, [])
        keys, records = self.records(conn, plan, rows)
        return Batch(keys, keys[-1], records)

    #: Rows per streamed chunk (the first chunk is small: the archive starts writing while
    #: the source reads on).
    stream_chunk_rows = 2000
    stream_first_rows = 250

    def streams(self) -> bool:
        return self.fast_enabled and self.capabilities.streaming_reads

    def stream_batch(self, conn: sa.Connection, plan: TablePlan, after: tuple | None,
                     limit: int) -> BatchStream | None:
        if not self.streams():
            return None
        stmt, params = self.fast_select(plan, after, limit)

        def chunks() -> Iterator[tuple[list[tuple], list[dict[str, Any]]]]:
            try:
                result = conn.execute(stmt.execution_options(stream_results=True), params)
                try:
                    size = min(self.stream_first_rows, self.stream_chunk_rows)
                    while rows := result.fetchmany(size):
                        yield self.records(conn, plan, rows)
                        size = self.stream_chunk_rows
                finally:
                    result.close()
            except sa.exc.DBAPIError as exc:  # read while the archive side runs: name the right side
                error = LockConflict if self.is_lock_conflict(exc) else DatabaseError
                raise error("source", self.explain(exc)) from exc

        return BatchStream(chunks())

    def records(self, conn: sa.Connection, plan: TablePlan,
                 rows: Sequence[Any]) -> tuple[list[tuple], list[dict[str, Any]]]:
        """Keys and archive records of selected rows (exotic rows through the generic encoder)."""
        layout = self.layout(plan)
        nk = layout.n_keys
        rd_text = layout.row_date_text
        single = layout.single_object
        pieces = layout.pieces
        keys: list[tuple] = []
        records: list[dict[str, Any]] = []
        exotic: list[int] = []
        if nk == 1 and single is not None and rd_text is not None:  # the common case, kept lean
            add_key, add_record = keys.append, records.append
            for row in rows:
                v, payload, row_date = row[0], row[single], row[rd_text]
                if payload is None:
                    exotic.append(len(records))
                    row_date = None
                add_key((v,))
                add_record({"source_pk": str(v) if type(v) is int else canonical_pk((v,)), "payload": payload,
                            "row_date": row_date if row_date is not None else to_utc_datetime(row[1])})
            if exotic:
                self.generic_payloads(conn, plan, [keys[i] for i in exotic], [records[i] for i in exotic])
            return keys, records
        for row in rows:
            if nk == 1:
                v = row[0]
                key = (v,)
                spk = str(v) if type(v) is int else canonical_pk(key)
            else:
                key = tuple(row[:nk])
                spk = canonical_pk(key)
            payload = row[single] if single is not None else _assemble(row, pieces)
            row_date = None
            if payload is None:
                exotic.append(len(records))
            elif rd_text is not None:
                row_date = row[rd_text]
            if row_date is None:
                row_date = to_utc_datetime(row[nk])
            keys.append(key)
            records.append({"source_pk": spk, "payload": payload, "row_date": row_date})
        if exotic:
            self.generic_payloads(conn, plan, [keys[i] for i in exotic], [records[i] for i in exotic])
        return keys, records

    def generic_payloads(self, conn: sa.Connection, plan: TablePlan, keys: list[tuple],
                          records: list[dict[str, Any]]) -> None:
        """Fill in the payloads of these (locked) rows through the generic encoder."""
        stmt = plan.extra.get("fast_by_keys")
        if stmt is None:
            cols = [self.key_column(c) for c in plan.pk]
            target = cols[0] if len(cols) == 1 else sa.tuple_(*cols)
            stmt = plan.extra["fast_by_keys"] = sa.select(*plan.columns).where(
                target.in_(sa.bindparam("keys", expanding=True)))
        by_key: dict[tuple, str] = {}
        step = max(1, self.max_params // len(plan.pk))
        for i in range(0, len(keys), step):
            chunk = keys[i:i + step]
            values = [k[0] for k in chunk] if len(plan.pk) == 1 else chunk
            for row in conn.execute(stmt, {"keys": values}):
                by_key[tuple(row[j] for j in plan.pk_idx)] = plan.encoder.dumps(row)
        for key, record in zip(keys, records):
            record["payload"] = by_key[key]


def _assemble(row: Sequence[Any], pieces: list[Any]) -> str | None:
    """Join SQL object texts (braces stripped) and Python-encoded members into one object."""
    out: list[str] = []
    for piece in pieces:
        if type(piece) is int:
            text = row[piece]
            if text is None:
                return None
            out.append(text[1:-1])
        else:
            out.append(piece[1] + value_json(row[piece[0]], piece[2]))
    return "{" + ",".join(out) + "}"
