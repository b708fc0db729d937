"""PostgreSQL archive: COPY straight into ``archived_rows`` as the rows arrive; purge by ctid.

The batch is COPYed into ``archived_rows`` in a SAVEPOINT; a batch with a row
archived already (a rerun after a crash) goes through a session-local TEMP
staging table and one ``INSERT … SELECT … ON CONFLICT (table_name, source_pk)
DO UPDATE`` instead, in the same archive transaction; the temp table empties
itself at commit. It is created, when missing, in the transaction that uses
it, so a transaction-pooling proxy (PgBouncer) does no harm: each server
connection keeps its own.
"""
from __future__ import annotations

import hashlib

from datetime import datetime
from typing import Any, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from ...payload_filter import PayloadReads
from ...schema import archived_rows
from ..base import ArchiveOps
from . import errors
from .capabilities import CAPABILITIES
from .copy import CopyReader, copy_datetime, copy_text, run_copy


class TID(sa.types.UserDefinedType):
    """PostgreSQL's tid (a row's physical address), for the purge's keyset."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "tid"


class PostgresPayloadReads(PayloadReads):
    """A payload key read with ``->>`` (jsonb): text compared byte for byte (``COLLATE "C"``, as the
    other databases compare it), dates cast to their column's type."""

    def _value(self, name: str) -> sa.ColumnElement[Any]:
        return sa.cast(archived_rows.c.payload.op("->>")(sa.literal(name, sa.String)), sa.Text)

    def text(self, name: str) -> sa.ColumnElement[Any]:
        return self._value(name).collate("C")

    def temporal(self, name: str, target: sa.types.TypeEngine) -> sa.ColumnElement[Any] | None:
        return sa.cast(self._value(name), target)


class PostgresArchiveOps(ArchiveOps):
    """PostgreSQL archive: COPY straight into ``archived_rows`` as the rows arrive.

    The COPY runs in a SAVEPOINT; if a row of the batch is archived already
    (a rerun after a crash), it is rolled back and the batch goes through a
    TEMP staging table and one ``INSERT … SELECT … ON CONFLICT (table_name,
    source_pk) DO UPDATE`` instead, in the same archive transaction.
    """

    capabilities = CAPABILITIES
    payload_reads = PostgresPayloadReads()
    streams = True
    #: Lines written by a source server (:mod:`.copy_pipe`): the six columns it renders.
    _COPY = "COPY archived_rows (table_name, source_pk, payload, row_date, archived_at, run_id) FROM STDIN"
    #: Lines written here, from records (with their link to the root row they moved with).
    _COPY_RECORDS = ("COPY archived_rows (table_name, source_pk, payload, row_date, archived_at, run_id, "
                     "root_id, depth) FROM STDIN")
    _STAGE = "pg_temp.archiver_stage"
    _CREATE = ("CREATE TEMP TABLE IF NOT EXISTS archiver_stage "
               "(source_pk text, payload text, row_date timestamptz, root_id bigint, depth smallint) "
               "ON COMMIT DELETE ROWS")
    _COPY_STAGE = f"COPY {_STAGE} (source_pk, payload, row_date, root_id, depth) FROM STDIN"
    _MOVE = ("INSERT INTO archived_rows (table_name, source_pk, payload, row_date, archived_at, run_id, root_id, "
             "depth) SELECT %(table_name)s, source_pk, payload::jsonb, row_date, %(archived_at)s::timestamptz, "
             f"%(run_id)s::bigint, root_id, depth FROM {_STAGE} "
             "ON CONFLICT (table_name, source_pk) DO UPDATE SET "
             + ", ".join(f"{c} = EXCLUDED.{c}" for c in ArchiveOps.REPLACED))

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self._purge_state: dict[tuple[str, datetime], dict[str, Any]] = {}

    def explain(self, exc: BaseException) -> str:
        return errors.reason(exc) or super().explain(exc)

    def copies(self, conn: sa.Connection) -> bool:
        """Whether batches go in by COPY on this connection (psycopg2, fast path on)."""
        return self.fast_enabled and conn.dialect.driver == "psycopg2"

    def payload_param(self) -> Any:
        return sa.cast(sa.bindparam("payload", type_=sa.Text), pg.JSONB)

    def upsert_statement(self) -> Any:
        insert = pg.insert(archived_rows).values(**self.values())
        ex = insert.excluded
        # RETURNING makes SQLAlchemy batch the executemany into multi-row VALUES
        # ("insertmanyvalues"), which it does not do for a bare ON CONFLICT insert.
        # Keys within one batch are distinct, so no row is hit twice by one statement.
        return insert.on_conflict_do_update(
            index_elements=[archived_rows.c.table_name, archived_rows.c.source_pk],
            set_={c: ex[c] for c in self.REPLACED},
        ).returning(archived_rows.c.id)

    def archived_ids(self, conn: sa.Connection, table_name: str, source_pks: list[str]) -> dict[str, int]:
        if not self.fast_enabled:
            return super().archived_ids(conn, table_name, source_pks)
        c = archived_rows.c  # the keys as one text[] parameter
        stmt = sa.select(c.source_pk, c.id).where(c.table_name == table_name,
                                                  c.source_pk == sa.any_(sa.cast(sa.bindparam("pks"), pg.ARRAY(sa.Text))))
        return dict(conn.execute(stmt, {"pks": source_pks}).all())

    def lock_name(self, conn: sa.Connection, table_name: str) -> int:
        # Advisory locks are per database; the key covers the archive schema too (one database may
        # hold several archives, one per schema) and the table, hashed to a signed 64-bit key.
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar() or ""
        digest = hashlib.sha256(f"archiver\0{schema}\0{table_name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def try_lock(self, conn: sa.Connection, name: int) -> bool:
        return bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": name}).scalar())

    def unlock(self, conn: sa.Connection, name: int) -> None:
        conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": name})

    def bound_idle_session(self, conn: sa.Connection, seconds: int) -> None:
        if conn.dialect.server_version_info >= (14,):  # idle_session_timeout is PostgreSQL 14's
            conn.exec_driver_sql(f"SET idle_session_timeout = {int(seconds) * 1000}")

    def upsert(self, conn: sa.Connection, table_name: str, records: list[dict[str, Any]],
               archived_at: datetime, run_id: int | None) -> int:
        if not records or not self.copies(conn):
            return super().upsert(conn, table_name, records, archived_at, run_id)
        return self.upsert_stream(conn, table_name, [records], archived_at, run_id)

    def upsert_stream(self, conn: sa.Connection, table_name: str, chunks: Iterable[list[dict[str, Any]]],
                      archived_at: datetime, run_id: int | None) -> int:
        if not self.copies(conn):
            return super().upsert_stream(conn, table_name, chunks, archived_at, run_id)
        kept: list[list[dict[str, Any]]] = []

        def keep(source: Iterable[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
            for chunk in source:
                kept.append(chunk)
                yield chunk

        feed = keep(chunks)
        run = "\\N" if run_id is None else str(int(run_id))
        suffix = f"\t{copy_datetime(archived_at)}\t{run}"
        reader = CopyReader(feed, copy_text(table_name) + "\t", suffix)
        savepoint = conn.begin_nested()
        try:
            run_copy(conn, self._COPY_RECORDS, reader)
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
        if not self.copies(conn):
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

    def purge_batch(self, conn: sa.Connection, table_name: str, cutoff: datetime, limit: int) -> tuple[int, int]:
        """Delete up to ``limit`` expired rows by their ctid (a TID scan, no index probes), and the rows
        that moved with them, in one statement; (roots, descendants) deleted.

        Which rows: when the expired rows are a large part of ``archived_rows``
        (a bulk purge), the next ones in physical order after the last batch (a
        TID range scan: each heap page is visited once); otherwise the oldest by
        ``archived_at`` (its index). The conditions are repeated on the DELETE,
        so a row changed meanwhile (re-archived: a newer ``archived_at``) is
        re-checked. (``id IN (subquery)`` was planned as a hash semi-join over a
        scan of the whole table, once per batch.)
        """
        if not self.fast_enabled:
            return self.purge_batch_in_one_statement(conn, table_name, cutoff, limit)
        expired = self.expired(table_name, cutoff)
        ctid = sa.literal_column("ctid")
        state = self._purge_state.get((table_name, cutoff))
        if state is None:
            state = self._purge_state[(table_name, cutoff)] = {"physical": self._bulk_purge(conn, expired)}
        if state["physical"]:
            after = state.get("after", "(0,0)")
            pick = sa.select(ctid).select_from(archived_rows).where(
                ctid > sa.cast(sa.literal(after), TID()), expired).limit(limit)
        else:
            pick = sa.select(ctid).select_from(archived_rows).where(expired) \
                .order_by(archived_rows.c.archived_at).limit(limit)
        deleted = sa.delete(archived_rows).where(ctid == sa.any_(sa.func.array(pick.scalar_subquery())), expired) \
            .returning(ctid, archived_rows.c.id).cte("deleted")
        below = sa.delete(archived_rows).where(self.below_expired(sa.select(deleted.c.id), cutoff)) \
            .returning(archived_rows.c.id).cte("below")
        count, last, n_below = conn.execute(sa.select(
            sa.func.count(), sa.func.max(deleted.c.ctid).cast(sa.Text),
            sa.select(sa.func.count()).select_from(below).scalar_subquery()).select_from(deleted)).one()
        if last is not None:
            state["after"] = last
        return int(count), int(n_below)

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
        # Empty until the commit, not between two uses in one transaction (a batch's roots, then its
        # children): start from an empty stage every time.
        conn.exec_driver_sql(f"TRUNCATE {self._STAGE}")
        run_copy(conn, self._COPY_STAGE, CopyReader(iter([records]), "", ""))
        conn.exec_driver_sql(self._MOVE, {"table_name": table_name, "archived_at": archived_at, "run_id": run_id})
        return len(records)
