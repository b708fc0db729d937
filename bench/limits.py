"""The reference pipelines the project is compared with.

* PostgreSQL limit: ``COPY (SELECT …, row_to_json(t) … ORDER BY id) TO STDOUT`` on the
  source piped (one OS pipe, two connections, no parsing) into ``COPY archived_rows FROM
  STDIN`` on the archive, one COPY per table (children: the rows of old parents, joined),
  the archive committed, then one ``DELETE`` per table, children first, one source commit.
* SQLite limit: ``ATTACH`` the archive file, one ``INSERT … SELECT json_object(…)`` per
  table into ``archived_rows``, then the ``DELETE``s, children first, one transaction.
* pt-archiver (MariaDB): ``--bulk-insert --bulk-delete --limit 1000 --commit-each`` into a
  typed copy of each table, one process per table, children first (their ``--where`` picks
  the items of old orders), so the ``ON DELETE CASCADE`` finds nothing left to delete.
  Its destination is lighter than the project's: typed columns and the source's own keys,
  no JSON payload and none of ``archived_rows``' secondary indexes.
* MariaDB limit (a second MariaDB reference, not the one the targets name): one
  ``INSERT … SELECT JSON_OBJECT(…)`` per table into ``archived_rows`` (children: the rows of
  old parents, joined), then the ``DELETE``s, children first, one transaction on one
  connection — what the server itself needs to write the rows into the project's schema.

The limits write into the project's own ``archived_rows`` (same columns, unique key and
indexes), so they pay for the same index maintenance as the project. They run in the
harness's process and time the pipeline itself (connections open beforehand); pt-archiver
is timed as whole processes, start-up included, like the project.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from .datasets import DATE_COLUMN, Dataset, Table
from .proc import Child, run
from .servers import MariaDb


@dataclass
class Timed:
    seconds: float
    peak_kb: int | None = None
    note: str = ""        # why it could not run ("n/a …", "failed: …"), else ""


def create_archive_schema(url: str) -> None:
    """The project's own archived_rows table (same columns, key and indexes) in an empty archive."""
    from archiver.engine import schema
    from archiver.engine.connections import make_engine
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        schema.metadata.create_all(engine, tables=[schema.archived_rows])
    finally:
        engine.dispose()


def _parent(ds: Dataset, t: Table) -> Table:
    return next(p for p in ds.tables if p.name == t.parent)


def _old_rows(ds: Dataset, t: Table, cutoff: str, prefix: str = "") -> tuple[str, str]:
    """``t``'s rows older than ``cutoff`` (its SQL text) as ``r``: (their row date, ``FROM … WHERE …``).
    A child table's rows are those of its old parents (``p``), dated by the parent; ``prefix``
    qualifies the table names (``main.``)."""
    if t.parent is None:
        return f"r.{DATE_COLUMN}", f"FROM {prefix}{t.name} r WHERE r.{DATE_COLUMN} < {cutoff}"
    p = _parent(ds, t)
    return (f"p.{DATE_COLUMN}", f"FROM {prefix}{t.name} r JOIN {prefix}{p.name} p ON p.id = r.{t.fk} "
                                f"WHERE p.{DATE_COLUMN} < {cutoff}")


# --- PostgreSQL -----------------------------------------------------------------

def _pg_copy_out(ds: Dataset, t: Table) -> str:
    row_date, rows = _old_rows(ds, t, "%(cutoff)s")
    return (f"COPY (SELECT '{t.name}', r.id::text, row_to_json(r)::text, {row_date} AT TIME ZONE 'UTC', "
            f"%(now)s::timestamptz {rows} ORDER BY r.id) TO STDOUT")


def _pg_delete(ds: Dataset, t: Table) -> str:
    if t.parent is None:
        return f"DELETE FROM {t.name} WHERE {DATE_COLUMN} < %(cutoff)s"
    p = _parent(ds, t)
    return f"DELETE FROM {t.name} r USING {p.name} p WHERE p.id = r.{t.fk} AND p.{DATE_COLUMN} < %(cutoff)s"


PG_COPY_IN = "COPY archived_rows (table_name, source_pk, payload, row_date, archived_at) FROM STDIN"


def _pipe_copy(src, arch, copy_out: str) -> int:
    """COPY out of the source piped into COPY into the archive; rows copied."""
    rfd, wfd = os.pipe()
    reader = os.fdopen(rfd, "rb", buffering=1 << 16)
    writer = os.fdopen(wfd, "wb", buffering=1 << 16)
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with src.cursor() as cur:
                cur.copy_expert(copy_out, writer, size=1 << 16)
        except BaseException as exc:  # reported below
            failure.append(exc)
        finally:
            writer.close()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        with arch.cursor() as cur:
            cur.copy_expert(PG_COPY_IN, reader, size=1 << 16)
            copied = cur.rowcount
    finally:
        reader.close()
        producer.join()
    if failure:
        raise failure[0]
    return copied


def pg_copy(ds: Dataset, src_dsn: str, arch_dsn: str, cutoff: datetime, now: datetime) -> Timed:
    """PostgreSQL limit (see the module doc)."""
    import psycopg2

    src, arch = psycopg2.connect(src_dsn), psycopg2.connect(arch_dsn)
    try:
        params = {"now": now.isoformat(sep=" ") + "+00", "cutoff": cutoff.isoformat(sep=" ")}
        copies = [src.cursor().mogrify(_pg_copy_out(ds, t), params).decode() for t in ds.tables]
        t0 = time.perf_counter()
        for copy_out in copies:
            _pipe_copy(src, arch, copy_out)
        arch.commit()
        with src.cursor() as cur:
            for t in reversed(ds.tables):
                cur.execute(_pg_delete(ds, t), params)
        src.commit()
        return Timed(time.perf_counter() - t0)
    finally:
        src.close()
        arch.close()


# --- SQLite ---------------------------------------------------------------------

def sqlite_attach(ds: Dataset, src_path: str, arch_path: str, cutoff: datetime, now: datetime) -> Timed:
    """SQLite limit (see the module doc)."""
    con = sqlite3.connect(src_path, isolation_level=None)
    try:
        con.execute("PRAGMA busy_timeout = 30000")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        con.execute("ATTACH DATABASE ? AS arch", (arch_path,))
        con.execute("PRAGMA arch.journal_mode = WAL")
        con.execute("PRAGMA arch.synchronous = NORMAL")
        params = {"now": now.isoformat(sep=" "), "cutoff": cutoff.isoformat(sep=" ")}
        inserts, deletes = [], []
        for t in ds.tables:
            columns = [row[1] for row in con.execute(f'PRAGMA main.table_info("{t.name}")')]
            pairs = ", ".join(f"'{c}', r.\"{c}\"" for c in columns)
            row_date, rows = _old_rows(ds, t, ":cutoff", "main.")
            inserts.append(f"INSERT INTO arch.archived_rows (table_name, source_pk, payload, row_date, archived_at) "
                           f"SELECT '{t.name}', CAST(r.id AS TEXT), json_object({pairs}), {row_date}, :now {rows} "
                           "ORDER BY r.id")
            if t.parent is None:
                deletes.append(f"DELETE FROM main.{t.name} WHERE {DATE_COLUMN} < :cutoff")
            else:  # SQLite's DELETE takes no join
                deletes.append(f"DELETE FROM main.{t.name} WHERE {t.fk} IN "
                               f"(SELECT id FROM main.{_parent(ds, t).name} WHERE {DATE_COLUMN} < :cutoff)")
        t0 = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        for sql in inserts:
            con.execute(sql, params)
        for sql in reversed(deletes):
            con.execute(sql, params)
        con.execute("COMMIT")
        return Timed(time.perf_counter() - t0)
    finally:
        con.close()


# --- MariaDB limit -------------------------------------------------------------------

MARIADB_LIMIT_LABEL = "limit: INSERT…SELECT JSON_OBJECT + DELETE, one transaction"


def mariadb_insert_select(ds: Dataset, maria: MariaDb, src: str, arch: str, cutoff: datetime,
                          now: datetime) -> Timed:
    """MariaDB limit (see the module doc): ``src`` and ``arch`` are databases of one server."""
    c, at = cutoff.isoformat(sep=" "), now.isoformat(sep=" ")
    engine = sa.create_engine(maria.url.set(database=src), poolclass=sa.pool.NullPool)
    try:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            inserts, deletes = [], []
            for t in ds.tables:
                cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                            "AND table_name = %s ORDER BY ordinal_position", (src, t.name))
                pairs = ", ".join(f"'{row[0]}', r.`{row[0]}`" for row in cur.fetchall())
                row_date, rows = _old_rows(ds, t, f"'{c}'")
                inserts.append(f"INSERT INTO `{arch}`.archived_rows (table_name, source_pk, payload, row_date, "
                               f"archived_at) SELECT '{t.name}', CAST(r.id AS CHAR), JSON_OBJECT({pairs}), {row_date}, "
                               f"'{at}' {rows} ORDER BY r.id")
                deletes.append(f"DELETE FROM {t.name} WHERE {DATE_COLUMN} < '{c}'" if t.parent is None
                               else f"DELETE r {rows}")
            t0 = time.perf_counter()
            for sql in inserts + deletes[::-1]:
                cur.execute(sql)
            raw.commit()
            return Timed(time.perf_counter() - t0)
        finally:
            raw.close()
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return Timed(0.0, note=f"failed: {type(exc).__name__}: {str(exc)[:300]}")
    finally:
        engine.dispose()


# --- pt-archiver (MariaDB) -------------------------------------------------------

PT_OPTIONS = ("--limit", "1000", "--commit-each", "--bulk-insert", "--bulk-delete")
PT_LABEL = "pt-archiver --bulk-insert --bulk-delete --limit 1000 --commit-each"


def pt_dsn(maria: MariaDb, database: str, table: str) -> str:
    url = maria.url
    parts = [f"D={database}", f"t={table}", f"u={url.username or 'root'}"]
    if url.password:
        parts.append(f"p={url.password}")
    socket = url.query.get("unix_socket")
    if socket:
        parts += [f"S={socket}", "h=localhost"]
    else:
        parts += [f"h={url.host or '127.0.0.1'}", f"P={url.port or 3306}"]
    return ",".join(parts)


def pt_where(ds: Dataset, t: Table, cutoff: datetime) -> str:
    c = cutoff.isoformat(sep=" ")
    if t.parent is None:
        return f"{DATE_COLUMN} < '{c}'"
    return f"{t.fk} IN (SELECT id FROM {_parent(ds, t).name} WHERE {DATE_COLUMN} < '{c}')"


def pt_archiver(ds: Dataset, maria: MariaDb, src: str, arch: str, cutoff: datetime) -> Timed:
    """pt-archiver, one run per table, children first, into typed copies (``arch``.<table>)."""
    tool = shutil.which("pt-archiver")
    if tool is None:
        return Timed(0.0, note="n/a (pt-archiver not installed: apt-get install percona-toolkit)")
    # CREATE TABLE … LIKE keeps the indexes but not the foreign keys: plain typed copies.
    maria.execute(*(f"CREATE TABLE `{arch}`.{t.name} LIKE `{src}`.{t.name}" for t in ds.tables))
    seconds, peak = 0.0, 0
    for t in reversed(ds.tables):
        argv = [tool, "--source", pt_dsn(maria, src, t.name), "--dest", pt_dsn(maria, arch, t.name),
                "--where", pt_where(ds, t, cutoff), *PT_OPTIONS,
                "--statistics", "--no-check-charset", "--no-version-check"]
        child: Child = run(argv)
        if child.returncode != 0:
            return Timed(0.0, note=f"failed: pt-archiver on {t.name}: {child.tail()}")
        seconds += child.seconds
        peak = max(peak, child.peak_kb)
    return Timed(seconds, peak)
