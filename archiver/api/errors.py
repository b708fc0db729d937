"""One JSON error handler for the domain exception, HTTP errors, JWT failures and crashes."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from ..errors import ApiError, error_body
from ..extensions import db, jwt, openapi
from ..services.identity import load_caller

log = logging.getLogger(__name__)


def _json_error(status: int, code: str, message: str, details=None, headers=None):
    resp = jsonify(error_body(code, message, details))
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _unauthorized(message: str, code: str = "unauthorized"):
    return _json_error(401, code, message, headers={"WWW-Authenticate": "Bearer"})


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _handle_api_error(err: ApiError):
        db.session.rollback()
        return _json_error(err.status, err.code, err.message, err.details, err.headers)

    @app.errorhandler(HTTPException)
    def _handle_http(err: HTTPException):
        db.session.rollback()
        body, status, headers = openapi.handle_http_exception(err)
        resp = jsonify(body)
        resp.status_code = status
        for k, v in headers.items():
            resp.headers[k] = v
        if status == 405 and err.get_response().headers.get("Allow"):
            resp.headers["Allow"] = err.get_response().headers["Allow"]
        return resp

    @app.errorhandler(Exception)
    def _handle_unexpected(err: Exception):
        db.session.rollback()
        log.exception("unhandled error")
        return _json_error(500, "internal_error", "Internal server error")

    # Flask-JWT-Extended: every token failure is a 401 in our envelope (not its 422).
    @jwt.unauthorized_loader
    def _missing(reason: str):
        return _unauthorized("Missing or malformed Authorization header", "token_missing")

    @jwt.invalid_token_loader
    def _invalid(reason: str):
        return _unauthorized("Invalid token", "token_invalid")

    @jwt.expired_token_loader
    def _expired(header, payload):
        return _unauthorized("Token has expired", "token_expired")

    @jwt.revoked_token_loader
    def _revoked(header, payload):
        return _unauthorized("Token has been revoked", "token_revoked")

    @jwt.needs_fresh_token_loader
    def _needs_fresh(header, payload):
        return _unauthorized("Fresh token required", "token_not_fresh")

    @jwt.token_verification_failed_loader
    def _verification_failed(header, payload):
        return _unauthorized("Invalid token", "token_invalid")

    @jwt.user_lookup_loader
    def _lookup(header, payload):
        return load_caller(payload.get("sub"))

    @jwt.user_lookup_error_loader
    def _lookup_error(header, payload):
        return _unauthorized("User is unknown or deactivated", "user_inactive")
