"""One runner per table: an expiring lease row in the archive database.

``table_leases`` has one row per (table_name, kind). Taking the lease is one
atomic statement: insert the row, or take it over only when it has expired or
is already ours (``INSERT .. ON CONFLICT DO UPDATE .. WHERE expires_at < now OR
holder = me`` on PostgreSQL/SQLite, ``ON DUPLICATE KEY UPDATE`` with the same
condition on MySQL); reading the holder back in the same transaction says
whether we got it. The holder renews it between batches; a killed holder
blocks others for at most the TTL.
"""
from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from .errors import LeaseLost
from .policy import utcnow
from .schema import table_leases

DEFAULT_TTL_SECONDS = 600


def new_holder_id() -> str:
    """A holder id unique to this process and call: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"[:255]


class TableLease:
    """The lease on one (table, kind) for one holder.

    ``acquire()`` returns whether we hold it; ``renew()`` extends it or raises
    :class:`LeaseLost`; ``renew_if_due()`` renews once a third of the TTL has
    passed (cheap to call between batches); ``release()`` gives it up.
    """

    def __init__(self, archive: sa.Engine, table_name: str, *, kind: str = "archive", holder: str | None = None,
                 ttl_seconds: int = DEFAULT_TTL_SECONDS, clock: Callable[[], datetime] = utcnow) -> None:
        self.archive = archive
        self.table_name = table_name
        self.kind = kind
        self.holder = holder or new_holder_id()
        self.ttl = timedelta(seconds=ttl_seconds)
        self.clock = clock
        self.held = False
        self._renewed_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.table_name}"

    def _dt(self, value: datetime) -> datetime:
        value = value.astimezone(timezone.utc)
        if self.archive.dialect.name in ("mysql", "mariadb"):
            return value.replace(tzinfo=None)
        return value

    def _key(self) -> sa.ColumnElement[bool]:
        t = table_leases.c
        return sa.and_(t.table_name == self.table_name, t.kind == self.kind)

    def _upsert(self, now: datetime) -> sa.Executable:
        t = table_leases
        values = {"table_name": self.table_name, "kind": self.kind, "holder": self.holder,
                  "acquired_at": self._dt(now), "expires_at": self._dt(now + self.ttl)}
        free = sa.or_(t.c.expires_at < self._dt(now), t.c.holder == self.holder)
        name = self.archive.dialect.name
        if name in ("postgresql", "sqlite"):
            insert = (pg_dialect.insert if name == "postgresql" else sqlite_dialect.insert)(t).values(**values)
            ex = insert.excluded
            return insert.on_conflict_do_update(
                index_elements=[t.c.table_name, t.c.kind],
                set_={"holder": ex.holder, "acquired_at": ex.acquired_at, "expires_at": ex.expires_at},
                where=free)
        if name in ("mysql", "mariadb"):
            insert = mysql_dialect.insert(t).values(**values)
            ins = insert.inserted
            mine = t.c.holder == self.holder
            # MySQL applies the assignments left to right: decide the holder first,
            # then move the times only if the holder is now us.
            return insert.on_duplicate_key_update([
                ("holder", sa.case((free, ins.holder), else_=t.c.holder)),
                ("acquired_at", sa.case((mine, ins.acquired_at), else_=t.c.acquired_at)),
                ("expires_at", sa.case((mine, ins.expires_at), else_=t.c.expires_at)),
            ])
        raise NotImplementedError(f"leases are not implemented for {name!r}")  # pragma: no cover

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours; True when held."""
        now = self.clock()
        with self.archive.begin() as conn:
            conn.execute(self._upsert(now))
            holder = conn.execute(sa.select(table_leases.c.holder).where(self._key())).scalar_one_or_none()
        self.held = holder == self.holder
        if self.held:
            self._renewed_at = now
        return self.held

    def renew(self) -> None:
        """Push the expiry to now + TTL; raises LeaseLost if another runner took it."""
        now = self.clock()
        with self.archive.begin() as conn:
            n = conn.execute(sa.update(table_leases).where(self._key(), table_leases.c.holder == self.holder)
                             .values(expires_at=self._dt(now + self.ttl))).rowcount
        if n != 1:
            self.held = False
            raise LeaseLost(self.name)
        self._renewed_at = now

    def renew_if_due(self) -> None:
        """Renew when a third of the TTL has passed since the last renewal."""
        if self._renewed_at is None or self.clock() - self._renewed_at >= self.ttl / 3:
            self.renew()

    def release(self) -> None:
        """Give the lease up (only if still ours)."""
        with self.archive.begin() as conn:
            conn.execute(sa.delete(table_leases).where(self._key(), table_leases.c.holder == self.holder))
        self.held = False

    def current_holder(self) -> str | None:
        """Who holds the lease row now (expired or not), or None."""
        with self.archive.connect() as conn:
            return conn.execute(sa.select(table_leases.c.holder).where(self._key())).scalar_one_or_none()
