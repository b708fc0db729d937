"""Opaque, signed keyset cursors for archive listings.

A cursor carries the last id of a page plus what it is valid for (table,
order, a hash of the filters). It is signed with the app's secret, so a
tampered cursor, or one from another table, order or filter set, is refused.
"""
from __future__ import annotations

import functools

from flask import current_app
from itsdangerous import BadData, URLSafeSerializer

from ..errors import InvalidInput

_SALT = "archiver.archives.cursor.v1"
MAX_CURSOR_LENGTH = 1024


def _serializer() -> URLSafeSerializer:
    return _serializer_for(current_app.config.get("SECRET_KEY") or current_app.config["JWT_SECRET_KEY"])


@functools.lru_cache(maxsize=8)
def _serializer_for(secret: str) -> URLSafeSerializer:
    # One per secret, not one per page: a serializer keeps no state between dumps/loads.
    return URLSafeSerializer(secret, salt=_SALT)


def encode_cursor(table_name: str, order: str, filters_hash: str, last_id: int) -> str:
    """The cursor for the page that follows ``last_id``."""
    return _serializer().dumps({"t": table_name, "o": order, "f": filters_hash, "i": last_id})


def decode_cursor(token: str, table_name: str, order: str, filters_hash: str) -> int:
    """The last id inside ``token``; InvalidInput if it is forged or was issued for another listing."""
    invalid = InvalidInput("Invalid cursor", {"cursor": ["Not a cursor issued for this listing"]},
                           code="invalid_cursor")
    if not token or len(token) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        data = _serializer().loads(token)
    except (BadData, ValueError, TypeError):
        raise invalid from None
    if not isinstance(data, dict):
        raise invalid
    last_id = data.get("i")
    if (data.get("t") != table_name or data.get("o") != order or data.get("f") != filters_hash
            or not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 0):
        raise invalid
    return last_id


def encode_key_cursor(table_name: str, order: str, filters_hash: str, key: list) -> str:
    """A cursor holding a composite position (``key``: JSON values) instead of a last id."""
    return _serializer().dumps({"t": table_name, "o": order, "f": filters_hash, "k": key})


def decode_key_cursor(token: str, table_name: str, order: str, filters_hash: str) -> list:
    """The position inside ``token`` (a list); InvalidInput if forged or issued for another listing."""
    invalid = InvalidInput("Invalid cursor", {"cursor": ["Not a cursor issued for this listing"]},
                           code="invalid_cursor")
    if not token or len(token) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        data = _serializer().loads(token)
    except (BadData, ValueError, TypeError):
        raise invalid from None
    if (not isinstance(data, dict) or data.get("t") != table_name or data.get("o") != order
            or data.get("f") != filters_hash or not isinstance(data.get("k"), list)):
        raise invalid
    return data["k"]
