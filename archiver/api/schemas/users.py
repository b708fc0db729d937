"""Schemas of the /users routes (and the user shape /auth/me returns)."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from ...services.passwords import MAX_BYTES, MIN_LENGTH, password_problem
from .common import UtcDateTime
from ...services.users import ROLES, TABLE_NAME_MAX, USERNAME_RULE, table_name_problem, username_problem

MAX_GRANTS = 1000


def _check(problem_of):
    def validator(value):
        problem = problem_of(value)
        if problem is not None:
            raise ma.ValidationError(problem)
    return validator


def username_field(**kwargs) -> ma.fields.String:
    return ma.fields.String(required=True, validate=_check(username_problem),
                            metadata={"description": USERNAME_RULE, "example": "alice",
                                      "pattern": "^[A-Za-z0-9_.-]{3,64}$"}, **kwargs)


PASSWORD_RULE = (f"{MIN_LENGTH} characters to {MAX_BYTES} UTF-8 bytes; not a common password, not one "
                 "character repeated, not containing the username")


def password_field(metadata_extra: dict | None = None, **kwargs) -> ma.fields.String:
    """A new password: the rules that need no username are checked here, the rest by the service."""
    return ma.fields.String(required=True, load_only=True, validate=_check(password_problem),
                            metadata={"description": PASSWORD_RULE, "minLength": MIN_LENGTH, "format": "password",
                                      **(metadata_extra or {})}, **kwargs)


def permissions_field(**kwargs) -> ma.fields.List:
    item = ma.fields.String(validate=_check(table_name_problem),
                            metadata={"maxLength": TABLE_NAME_MAX, "example": "orders"})
    return ma.fields.List(item, validate=validate.Length(max=MAX_GRANTS),
                          metadata={"description": "Table names the user may read (de-duplicated)"}, **kwargs)


class StrictBoolean(ma.fields.Boolean):
    """Only JSON true/false (no "yes", 1, ...)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):  # 0/1 equal False/True in Python sets, so check the type
            raise self.make_error("invalid")
        return value


class UserSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    username = ma.fields.String(dump_only=True)
    role = ma.fields.String(dump_only=True, metadata={"enum": list(ROLES)})
    active = ma.fields.Boolean(dump_only=True)
    permissions = ma.fields.List(ma.fields.String(), attribute="table_names", dump_only=True)
    created_at = UtcDateTime(dump_only=True)
    updated_at = UtcDateTime(dump_only=True)


class UserCreateSchema(ma.Schema):
    username = username_field()
    password = password_field()
    role = ma.fields.String(load_default="user", validate=validate.OneOf(ROLES))
    permissions = permissions_field(load_default=list)


class UserPatchSchema(ma.Schema):
    role = ma.fields.String(validate=validate.OneOf(ROLES))
    active = StrictBoolean()

    @ma.validates_schema
    def _not_empty(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("Give at least one of: role, active", "_schema")


class PermissionsSchema(ma.Schema):
    permissions = permissions_field(required=True)


class UserListQuerySchema(ma.Schema):
    page = ma.fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = ma.fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    role = ma.fields.String(validate=validate.OneOf(ROLES))
    active = ma.fields.Boolean()


class UserPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(UserSchema))
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    total = ma.fields.Integer()
