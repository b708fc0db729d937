"""User accounts: create, list, change role/active flag, table grants, admin bootstrap.

Every function commits its own transaction and raises domain errors
(``archiver.errors``): ``InvalidInput`` for input the caller can fix,
``NotFound`` for unknown users and ``Conflict`` for clashes. Each change is audited in the same
transaction (``actor`` says who made it), and a change that should end a user's sessions (role
change, deactivation, password reset) bumps the user's token version in it too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, InvalidInput, NotFound
from ..extensions import db
from ..models import Role, TablePermission, User
from . import audit, tokens
from .audit import Actor
from .passwords import bcrypt_slot, check_password, hash_password, password_problem
from .tables import unknown_tables

USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,64}")
USERNAME_RULE = "Username must be 3-64 characters of letters, digits, '_', '.' or '-'"
# A table name: an SQL identifier, optionally schema-qualified (``schema.table``).
TABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?")
TABLE_NAME_MAX = 255
ROLES = (Role.ADMIN.value, Role.USER.value)


# --- validation -------------------------------------------------------------

def username_problem(username: str) -> str | None:
    """Why ``username`` is not acceptable, or None if it is."""
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        return USERNAME_RULE
    return None


def table_name_problem(name: str) -> str | None:
    """Why ``name`` is not a grantable table name, or None if it is."""
    if not isinstance(name, str) or not name:
        return "Table name must be a non-empty string"
    if len(name) > TABLE_NAME_MAX:
        return f"Table name must be at most {TABLE_NAME_MAX} characters"
    if not TABLE_NAME_RE.fullmatch(name):
        return "Table name must be an identifier (letters, digits, '_', '$'; optionally schema.table)"
    return None


def clean_table_names(names: Iterable[str], keep: Iterable[str] = ()) -> list[str]:
    """Validated, de-duplicated, sorted names of existing tables (InvalidInput naming the bad
    entries). A table exists when it is a source table, has a policy or has archived rows
    (:mod:`.tables`); names in ``keep`` (grants the user already holds) need not exist any more."""
    names = list(names)
    problems = {str(i): [p] for i, n in enumerate(names) if (p := table_name_problem(n))}
    if problems:
        raise InvalidInput(details={"permissions": problems})
    wanted = sorted(set(names))
    missing = unknown_tables(set(wanted) - set(keep))
    if missing:
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        raise InvalidInput(f"No such table: {shown}",
                           {"permissions": {str(names.index(n)): [f"No such table: {n} (not in the source "
                                                                  "database, no policy, nothing archived)"]
                                            for n in missing[:100]}},
                           code="unknown_table")
    return wanted


def require_valid_username(username: str) -> None:
    if (problem := username_problem(username)) is not None:
        raise InvalidInput(details={"username": [problem]})


def require_valid_password(password: str, username: str | None = None, field: str = "password") -> None:
    if (problem := password_problem(password, username)) is not None:
        raise InvalidInput(details={field: [problem]})


def require_valid_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInput(details={"role": [f"Role must be one of: {', '.join(ROLES)}"]})


def make_password_hash(password: str, username: str | None = None, field: str = "password") -> str:
    """bcrypt hash at the configured cost (``BCRYPT_ROUNDS``); checks the password rules first."""
    require_valid_password(password, username, field)
    with bcrypt_slot():
        return hash_password(password, current_app.config["BCRYPT_ROUNDS"])


# --- queries ----------------------------------------------------------------

def get_user(user_id: int) -> User:
    """The user with ``user_id`` (active or not); NotFound if there is none."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("User not found")
    return user


def find_by_username(username: str) -> User | None:
    """Exact (case-sensitive) username lookup."""
    return db.session.execute(select(User).where(User.username == username)).scalar_one_or_none()


def username_taken(username: str) -> bool:
    # Case-insensitive so that "Alice" cannot be created next to "alice".
    stmt = select(User.id).where(func.lower(User.username) == username.lower()).limit(1)
    return db.session.execute(stmt).first() is not None


@dataclass(frozen=True)
class UserPage:
    items: list[User]
    page: int
    per_page: int
    total: int


def list_users(page: int = 1, per_page: int = 50, role: str | None = None,
               active: bool | None = None) -> UserPage:
    """One page of users ordered by id, optionally filtered by role and active flag."""
    conditions = []
    if role is not None:
        conditions.append(User.role == role)
    if active is not None:
        conditions.append(User.active.is_(active))
    total = db.session.execute(select(func.count(User.id)).where(*conditions)).scalar_one()
    stmt = (select(User).where(*conditions).order_by(User.id)
            .limit(per_page).offset((page - 1) * per_page))
    items = list(db.session.execute(stmt).scalars())
    return UserPage(items=items, page=page, per_page=per_page, total=total)


# --- commands ---------------------------------------------------------------

def _commit_or_conflict(username: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("Username is already taken", {"username": username}) from None


def create_user(username: str, password: str, role: str = Role.USER.value,
                permissions: Iterable[str] = (), *, actor: Actor = audit.SYSTEM,
                action: str = audit.USER_CREATE) -> User:
    """Create an active user; InvalidInput on bad username/password/role/tables, Conflict if the name is taken."""
    require_valid_username(username)
    require_valid_role(role)
    tables = clean_table_names(permissions)
    password_hash = make_password_hash(password, username)
    if username_taken(username):
        raise Conflict("Username is already taken", {"username": username})
    user = User(username=username, password_hash=password_hash, role=role, active=True)
    user.permissions = [TablePermission(table_name=t) for t in tables]
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("Username is already taken", {"username": username}) from None
    audit.record(action, actor, target=audit.user_target(user.id),
                 details={"username": username, "role": role, "permissions": tables})
    _commit_or_conflict(username)
    return user


def update_user(actor: Actor, user_id: int, role: str | None = None, active: bool | None = None) -> User:
    """Change a user's role and/or active flag; an admin cannot demote or deactivate themself (Conflict).

    A role change or a deactivation ends every session of the user (token version bump);
    reactivation does not revive them. Audited with the values before and after.
    """
    user = get_user(user_id)
    before = {"role": user.role, "active": user.active}
    if role is not None:
        require_valid_role(role)
        if user.id == actor.id and role != Role.ADMIN.value:
            raise Conflict("You cannot remove your own admin role")
        user.role = role
    if active is not None:
        if user.id == actor.id and not active:
            raise Conflict("You cannot deactivate yourself")
        user.active = active
    after = {"role": user.role, "active": user.active}
    if after != before:
        if after["role"] != before["role"] or (before["active"] and not after["active"]):
            tokens.bump_version(user)
        audit.record(audit.USER_UPDATE, actor, target=audit.user_target(user.id),
                     details={"username": user.username, "before": before, "after": after})
    db.session.commit()
    return user


def deactivate_user(actor: Actor, user_id: int) -> User:
    """Deactivate a user (idempotent): no login, no refresh, existing tokens rejected for good."""
    return update_user(actor, user_id, active=False)


def set_permissions(user_id: int, tables: Iterable[str], *, actor: Actor = audit.SYSTEM) -> User:
    """Replace the user's table grants with ``tables`` (validated, de-duplicated); audited."""
    user = get_user(user_id)
    current = {p.table_name: p for p in user.permissions}
    wanted = clean_table_names(tables, keep=current)
    before = sorted(current)
    user.permissions = [current.get(t) or TablePermission(table_name=t) for t in wanted]
    if wanted != before:
        audit.record(audit.USER_PERMISSIONS, actor, target=audit.user_target(user.id),
                     details={"username": user.username, "before": before, "after": wanted})
    db.session.commit()
    return user


class AdminBootstrapError(Conflict):
    """create-admin cannot proceed (the name belongs to a non-admin user)."""


def create_or_reset_admin(username: str, password: str, *, actor: Actor = audit.CLI) -> tuple[User, bool]:
    """Create admin ``username``, or reset (and reactivate) that existing admin's password.

    A reset ends every session of that admin (tokens issued before it are refused). Returns
    ``(user, created)``. Raises ``InvalidInput`` for a bad username or password and
    ``AdminBootstrapError`` if the name belongs to a non-admin.
    """
    require_valid_username(username)
    user = find_by_username(username)
    if user is None:
        return create_user(username, password, role=Role.ADMIN.value, actor=actor), True
    if not user.is_admin:
        raise AdminBootstrapError(
            f"User {username!r} exists and is not an admin; refusing to promote it. "
            "Use PATCH /users/<id> as an admin to change its role, or choose another name.")
    user.password_hash = make_password_hash(password, username)
    was_active = user.active
    user.active = True
    tokens.bump_version(user)
    audit.record(audit.USER_PASSWORD_RESET, actor, target=audit.user_target(user.id),
                 details={"username": username, "reactivated": not was_active})
    db.session.commit()
    return user, False


def change_password(user_id: int, old_password: str, new_password: str, actor: Actor) -> User:
    """A user changes their own password: the current one is required, the new one must meet the
    rules and differ from it. Every session of the user ends (version bump); audited. The caller
    commits (``auth.change_password`` opens the caller's new session in the same transaction).

    ``InvalidInput`` (``old_password``) when the current password is wrong, ``InvalidInput``
    (``new_password``) when the new one breaks a rule.
    """
    user = get_user(user_id)
    stored, username = user.password_hash, user.username  # read before the slot ends the transaction
    with bcrypt_slot():
        correct = check_password(old_password, stored)
    if not correct:
        audit.record_now(audit.PASSWORD_CHANGE, actor, target=audit.user_target(user.id),
                         details={"reason": "wrong current password"}, outcome="failure")
        raise InvalidInput("The current password is wrong", {"old_password": ["The current password is wrong"]},
                           code="invalid_credentials")
    if new_password == old_password:
        raise InvalidInput(details={"new_password": ["The new password must differ from the current one"]})
    user.password_hash = make_password_hash(new_password, username, field="new_password")
    tokens.bump_version(user)
    audit.record(audit.PASSWORD_CHANGE, actor, target=audit.user_target(user.id))
    return user
