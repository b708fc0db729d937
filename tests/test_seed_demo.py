"""flask seed-demo: demo tables, users and policies; safe to run twice; SQLite and PostgreSQL."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import ArchivePolicy, User
from archiver.services.passwords import check_password

PASSWORD_LINE = re.compile(r"^\s+(\w+)\s+role=(\w+)\s.*password: (\S+)$", re.M)


def counts(source_engine) -> dict[str, int]:
    with source_engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                for t in ("orders", "events", "audit_log")}


def test_seed_demo_twice(app, runner, client, source_engine):
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    passwords = {m.group(1): m.group(3) for m in PASSWORD_LINE.finditer(first.output)}
    assert set(passwords) == {"admin", "analyst"}, first.output
    assert "not created" not in first.output

    after_first = counts(source_engine)
    assert after_first == {"orders": 1200, "events": 1600, "audit_log": 800}

    insp = sa.inspect(source_engine)
    assert insp.get_pk_constraint("audit_log")["constrained_columns"] == ["region", "id"]
    assert insp.get_pk_constraint("orders")["constrained_columns"] == ["id"]

    # Rows spread over the past 400 days: the oldest is ~400 days old, the newest recent,
    # and most are older than the 30-day archive cut-off.
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with source_engine.connect() as conn:
        oldest, newest = conn.execute(sa.text("SELECT MIN(created_at), MAX(created_at) FROM orders")).one()
    if isinstance(oldest, str):  # SQLite returns text from a raw query
        oldest, newest = datetime.fromisoformat(oldest), datetime.fromisoformat(newest)
    assert timedelta(days=398) < now - oldest < timedelta(days=401)
    assert now - newest < timedelta(days=2)

    with app.app_context():
        users = {u.username: u for u in db.session.execute(sa.select(User)).scalars()}
        assert users["admin"].role == "admin" and users["analyst"].role == "user"
        assert users["analyst"].table_names == ["orders"]
        assert check_password(passwords["admin"], users["admin"].password_hash)
        policies = {p.table_name: p for p in db.session.execute(sa.select(ArchivePolicy)).scalars()}
        assert set(policies) == {"orders", "events", "audit_log"}
        assert all(p.archive_after_days == 30 and p.delete_after_days == 365 and p.enabled
                   for p in policies.values())

    # The printed credentials work against the API.
    resp = client.post("/auth/login", json={"username": "analyst", "password": passwords["analyst"]})
    assert resp.status_code == 200, resp.get_json()
    token = resp.get_json()["access_token"]
    assert client.get("/config/orders", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/config/events", headers={"Authorization": f"Bearer {token}"}).status_code == 403

    second = runner.invoke(args=["seed-demo"])
    assert second.exit_code == 0, second.output
    assert "password:" not in second.output
    assert second.output.count("password was set on the first run") == 2
    assert counts(source_engine) == after_first
    with app.app_context():
        assert db.session.query(User).count() == 2
        assert db.session.query(ArchivePolicy).count() == 3
        admin = db.session.execute(sa.select(User).where(User.username == "admin")).scalar_one()
        assert check_password(passwords["admin"], admin.password_hash)


def test_seed_demo_leaves_a_foreign_table_of_the_same_name_alone(app, runner, source_engine):
    with source_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (order_no INTEGER PRIMARY KEY, note VARCHAR(10))"))
        conn.execute(sa.text("INSERT INTO orders (order_no, note) VALUES (1, 'mine')"))
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    assert "exists with other columns" in result.output
    with source_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT order_no, note FROM orders")).all() == [(1, "mine")]
    assert "orders     not created: date_column" in result.output
    with app.app_context():
        assert {p.table_name for p in db.session.execute(sa.select(ArchivePolicy)).scalars()} == {"events", "audit_log"}
