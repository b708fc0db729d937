"""PostgreSQL fast path: payloads built by the server, COPY into the archive, array DELETE.

Source (:class:`FastPostgresSourceOps`): the batch SELECT ... FOR UPDATE
returns each row's payload text (see :mod:`.fast_common`); these types are
rendered by the server, byte for byte as the Python encoder writes them:

* smallint/integer/bigint → digits; boolean → true/false
* text/varchar/char/enum → ``to_json`` (same escapes as orjson)
* numeric → the exact string (``"12.30"``); a value Python's ``str(Decimal)``
  would write in exponent form (|x| < 1e-6, or 0 with more than 6 decimals)
  is exotic
* timestamp / timestamptz / date → ISO 8601 as ``datetime.isoformat()``
  (6-digit fraction only when non-zero; the session's offset ``+HH:MM`` for
  timestamptz, as psycopg2 reads it); years outside 1..9999, infinities and
  offsets with seconds are exotic
* uuid → text; bytea → base64 without line breaks

Other types (float, json/jsonb, arrays, interval, time, money, ...) are
encoded in Python; exotic values send their row through the generic encoder.
The DELETE passes the keys as one array (``= ANY(CAST(:keys AS type[]))``).

Archive (:class:`FastPostgresArchiveOps`): the batch is COPYed into a
session-local TEMP table, then one ``INSERT … SELECT … ON CONFLICT
(table_name, source_pk) DO UPDATE`` moves it into ``archived_rows`` in the
same (archive) transaction; the temp table empties itself at commit. It is
created, when missing, in the transaction that uses it, so a transaction-pooling
proxy (PgBouncer) does no harm: each server connection keeps its own.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from .dialects import PostgresArchiveOps, PostgresSourceOps
from .fast_common import FastSourceOps
from .plan import TablePlan
from .schema import archived_rows

_ISO_SECONDS = 'YYYY-MM-DD"T"HH24:MI:SS'


class _TID(sa.types.UserDefinedType):
    """PostgreSQL's tid (a row's physical address), for the purge's keyset."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "tid"


def _q(text: str) -> sa.ColumnElement[str]:
    return sa.literal(text, sa.Text)


def _quoted(expr: Any) -> sa.ColumnElement[str]:
    return _q('"').op("||")(expr).op("||")(_q('"'))


def _fraction(expr: Any) -> sa.ColumnElement[str]:
    """'.ffffff' when the value has a fraction of a second, else '' (like isoformat)."""
    return sa.case((expr == sa.func.date_trunc("second", expr), _q("")), else_=sa.func.to_char(expr, ".US"))


def _year_ok(expr: Any) -> sa.ColumnElement[bool]:
    # Python dates hold years 1..9999; infinities (psycopg2 reads them as date/datetime.max) are exotic too.
    return sa.extract("year", expr).between(1, 9999)


def pg_value_fragment(expr: Any, col_type: sa.types.TypeEngine) -> sa.ColumnElement[str] | None:
    """The server-side JSON text of a PostgreSQL column value (None: encode it in Python)."""
    t = col_type
    if isinstance(t, sa.Boolean):
        return sa.case((expr, _q("true")), else_=_q("false"))
    if isinstance(t, sa.Integer):
        return sa.cast(expr, sa.Text)
    if isinstance(t, sa.Float):
        return None  # float text is not always Python's repr (3 vs 3.0, 1e+100 vs 1e100)
    if isinstance(t, sa.Numeric):
        text = _quoted(sa.cast(expr, sa.Text))
        if t.scale is not None and 0 <= t.scale <= 6:
            return text  # stored with exactly `scale` decimals: never exponent form in Python
        exponent_form = sa.or_(sa.and_(expr == 0, sa.func.scale(expr) > 6),
                               sa.and_(expr != 0, sa.func.abs(expr) < sa.literal(Decimal("0.000001"), sa.Numeric)))
        return sa.case((exponent_form, sa.null()), else_=text)
    if isinstance(t, sa.DateTime):
        body = sa.func.to_char(expr, _ISO_SECONDS).op("||")(_fraction(expr))
        ok = _year_ok(expr)
        if t.timezone:
            body = body.op("||")(sa.func.to_char(expr, "TZH:TZM"))
            ok = sa.and_(ok, sa.extract("timezone", expr) % 60 == 0)
        return sa.case((ok, _quoted(body)), else_=sa.null())
    if isinstance(t, sa.Date):
        return sa.case((_year_ok(expr), _quoted(sa.func.to_char(expr, "YYYY-MM-DD"))), else_=sa.null())
    if isinstance(t, sa.Uuid):
        return _quoted(sa.cast(expr, sa.Text))
    if isinstance(t, sa.LargeBinary):
        return _quoted(sa.func.translate(sa.func.encode(expr, "base64"), "\n", ""))
    if isinstance(t, sa.String) and not isinstance(t, sa.JSON):
        return sa.cast(sa.func.to_json(expr), sa.Text)
    return None


class FastPostgresSourceOps(FastSourceOps, PostgresSourceOps):
    """PostgreSQL source: server-built payloads streamed from a server-side cursor, array DELETE."""

    streaming = True

    def value_fragment(self, expr: Any, col_type: sa.types.TypeEngine) -> sa.ColumnElement[str] | None:
        return pg_value_fragment(expr, col_type)

    def row_date_text_column(self, plan: TablePlan) -> sa.ColumnElement[str] | None:
        col, t = plan.date_column, plan.date_column.type
        if isinstance(t, sa.DateTime):
            # Naive timestamps are UTC by convention; timestamptz is converted to UTC.
            utc = sa.func.timezone("UTC", col) if t.timezone else col
            text = sa.func.to_char(utc, "YYYY-MM-DD HH24:MI:SS.US")
        elif isinstance(t, sa.Date):
            utc = col
            text = sa.func.to_char(col, "YYYY-MM-DD").op("||")(_q(" 00:00:00.000000"))
        else:
            return None
        return sa.case((_year_ok(utc), text), else_=sa.null())

    # --- COPY passthrough: the batch goes from COPY … TO STDOUT to COPY … FROM STDIN as bytes ---
    def copy_out_statement(self, plan: TablePlan, after: tuple | None, limit: int, archived_at: datetime,
                           run_id: int | None) -> tuple[str, dict[str, Any]] | None:
        """``COPY (SELECT … FOR UPDATE) TO STDOUT`` of the next batch as ``archived_rows`` lines
        (table_name, source_pk, payload, row_date, archived_at, run_id) with its parameters, or
        None when the server does not write whole records of this table (one integer key, every
        column rendered by the server). A row with a value the server cannot render has a NULL
        payload (the archive's COPY refuses it: that batch goes the generic way)."""
        if not self.fast_enabled or len(plan.pk) != 1 or not isinstance(plan.pk[0].type, sa.Integer):
            return None
        layout = self.layout(plan)
        if layout.single_object is None or layout.row_date_text is None:
            return None
        pk = plan.pk[0]
        items = [sa.literal(plan.table_name, sa.Text), sa.cast(pk, sa.Text), layout.items[layout.single_object],
                 layout.items[layout.row_date_text].op("||")(_q("+00")),
                 sa.literal(archived_at, sa.DateTime(timezone=True)), sa.literal(run_id, sa.BigInteger)]
        stmt = sa.select(*items).where(plan.predicate)
        if after is not None:
            stmt = stmt.where(pk > sa.literal(after[0], pk.type))
        stmt = stmt.order_by(pk).limit(sa.literal(limit, sa.Integer)).with_for_update(of=plan.table)
        compiled = stmt.compile(dialect=self.engine.dialect)
        return f"COPY ({compiled.string}) TO STDOUT", dict(compiled.params)

    def any_left(self, conn: sa.Connection, plan: TablePlan, after: tuple | None) -> bool:
        """Whether a row qualifies after ``after`` (no lock: the COPY takes them)."""
        pk = plan.pk[0]
        stmt = sa.select(pk).where(plan.predicate)
        if after is not None:
            stmt = stmt.where(pk > sa.literal(after[0], pk.type))
        return conn.execute(stmt.order_by(pk).limit(1)).first() is not None

    def copy_out(self, conn: sa.Connection, sql: str, params: dict[str, Any], sink: Any) -> None:
        """Run a COPY … TO STDOUT into ``sink`` (psycopg2 binds the parameters, as for every query)."""
        run_copy(conn, sql, sink, params)

    def delete_key_text(self, conn: sa.Connection, plan: TablePlan, keys: str) -> int:
        """DELETE the keys given as one array text (``{1,2,3}``)."""
        stmt = plan.extra.get("fast_delete_text")
        if stmt is None:
            col = plan.pk[0]
            array = sa.cast(sa.bindparam("keys", type_=sa.Text), pg.ARRAY(col.type))
            stmt = plan.extra["fast_delete_text"] = sa.delete(plan.table).where(col == sa.any_(array))
        return conn.execute(stmt, {"keys": keys}).rowcount

    def delete_keys(self, conn: sa.Connection, plan: TablePlan, keys: list[tuple]) -> int:
        if len(plan.pk) != 1 or not self.fast_enabled:
            return super().delete_keys(conn, plan, keys)
        stmt = plan.extra.get("fast_delete")
        if stmt is None:
            col = plan.pk[0]
            array = sa.cast(sa.bindparam("keys"), pg.ARRAY(col.type))
            stmt = plan.extra["fast_delete"] = sa.delete(plan.table).where(col == sa.any_(array))
        return conn.execute(stmt, {"keys": [k[0] for k in keys]}).rowcount


def _copy_text(value: str) -> str:
    """A value in COPY's text format (backslash escapes)."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\n" in value or "\r" in value or "\t" in value:
        value = value.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return value


def _copy_datetime(value: datetime | str | None) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):  # naive UTC text (see Batch)
        return value + "+00"
    return value.isoformat()


class _CopyReader:
    """File-like COPY text for ``copy_expert``, made from record chunks as psycopg2 reads it."""

    def __init__(self, chunks: Iterator[list[dict[str, Any]]], prefix: str, suffix: str) -> None:
        self.chunks, self.prefix, self.suffix = chunks, prefix, suffix
        self.count = 0
        self.error: BaseException | None = None  # raised by the chunks (the source side), not by COPY

    def read(self, size: int = -1) -> str:
        try:
            chunk = next(self.chunks, None)
        except BaseException as exc:  # psycopg2 would replace it with a COPY error: keep it
            self.error = exc
            raise
        if chunk is None:
            return ""
        self.count += len(chunk)
        p, s = self.prefix, self.suffix
        return "".join([f"{p}{_copy_text(r['source_pk'])}\t{_copy_text(r['payload'])}\t{_copy_datetime(r['row_date'])}{s}"
                        for r in chunk])

    readline = read


class FastPostgresArchiveOps(PostgresArchiveOps):
    """PostgreSQL archive: COPY straight into ``archived_rows`` as the rows arrive.

    The COPY runs in a SAVEPOINT; if a row of the batch is archived already
    (a rerun after a crash), it is rolled back and the batch goes through a
    TEMP staging table and one ``INSERT … SELECT … ON CONFLICT (table_name,
    source_pk) DO UPDATE`` instead, in the same archive transaction.
    """

    fast_enabled = True
    streams = True
    _COPY = "COPY archived_rows (table_name, source_pk, payload, row_date, archived_at, run_id) FROM STDIN"
    _STAGE = "pg_temp.archiver_stage"
    _CREATE = ("CREATE TEMP TABLE IF NOT EXISTS archiver_stage "
               "(source_pk text, payload text, row_date timestamptz) ON COMMIT DELETE ROWS")
    _COPY_STAGE = f"COPY {_STAGE} (source_pk, payload, row_date) FROM STDIN"
    _MOVE = ("INSERT INTO archived_rows (table_name, source_pk, payload, row_date, archived_at, run_id) "
             "SELECT %(table_name)s, source_pk, payload::jsonb, row_date, %(archived_at)s::timestamptz, "
             f"%(run_id)s::bigint FROM {_STAGE} "
             "ON CONFLICT (table_name, source_pk) DO UPDATE SET payload = EXCLUDED.payload, "
             "row_date = EXCLUDED.row_date, archived_at = EXCLUDED.archived_at, run_id = EXCLUDED.run_id")

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self._purge_state: dict[tuple[str, datetime], dict[str, Any]] = {}

    def _usable(self, conn: sa.Connection) -> bool:
        return self.fast_enabled and conn.dialect.driver == "psycopg2"

    def upsert(self, conn: sa.Connection, table_name: str, records: list[dict[str, Any]],
               archived_at: datetime, run_id: int | None) -> int:
        if not records or not self._usable(conn):
            return super().upsert(conn, table_name, records, archived_at, run_id)
        return self.upsert_stream(conn, table_name, [records], archived_at, run_id)

    def upsert_stream(self, conn: sa.Connection, table_name: str, chunks: Iterable[list[dict[str, Any]]],
                      archived_at: datetime, run_id: int | None) -> int:
        if not self._usable(conn):
            return super().upsert_stream(conn, table_name, chunks, archived_at, run_id)
        kept: list[list[dict[str, Any]]] = []

        def keep(source: Iterable[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
            for chunk in source:
                kept.append(chunk)
                yield chunk

        feed = keep(chunks)
        run = "\\N" if run_id is None else str(int(run_id))
        suffix = f"\t{_copy_datetime(archived_at)}\t{run}\n"
        reader = _CopyReader(feed, _copy_text(table_name) + "\t", suffix)
        savepoint = conn.begin_nested()
        try:
            run_copy(conn, self._COPY, reader)
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "pgcode", None) != "23505":  # not "already archived"
                raise
            savepoint.rollback()
            for _chunk in feed:  # the rest of the batch
                pass
            return self._staged_upsert(conn, table_name, [r for chunk in kept for r in chunk], archived_at, run_id)
        savepoint.commit()
        return reader.count

    def copy_in(self, conn: sa.Connection, source: Any) -> int | None:
        """``COPY archived_rows FROM STDIN`` of whole lines read from ``source`` (in a SAVEPOINT);
        the rows copied, or None when the COPY was refused (a key archived already, a NULL
        payload, ...: the SAVEPOINT is rolled back and the batch must go the generic way)."""
        if not self._usable(conn):
            return None
        savepoint = conn.begin_nested()
        try:
            copied = run_copy(conn, self._COPY, source)
        except sa.exc.DBAPIError as exc:
            if (getattr(exc.orig, "pgcode", None) or "")[:2] in ("23", "22"):  # integrity / data: not ours to copy
                savepoint.rollback()
                return None
            raise
        savepoint.commit()
        return copied

    def purge_batch(self, conn: sa.Connection, table_name: str, cutoff: datetime, limit: int) -> int:
        """Delete up to ``limit`` expired rows by their ctid (a TID scan, no index probes).

        Which rows: when the expired rows are a large part of ``archived_rows``
        (a bulk purge), the next ones in physical order after the last batch (a
        TID range scan: each heap page is visited once); otherwise the oldest by
        ``archived_at`` (its index). The conditions are repeated on the DELETE,
        so a row changed meanwhile (re-archived: a newer ``archived_at``) is
        re-checked. (``id IN (subquery)`` was planned as a hash semi-join over a
        scan of the whole table, once per batch.)
        """
        if not self.fast_enabled:
            return super().purge_batch(conn, table_name, cutoff, limit)
        expired = self._expired(table_name, cutoff)
        ctid = sa.literal_column("ctid")
        state = self._purge_state.get((table_name, cutoff))
        if state is None:
            state = self._purge_state[(table_name, cutoff)] = {"physical": self._bulk_purge(conn, expired)}
        if state["physical"]:
            after = state.get("after", "(0,0)")
            pick = sa.select(ctid).select_from(archived_rows).where(
                ctid > sa.cast(sa.literal(after), _TID()), expired).limit(limit)
        else:
            pick = sa.select(ctid).select_from(archived_rows).where(expired) \
                .order_by(archived_rows.c.archived_at).limit(limit)
        deleted = sa.delete(archived_rows).where(ctid == sa.any_(sa.func.array(pick.scalar_subquery())), expired) \
            .returning(ctid).cte("deleted")
        count, last = conn.execute(sa.select(sa.func.count(), sa.func.max(sa.column("ctid")).cast(sa.Text))
                                   .select_from(deleted)).one()
        if last is not None:
            state["after"] = last
        return int(count)

    def _bulk_purge(self, conn: sa.Connection, expired: sa.ColumnElement[bool]) -> bool:
        """True when the expired rows are at least a fifth of archived_rows (planner estimates)."""
        total = conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('archived_rows')")) \
            .scalar()
        if not total or total < 10_000:
            return False
        n = conn.execute(sa.select(sa.func.count()).select_from(
            sa.select(archived_rows.c.id).where(expired).limit(int(total // 5) + 1).subquery())).scalar_one()
        return n * 5 >= total

    def _staged_upsert(self, conn: sa.Connection, table_name: str, records: list[dict[str, Any]],
                       archived_at: datetime, run_id: int | None) -> int:
        """COPY into the TEMP table, then INSERT … ON CONFLICT DO UPDATE (replaces archived copies)."""
        conn.exec_driver_sql(self._CREATE)
        run_copy(conn, self._COPY_STAGE, _CopyReader(iter([records]), "", "\n"))
        conn.exec_driver_sql(self._MOVE, {"table_name": table_name, "archived_at": archived_at, "run_id": run_id})
        return len(records)


def run_copy(conn: sa.Connection, sql: str, data: Any, params: dict[str, Any] | None = None) -> int:
    """``COPY … FROM STDIN`` (``data`` is read) or ``COPY … TO STDOUT`` (``data`` is written) on
    the connection's psycopg2 cursor, ``params`` bound by psycopg2; returns the rows copied.
    DB-API errors come as SQLAlchemy's; a reader's own failure (``data.error``) as itself."""
    dbapi_conn = conn.connection.dbapi_connection
    error = conn.dialect.loaded_dbapi.Error
    try:
        with dbapi_conn.cursor() as cur:
            cur.copy_expert(sql if params is None else cur.mogrify(sql, params).decode(), data, size=1 << 16)
            return cur.rowcount
    except error as exc:
        if getattr(data, "error", None) is not None:  # reading the data failed (source side): that error
            raise data.error from None
        raise sa.exc.DBAPIError.instance(sql, None, exc, error, dialect=conn.dialect) from exc


#: Registered by dialects._load_fast_paths: {is_source: {dialect name: class}}.
FAST_OPS = {True: {"postgresql": FastPostgresSourceOps}, False: {"postgresql": FastPostgresArchiveOps}}
