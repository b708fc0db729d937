"""Schemas of the /auth routes."""
from __future__ import annotations

import marshmallow as ma

from .users import password_field, username_field


class SignupSchema(ma.Schema):
    """Only a username and a password: role and grants are set server-side."""

    username = username_field()
    password = password_field()


class LoginSchema(ma.Schema):
    username = ma.fields.String(required=True, metadata={"example": "alice"})
    password = ma.fields.String(required=True, load_only=True, metadata={"format": "password"})


class AccessTokenSchema(ma.Schema):
    access_token = ma.fields.String(required=True)
    token_type = ma.fields.String(required=True, metadata={"example": "bearer"})
    expires_in = ma.fields.Integer(allow_none=True, metadata={"description": "Access token lifetime in seconds"})


class TokenPairSchema(AccessTokenSchema):
    refresh_token = ma.fields.String(required=True)
