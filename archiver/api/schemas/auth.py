"""Schemas of the /auth routes."""
from __future__ import annotations

import marshmallow as ma

from ...services.passwords import MAX_BYTES, MIN_LENGTH
from .users import password_field, username_field


class SignupSchema(ma.Schema):
    """Only a username and a password: role and grants are set server-side."""

    username = username_field()
    password = password_field()


class SignupAcceptedSchema(ma.Schema):
    """The same answer whether or not the username was free."""

    username = ma.fields.String(required=True)
    message = ma.fields.String(required=True)


class LoginSchema(ma.Schema):
    username = ma.fields.String(required=True, metadata={"example": "alice"})
    password = ma.fields.String(required=True, load_only=True, metadata={"format": "password"})


class PasswordChangeSchema(ma.Schema):
    old_password = ma.fields.String(required=True, load_only=True,
                                    metadata={"format": "password", "description": "Your current password"})
    new_password = password_field(metadata_extra={"description": f"The new password: {MIN_LENGTH} characters to "
                                                                 f"{MAX_BYTES} UTF-8 bytes, not a common password, "
                                                                 "not containing your username"})


class AccessTokenSchema(ma.Schema):
    access_token = ma.fields.String(required=True)
    token_type = ma.fields.String(required=True, metadata={"example": "bearer"})
    expires_in = ma.fields.Integer(allow_none=True, metadata={"description": "Access token lifetime in seconds"})


class TokenPairSchema(AccessTokenSchema):
    refresh_token = ma.fields.String(required=True)
