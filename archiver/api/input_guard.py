"""Reject request text that no database column can hold (NUL, lone surrogates).

PostgreSQL refuses NUL bytes and UTF-8 cannot encode lone surrogates; letting
either reach a query would surface as a driver error. They are a 400 here,
before any handler runs.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, request

from ..errors import BadRequest

_MAX_DEPTH = 64


def _bad_text(value: str) -> bool:
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _find_bad(value: Any, depth: int = 0) -> bool:
    if depth > _MAX_DEPTH:
        return False
    if isinstance(value, str):
        return _bad_text(value)
    if isinstance(value, dict):
        return any(_find_bad(k, depth + 1) or _find_bad(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_find_bad(v, depth + 1) for v in value)
    return False


def register_input_guard(app: Flask) -> None:
    @app.before_request
    def _reject_unstorable_text() -> None:
        where = None
        if request.view_args and _find_bad(request.view_args):
            where = "path"
        elif any(_find_bad(k) or _find_bad(v) for k, v in request.args.items(multi=True)):
            where = "query"
        elif request.is_json and request.content_length:
            try:
                body = request.get_json(silent=True)
            except RecursionError:  # json.loads gives up on ~1000 nested arrays/objects
                raise BadRequest("Request body is nested too deeply", {"location": "body"}) from None
            if _find_bad(body):
                where = "body"
        if where:
            raise BadRequest(f"Request {where} contains characters that are not allowed "
                                       "(NUL or invalid Unicode)", {"location": where})
