"""One runner per table: an expiring lease row in the archive database.

``table_leases`` has one row per (table_name, kind). Taking the lease is one
atomic statement (the archive backend's :meth:`~.backends.base.ArchiveOps.lease_upsert`):
insert the row, or take it over only when it has expired or is already ours;
reading the holder back in the same transaction says whether we got it. The holder renews it between batches; a killed holder
blocks others for at most the TTL.
"""
from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable

import sqlalchemy as sa

from .backends import archive_ops_for
from .errors import LeaseLost
from .policy import utcnow
from .schema import table_leases


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
                 ttl_seconds: int, clock: Callable[[], datetime] = utcnow) -> None:
        self.archive = archive
        self.table_name = table_name
        self.kind = kind
        self.holder = holder or new_holder_id()
        self.ttl = timedelta(seconds=ttl_seconds)
        self.clock = clock
        self.held = False
        self._renewed_at: datetime | None = None
        self._ops = archive_ops_for(archive)

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.table_name}"

    def _dt(self, value: datetime) -> datetime:
        return self._ops.datetime_param(value.astimezone(timezone.utc))

    def _key(self) -> sa.ColumnElement[bool]:
        t = table_leases.c
        return sa.and_(t.table_name == self.table_name, t.kind == self.kind)

    def _upsert(self, now: datetime) -> sa.Executable:
        t = table_leases
        values = {"table_name": self.table_name, "kind": self.kind, "holder": self.holder,
                  "acquired_at": self._dt(now), "expires_at": self._dt(now + self.ttl)}
        return self._ops.lease_upsert(values, sa.or_(t.c.expires_at < self._dt(now), t.c.holder == self.holder))

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
