"""The archive read path stays cheap without loosening security.

A listing request costs two SQL statements (the caller with its grants, then
the page); what the database says now — role, grants, active — still decides
every request, with a token issued before the change.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import Role, TablePermission, User
from archiver.services.archives import _utc
from tests.archive_helpers import BASE_TIME, archive_synthetic


@pytest.fixture
def statements(archive_engine):
    """Queries the app sends to the archive database (not the pool's ping nor SQLite's BEGIN)."""
    seen: list[str] = []

    def record(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    sa.event.listen(archive_engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(archive_engine, "before_cursor_execute", record)


def _user_row(app, username: str) -> User:
    with app.app_context():
        return db.session.execute(sa.select(User).where(User.username == username)).scalar_one()


def _set(app, username: str, **values) -> None:
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == username)).scalar_one()
        for key, value in values.items():
            setattr(user, key, value)
        db.session.commit()


def _set_grants(app, username: str, tables: list[str]) -> None:
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == username)).scalar_one()
        user.permissions = [TablePermission(table_name=t) for t in tables]
        db.session.commit()


def test_a_listing_page_is_two_statements(client, accounts, archive_engine, statements):
    archive_synthetic(archive_engine, "events", 5)
    admin = accounts.admin()
    user = accounts.user("ann", tables=["events", "other"])
    for headers in (admin, user):
        statements.clear()
        resp = client.get("/archives/events?limit=2", headers=headers)
        assert resp.status_code == 200
        assert len(resp.get_json()["items"]) == 2
        assert len(statements) == 2, statements  # caller + grants in one, then the page
        statements.clear()
        cursor = resp.get_json()["next_cursor"]
        resp = client.get("/archives/events", headers=headers, query_string={"limit": 2, "cursor": cursor})
        assert resp.status_code == 200 and len(resp.get_json()["items"]) == 2
        assert len(statements) == 2, statements


def test_pages_follow_the_cursor_in_both_orders_with_and_without_filters(client, accounts, archive_engine):
    ids = archive_synthetic(archive_engine, "events", 7, archived_at=BASE_TIME, step=timedelta(hours=1))
    archive_synthetic(archive_engine, "noise", 3, start=100)
    admin = accounts.admin()

    def walk(**query):
        seen, cursor = [], None
        while True:
            params = {"limit": 3, **query, **({"cursor": cursor} if cursor else {})}
            body = client.get("/archives/events", headers=admin, query_string=params).get_json()
            seen += [item["id"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return seen

    assert walk() == sorted(ids, reverse=True)
    assert walk(order="asc") == sorted(ids)
    since = (BASE_TIME + timedelta(hours=4)).isoformat()
    assert walk(archived_from=since) == sorted(ids[4:], reverse=True)
    assert walk(archived_from=since, order="asc") == sorted(ids[4:])
    # a filtered listing leaves nothing behind for the next unfiltered one
    assert walk() == sorted(ids, reverse=True)


def test_revoked_grant_bites_at_once_with_the_old_token(app, client, accounts, archive_engine):
    archive_synthetic(archive_engine, "events", 2)
    user = accounts.user("ann", tables=["events"])
    assert client.get("/archives/events", headers=user).status_code == 200
    _set_grants(app, "ann", [])
    resp = client.get("/archives/events", headers=user)
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "forbidden"
    # a grant added after the token was issued is not honoured either (the token must carry it too)
    _set_grants(app, "ann", ["events", "later"])
    assert client.get("/archives/events", headers=user).status_code == 200
    assert client.get("/archives/later", headers=user).status_code == 403


def test_deactivated_user_is_locked_out_at_once(app, client, accounts, archive_engine):
    archive_synthetic(archive_engine, "events", 2)
    user = accounts.user("ann", tables=["events"])
    admin = accounts.admin()
    assert client.get("/archives/events", headers=user).status_code == 200
    assert client.get("/archives/events", headers=admin).status_code == 200
    _set(app, "ann", active=False)
    _set(app, "admin", active=False)
    for headers in (user, admin):
        resp = client.get("/archives/events", headers=headers)
        assert resp.status_code == 401
        assert resp.get_json()["error"]["code"] == "user_inactive"


def test_demoted_admin_is_a_user_at_once(app, client, accounts, archive_engine):
    archive_synthetic(archive_engine, "events", 2)
    admin = accounts.admin()
    assert client.get("/archives/nothing-here", headers=admin).status_code == 404
    assert client.get("/archives/events", headers=admin).status_code == 200
    _set(app, "admin", role=Role.USER.value)
    for path in ("/archives/events", "/archives/nothing-here"):
        resp = client.get(path, headers=admin)
        assert resp.status_code == 403, path
    assert client.get("/archives/", headers=admin).get_json()["items"] == []


def test_unknown_empty_and_known_tables(client, accounts, archive_engine, app):
    archive_synthetic(archive_engine, "events", 1)
    admin = accounts.admin()
    user = accounts.user("ann", tables=["events", "ghost"])
    # unknown table: 404 for an admin, 403 for a user without the grant, empty page for a granted user
    assert client.get("/archives/ghost", headers=admin).status_code == 404
    assert client.get("/archives/secret", headers=user).status_code == 403
    body = client.get("/archives/ghost", headers=user).get_json()
    assert body == {"items": [], "next_cursor": None}
    # known through a policy only: an empty page for the admin too
    with app.app_context():
        from archiver.models import ArchivePolicy
        db.session.add(ArchivePolicy(table_name="ghost", date_column="created_at", archive_after_days=30,
                                     delete_after_days=365, updated_by="test"))
        db.session.commit()
    assert client.get("/archives/ghost", headers=admin).get_json() == {"items": [], "next_cursor": None}


def test_me_reads_the_stored_account(app, client, accounts):
    user = accounts.user("ann", tables=["b", "a"])
    body = client.get("/auth/me", headers=user).get_json()
    assert body["username"] == "ann" and body["role"] == "user" and body["active"] is True
    assert body["permissions"] == ["a", "b"]
    row = _user_row(app, "ann")
    assert body["id"] == row.id
    assert datetime.fromisoformat(body["created_at"]) is not None
    _set_grants(app, "ann", ["c"])
    assert client.get("/auth/me", headers=user).get_json()["permissions"] == ["c"]


def test_utc_normalisation():
    naive = datetime(2024, 5, 1, 12, 30)
    aware = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    utc = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    assert _utc(None) is None
    assert _utc(utc) is utc
    assert _utc(naive) == utc and _utc(naive).tzinfo is timezone.utc
    assert _utc(aware) == utc and _utc(aware).tzinfo is timezone.utc


def test_an_audited_page_is_one_transaction_where_the_database_allows(client, accounts, archive_engine):
    """The caller, the page and its audit record share one transaction and one pooled connection
    (PostgreSQL, MariaDB); SQLite ends its read snapshot before the record (two)."""
    archive_synthetic(archive_engine, "events", 3)
    admin = accounts.admin()
    seen: list[str] = []

    def checkout(*_args):
        seen.append("checkout")

    def commit(*_args):
        seen.append("commit")

    sa.event.listen(archive_engine, "checkout", checkout)
    sa.event.listen(archive_engine, "commit", commit)
    try:
        resp = client.get("/archives/events?limit=2", headers=admin)
    finally:
        sa.event.remove(archive_engine, "checkout", checkout)
        sa.event.remove(archive_engine, "commit", commit)
    assert resp.status_code == 200 and len(resp.get_json()["items"]) == 2
    once = ["checkout", "commit"]
    assert seen == (once * 2 if archive_engine.dialect.name == "sqlite" else once)
    with archive_engine.connect() as conn:
        recorded = conn.execute(sa.text("SELECT action, target FROM audit_events "
                                        "WHERE action = 'archive.list'")).all()
    assert [tuple(r) for r in recorded] == [("archive.list", "events")]


def test_a_listing_page_is_byte_for_byte_the_stored_payload_text(client, accounts, archive_engine):
    """The page is compact JSON with the keys in a fixed order, UTC times with their offset, and
    each row's payload exactly as the archive stores it (its JSON text, never parsed and re-encoded):
    on every backend."""
    from archiver.engine.schema import archived_rows
    from tests.archive_helpers import synthetic_rows

    ids = archive_synthetic(archive_engine, "events", 3)
    rows = {r["id"]: r for r in synthetic_rows(3)}
    c = archived_rows.c
    with archive_engine.connect() as conn:
        stored = dict(conn.execute(sa.select(c.id, sa.cast(c.payload, sa.Text)).where(c.id.in_(ids))).all())
    resp = client.get("/archives/events?limit=2", headers=accounts.admin())
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    cursor = resp.get_json()["next_cursor"]
    assert isinstance(cursor, str)
    items = []
    for archive_id, source_id in zip(ids[::-1][:2], (3, 2)):
        row_date = datetime.fromisoformat(rows[source_id]["created_at"]).isoformat()
        assert row_date.endswith("+00:00")
        items.append(f'{{"id":{archive_id},"source_pk":"{source_id}","row_date":"{row_date}",'
                     f'"archived_at":"2024-01-01T00:00:00+00:00","payload":{stored[archive_id]}}}')
        assert json.loads(stored[archive_id]) == json.loads(json.dumps(rows[source_id]))
    expected = '{"items":[' + ",".join(items) + f'],"next_cursor":"{cursor}"}}'
    assert resp.get_data(as_text=True) == expected
