"""Demo data: three tables with old rows in the SOURCE database, two users, a policy per table.

This is the one place the service writes DDL into the source database. It is
safe to run again: an existing table is never altered and only filled when it
is empty and has the demo columns; existing users and policies are kept.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import Role, TablePermission, User
from . import policies, source_db
from .passwords import hash_password

SPREAD_DAYS = 400
ARCHIVE_AFTER_DAYS = 30
DELETE_AFTER_DAYS = 365
ADMIN_USERNAME = "admin"
ANALYST_USERNAME = "analyst"
ANALYST_TABLE = "orders"

metadata = sa.MetaData()
ORDERS = sa.Table(
    "orders", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer", sa.String(100), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
)
EVENTS = sa.Table(
    "events", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("payload", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
AUDIT_LOG = sa.Table(
    "audit_log", metadata,
    sa.Column("region", sa.String(16), primary_key=True),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
ROW_COUNTS = {"orders": 1200, "events": 1600, "audit_log": 800}

_CUSTOMERS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"]
_STATUSES = ["new", "paid", "shipped", "closed", "cancelled"]
_KINDS = ["login", "logout", "click", "purchase", "error"]
_REGIONS = ["eu", "us", "apac", "latam"]
_ACTIONS = ["create", "update", "delete", "grant", "revoke"]


@dataclass
class TableResult:
    name: str
    created: bool
    inserted: int
    total: int
    note: str = ""


@dataclass
class UserResult:
    username: str
    role: str
    tables: list[str]
    password: str | None  # only when created by this run


@dataclass
class DemoResult:
    tables: list[TableResult] = field(default_factory=list)
    users: list[UserResult] = field(default_factory=list)
    policies_created: list[str] = field(default_factory=list)
    policies_kept: list[str] = field(default_factory=list)
    policy_errors: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def _created_at(i: int, n: int, now: datetime) -> datetime:
    """Row ``i`` of ``n``: evenly spread over the past SPREAD_DAYS days, oldest first."""
    age = timedelta(days=SPREAD_DAYS) * (n - i - 0.5) / n
    return (now - age).replace(microsecond=0)


def _rows(table: sa.Table, n: int, now: datetime) -> list[dict]:
    naive = now.replace(tzinfo=None)
    if table is ORDERS:
        return [{"id": i + 1, "customer": _CUSTOMERS[i % len(_CUSTOMERS)], "status": _STATUSES[i % len(_STATUSES)],
                 "amount": Decimal(f"{(i * 37) % 100000 / 100:.2f}"), "created_at": _created_at(i, n, naive)}
                for i in range(n)]
    if table is EVENTS:
        return [{"id": 10_000_000_000 + i, "kind": _KINDS[i % len(_KINDS)],
                 "payload": f'{{"seq": {i}, "source": "demo"}}', "created_at": _created_at(i, n, now)}
                for i in range(n)]
    return [{"region": _REGIONS[i % len(_REGIONS)], "id": i // len(_REGIONS) + 1,
             "actor": f"user{i % 17}", "action": _ACTIONS[i % len(_ACTIONS)], "created_at": _created_at(i, n, now)}
            for i in range(n)]


def _seed_table(engine: sa.Engine, table: sa.Table, now: datetime) -> TableResult:
    existing = set(sa.inspect(engine).get_table_names())
    created = table.name not in existing
    if created:
        table.create(engine)
    else:
        columns = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
        if columns != set(table.c.keys()):
            with engine.connect() as conn:
                total = conn.execute(sa.select(sa.func.count()).select_from(sa.table(table.name))).scalar_one()
            return TableResult(table.name, False, 0, total, "exists with other columns; left alone")
    with engine.begin() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        if total:
            return TableResult(table.name, created, 0, total, "already has rows; left alone")
        rows = _rows(table, ROW_COUNTS[table.name], now)
        conn.execute(table.insert(), rows)
    return TableResult(table.name, created, len(rows), len(rows))


def _ensure_user(username: str, role: str, tables: list[str]) -> UserResult:
    user = db.session.execute(sa.select(User).where(User.username == username)).scalar_one_or_none()
    if user is not None:
        return UserResult(user.username, user.role, user.table_names, None)
    password = secrets.token_urlsafe(12)
    user = User(username=username, role=role, active=True,
                password_hash=hash_password(password, current_app.config["BCRYPT_ROUNDS"]))
    user.permissions = [TablePermission(table_name=t) for t in tables]
    db.session.add(user)
    db.session.commit()
    return UserResult(username, role, list(tables), password)


def seed_demo(now: datetime | None = None) -> DemoResult:
    """Create and fill the demo tables, the demo users and their policies (idempotent)."""
    now = now or datetime.now(timezone.utc)
    engine = source_db.source_engine()
    result = DemoResult()
    for table in (ORDERS, EVENTS, AUDIT_LOG):
        result.tables.append(_seed_table(engine, table, now))
    result.users.append(_ensure_user(ADMIN_USERNAME, Role.ADMIN.value, []))
    result.users.append(_ensure_user(ANALYST_USERNAME, Role.USER.value, [ANALYST_TABLE]))
    for table in (ORDERS, EVENTS, AUDIT_LOG):
        if policies.get_policy(table.name) is not None:
            result.policies_kept.append(table.name)
            continue
        data = {"table_name": table.name, "date_column": "created_at",
                "archive_after_days": ARCHIVE_AFTER_DAYS, "delete_after_days": DELETE_AFTER_DAYS}
        errors = policies.validate_policy(data)
        if errors:
            result.policy_errors[table.name] = errors
            continue
        policies.create_or_update(data, updated_by="seed-demo")
        result.policies_created.append(table.name)
    return result


@dataclass
class FirstRun:
    """What ``first-run`` found and did in the archive database it serves."""

    seeded: DemoResult | None = None          # demo data made (an empty archive database, --demo)
    created_admin: UserResult | None = None   # an admin made (no active admin there)
    admins: list[str] = field(default_factory=list)  # the active admins there now


def first_run(demo: bool = False, admin_username: str = ADMIN_USERNAME) -> FirstRun:
    """Make sure the archive database this app serves can be signed in to.

    ``demo`` and no user at all: seed the demo (tables, users, policies; passwords returned once).
    Otherwise, when no active admin exists: create ``admin_username`` (a random password, returned
    once). Idempotent: with an active admin, nothing changes.
    """
    result = FirstRun()
    if demo and db.session.execute(sa.select(sa.func.count(User.id))).scalar() == 0:
        result.seeded = seed_demo()
    admins = list(db.session.execute(sa.select(User.username).where(
        User.role == Role.ADMIN.value, User.active.is_(True)).order_by(User.id)).scalars())
    if not admins:
        existing = db.session.execute(sa.select(User).where(User.username == admin_username)).scalar_one_or_none()
        if existing is not None:  # the name is taken by a non-admin or a deactivated admin: pick another
            admin_username = f"{admin_username}-{secrets.token_hex(3)}"
        result.created_admin = _ensure_user(admin_username, Role.ADMIN.value, [])
        admins = [admin_username]
    result.admins = admins
    return result
