"""The audit trail: who did what, when and from where (``audit_events``, append-only).

Services record an event in the same transaction as the change it describes (a user, grant or
policy change and its record commit together, or neither does). Reads of archived data are
recorded before the data leaves: a listing or a row is returned only once its record is
committed; an export is recorded before its first byte and its row count is filled in when the
stream ends. Nothing in the API updates or deletes events; ``prune`` removes those older than
``AUDIT_RETENTION_DAYS``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator, Mapping

import sqlalchemy as sa
from flask import current_app

from ..engine.connections import relax_commit, stale_snapshot_writes
from ..extensions import db
from .source_db import end_read_transaction
from ..models import AuditEvent
from ..models._types import utcnow

log = logging.getLogger(__name__)

_T = AuditEvent.__table__
_C = _T.c
_INSERT = sa.insert(_T)  # built once (immutable): one audit record per audited read

# --- what is recorded ------------------------------------------------------------

LOGIN = "auth.login"                    # outcome success | failure (details.username, details.reason)
LOGOUT = "auth.logout"
TOKEN_REUSE = "auth.token_reuse"        # a rotated-out refresh token came back: its family is revoked
PASSWORD_CHANGE = "auth.password_change"  # outcome success | failure
SIGNUP = "auth.signup"
USER_CREATE = "user.create"
USER_UPDATE = "user.update"             # role / active, before and after
USER_PERMISSIONS = "user.permissions"   # table grants, before and after
USER_PASSWORD_RESET = "user.password_reset"  # create-admin on an existing admin
POLICY_CREATE = "policy.create"
POLICY_UPDATE = "policy.update"         # before and after
POLICY_DELETE = "policy.delete"
RUN_START = "run.start"
RUN_CANCEL = "run.cancel"
ARCHIVE_LIST = "archive.list"           # table, filters, rows returned
ARCHIVE_READ = "archive.read"           # table, row id
ARCHIVE_EXPORT = "archive.export"       # table, filters, format, rows sent
ARCHIVE_RESTORE = "archive.restore"     # table, selection, result
AUDIT_EXPORT = "audit.export"

ACTIONS = (LOGIN, LOGOUT, TOKEN_REUSE, PASSWORD_CHANGE, SIGNUP, USER_CREATE, USER_UPDATE, USER_PERMISSIONS,
           USER_PASSWORD_RESET, POLICY_CREATE, POLICY_UPDATE, POLICY_DELETE, RUN_START, RUN_CANCEL, ARCHIVE_LIST,
           ARCHIVE_READ, ARCHIVE_EXPORT, ARCHIVE_RESTORE, AUDIT_EXPORT)
OUTCOMES = ("success", "failure")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a user (id and username) and the client address, or a named system actor."""

    id: int | None
    username: str | None
    address: str | None = None

    @classmethod
    def system(cls, name: str) -> "Actor":
        """``cli``, ``scheduler``, ``system`` (direct service calls)."""
        return cls(None, name, None)

    @classmethod
    def anonymous(cls, address: str | None) -> "Actor":
        return cls(None, None, address)


SYSTEM = Actor.system("system")
CLI = Actor.system("cli")


def user_target(user_id: int) -> str:
    return f"user:{user_id}"


def _jsonable(value: Any) -> Any:
    """Details as plain JSON (datetimes as ISO text), bounded in size."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
        return [_jsonable(v) for v in items[:1000]]
    if isinstance(value, str):
        return value[:2000]
    return value


def _row(action: str, actor: Actor, *, target: str | None, details: Mapping[str, Any] | None,
         outcome: str) -> dict[str, Any]:
    return {"at": utcnow(), "action": action, "outcome": outcome, "actor_id": actor.id,
            "actor": (actor.username or None) and actor.username[:64], "address": actor.address and actor.address[:64],
            "target": target and target[:255], "details": _jsonable(details) if details is not None else None}


def record(action: str, actor: Actor, *, target: str | None = None, details: Mapping[str, Any] | None = None,
           outcome: str = "success") -> None:
    """Add one event to the session's transaction; the caller commits it with its change."""
    db.session.execute(_INSERT, [_row(action, actor, target=target, details=details, outcome=outcome)])


def record_now(action: str, actor: Actor, *, target: str | None = None, details: Mapping[str, Any] | None = None,
               outcome: str = "success", read: bool = False) -> None:
    """Record one event and commit at once (events that go with no other change).

    ``read``: a record of a read of archived data, the one event on the hot read path. Unless
    ``AUDIT_SYNC_READS``, its commit on PostgreSQL does not wait for the WAL flush
    (``synchronous_commit = off`` for that transaction only): it is committed and visible at
    once, but a crash of the database server (not of the service) within a fraction of a second
    could lose it. That flush is the whole cost of auditing a read (README "Security").
    """
    session = db.session()
    if not stale_snapshot_writes(session.get_bind()):
        end_read_transaction()  # the reads before it are done (SQLite: a snapshot cannot then write)
    # Elsewhere the record joins the transaction that read (reads there take no lock a write could
    # trip on): one commit, and one pooled connection (one checkout, one ping) per audited read.
    # Core statements on the session's connection (same transaction as session.execute, without the
    # ORM's per-statement work: this runs on every read).
    conn = session.connection()
    conn.execute(_INSERT, _row(action, actor, target=target, details=details, outcome=outcome))
    if read:
        _relax_commit(conn)
    session.commit()


def _relax_commit(conn: sa.Connection | None = None) -> None:
    """Unless AUDIT_SYNC_READS, the commit of a read's record does not wait for durable storage
    (``Backend.relax_commit``: ``synchronous_commit`` off for the transaction on PostgreSQL)."""
    if current_app.config["AUDIT_SYNC_READS"]:
        return
    relax_commit(conn if conn is not None else db.session.connection())


def record_started(action: str, actor: Actor, *, target: str | None = None,
                   details: Mapping[str, Any] | None = None) -> int:
    """Record an event whose outcome comes later (an export); commits and returns its id."""
    end_read_transaction()
    event = AuditEvent(**_row(action, actor, target=target, details=details, outcome="success"))
    db.session.add(event)
    db.session.flush()  # the id (no RETURNING: MySQL has none)
    event_id = event.id
    _relax_commit()  # only exports use this: a read
    db.session.commit()
    return event_id


def complete(engine: sa.Engine, event_id: int, details: Mapping[str, Any], *, outcome: str = "success") -> None:
    """Fill in the outcome of an event recorded by :func:`record_started` (its own short transaction,
    so it works after the request's session is gone, e.g. at the end of a streamed export)."""
    with engine.begin() as conn:
        conn.execute(sa.update(_T).where(_C.id == event_id).values(details=_jsonable(details), outcome=outcome))


# --- runs (started and cancelled over the API) --------------------------------------

def record_run_started(actor: Actor, run_id: int, kind: str, table_name: str, *,
                       options: Mapping[str, Any] | None = None) -> None:
    """A run started on someone's request (``POST /runs``); committed at once."""
    record_now(RUN_START, actor, target=table_name,
               details={"run_id": run_id, "kind": kind, **({"options": dict(options)} if options else {})})


def record_run_cancelled(actor: Actor, run_id: int, kind: str, table_name: str) -> None:
    """A run cancelled on someone's request (``POST /runs/{id}/cancel``); committed at once."""
    record_now(RUN_CANCEL, actor, target=table_name, details={"run_id": run_id, "kind": kind})


# --- reading the trail ------------------------------------------------------------------

MAX_PAGE_SIZE = 500
EXPORT_CHUNK = 2000


@dataclass(frozen=True)
class AuditFilters:
    action: str | None = None       # exact, or a prefix ending in "." ("auth.")
    outcome: str | None = None
    actor: str | None = None        # username
    actor_id: int | None = None
    target: str | None = None
    at_from: datetime | None = None  # inclusive
    at_to: datetime | None = None    # exclusive

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "AuditFilters":
        data = data or {}
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        out: list[sa.ColumnElement[bool]] = []
        if self.action:
            if self.action.endswith("."):
                out.append(_C.action.startswith(self.action, autoescape=True))
            else:
                out.append(_C.action == self.action)
        if self.outcome:
            out.append(_C.outcome == self.outcome)
        if self.actor:
            out.append(_C.actor == self.actor)
        if self.actor_id is not None:
            out.append(_C.actor_id == self.actor_id)
        if self.target:
            out.append(_C.target == self.target)
        if self.at_from is not None:
            out.append(_C.at >= self.at_from)
        if self.at_to is not None:
            out.append(_C.at < self.at_to)
        return out

    def as_details(self) -> dict[str, Any]:
        return {k: v for k, v in ((k, getattr(self, k)) for k in self.__dataclass_fields__) if v is not None}


def _columns() -> tuple[Any, ...]:
    return (_C.id, _C.at, _C.action, _C.outcome, _C.actor_id, _C.actor, _C.address, _C.target, _C.details)


def list_events(filters: AuditFilters, *, limit: int = 100,
                before_id: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Events newest first, filtered; keyset pages by ``before_id``. Returns the page and the next
    page's ``before_id`` (None on the last page)."""
    limit = max(1, min(int(limit), MAX_PAGE_SIZE))
    stmt = sa.select(*_columns()).where(*filters.clauses())
    if before_id is not None:
        stmt = stmt.where(_C.id < before_id)
    rows = db.session.execute(stmt.order_by(_C.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [event_dict(r) for r in rows], (rows[-1].id if more else None)


def event_dict(row: sa.Row) -> dict[str, Any]:
    at = row.at
    if at is not None and at.tzinfo is None:  # SQLite hands back naive UTC
        at = at.replace(tzinfo=timezone.utc)
    return {"id": row.id, "at": at, "action": row.action, "outcome": row.outcome, "actor_id": row.actor_id,
            "actor": row.actor, "address": row.address, "target": row.target, "details": row.details}


def iter_events(engine: sa.Engine, filters: AuditFilters) -> Iterator[list[dict[str, Any]]]:
    """Every matching event, oldest first, in keyset chunks each read in its own short query."""
    base = sa.select(*_columns()).where(*filters.clauses()).order_by(_C.id.asc()).limit(EXPORT_CHUNK)
    last_id = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(base.where(_C.id > last_id)).all()
        if not rows:
            return
        yield [event_dict(r) for r in rows]
        if len(rows) < EXPORT_CHUNK:
            return
        last_id = rows[-1].id


# --- retention ------------------------------------------------------------------------

def prune(now: datetime | None = None, *, batch: int = 5000) -> int:
    """Delete events older than ``AUDIT_RETENTION_DAYS`` (0 keeps everything), in bounded batches.
    Returns how many were deleted."""
    days = current_app.config["AUDIT_RETENTION_DAYS"]
    if not days:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=days)
    total = 0
    while True:
        ids = [r[0] for r in db.session.execute(
            sa.select(_C.id).where(_C.at < cutoff).order_by(_C.id).limit(batch)).all()]
        if not ids:
            break
        db.session.execute(sa.delete(_T).where(_C.id.in_(ids)))
        db.session.commit()
        total += len(ids)
        if len(ids) < batch:
            break
    db.session.commit()
    if total:
        log.info("audit retention: deleted %d event(s) older than %s", total, cutoff.isoformat())
    return total
