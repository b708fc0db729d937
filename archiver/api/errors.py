"""The one place errors become HTTP: domain errors, engine errors, HTTP errors, JWT failures, crashes.

Every error leaves the service as
``{"error": {"code": str, "message": str, "details": object|null}}``.
:data:`ERROR_MAP` is the table from an error type to its status and code;
services raise domain errors (``archiver.errors``) or let the engine's errors
through, and never choose a status themselves. Nothing from a stack trace, SQL
or a library message is ever put in a response.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import jwt as pyjwt
from flask import Flask, current_app, jsonify, request
from flask_jwt_extended.default_callbacks import default_decode_key_callback
from werkzeug.exceptions import HTTPException

from ..engine.criteria import CriteriaError
from ..engine.errors import DatabaseError, EngineError, InvalidPolicy, LeaseLost
from ..engine.restore import RestoreError
from ..errors import (BadRequest, Conflict, DomainError, Forbidden, InvalidInput, NotFound, RateLimited, TooLarge,
                      Unauthenticated, Unavailable)
from ..extensions import db, jwt
from ..services.identity import load_caller
from ..services.tokens import claims_problem

log = logging.getLogger(__name__)

Headers = dict[str, str]


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


# --- how each error type is answered -------------------------------------------

def _own_text(err: BaseException) -> tuple[str, Any]:
    """A domain error's own message and details."""
    return err.message, err.details  # type: ignore[attr-defined]


def _safe_str(err: BaseException) -> tuple[str, Any]:
    """Engine and restore errors: their text is safe to show by contract (see engine/errors.py)."""
    return str(err)[:500], None


def _policy_text(err: BaseException) -> tuple[str, Any]:
    """A policy the source cannot run: the engine's sentence, and its problems by policy field."""
    return str(err)[:500], dict(err.problems)  # type: ignore[attr-defined]


def _criteria_text(err: BaseException) -> tuple[str, Any]:
    """CriteriaError messages are safe by contract (see engine/criteria.py)."""
    return f"invalid custom_criteria: {str(err)[:300]}", None


def _database_text(err: BaseException) -> tuple[str, Any]:
    side = getattr(err, "side", None) or "a"
    return f"{side.capitalize()} database error", {"reason": str(err)}


def _internal_text(err: BaseException) -> tuple[str, Any]:
    return "Internal server error", None


def _no_headers(err: BaseException) -> Headers:
    return {}


def _bearer(err: BaseException) -> Headers:
    return {"WWW-Authenticate": "Bearer"}


def _retry_after(err: BaseException) -> Headers:
    seconds = getattr(err, "retry_after", None)
    return {"Retry-After": str(int(seconds))} if seconds is not None else {}


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to one error type: status, default code, message/details and headers."""

    status: int
    code: str
    text: Callable[[BaseException], tuple[str, Any]] = _own_text
    headers: Callable[[BaseException], Headers] = _no_headers


#: Error type -> answer. The most specific class in an error's MRO wins. A domain
#: error's own ``code``, when set, refines the code given here.
ERROR_MAP: dict[type[BaseException], Answer] = {
    # domain errors (archiver.errors)
    DomainError: Answer(400, "bad_request"),
    BadRequest: Answer(400, "bad_request"),
    InvalidInput: Answer(400, "validation_error"),
    Unauthenticated: Answer(401, "unauthorized", headers=_bearer),
    Forbidden: Answer(403, "forbidden"),
    NotFound: Answer(404, "not_found"),
    Conflict: Answer(409, "conflict"),
    TooLarge: Answer(413, "payload_too_large"),
    # also a breached rate limit (api/ratelimit.py), refused before the handler ran
    RateLimited: Answer(429, "rate_limited", headers=_retry_after),
    Unavailable: Answer(503, "unavailable"),
    # engine errors a service lets through
    DatabaseError: Answer(503, "unavailable", _database_text),
    InvalidPolicy: Answer(400, "policy_not_applicable", _policy_text),
    CriteriaError: Answer(400, "policy_not_applicable", _criteria_text),
    LeaseLost: Answer(409, "conflict", _safe_str),
    RestoreError: Answer(409, "conflict", _safe_str),
    EngineError: Answer(500, "internal_error", _internal_text),  # an engine invariant broke: log, say nothing
}


def answer_for(err: BaseException) -> tuple[int, dict[str, Any], Headers]:
    """``(status, body, headers)`` for an error whose type (or a base) is in :data:`ERROR_MAP`."""
    answer = next(ERROR_MAP[cls] for cls in type(err).__mro__ if cls in ERROR_MAP)
    message, details = answer.text(err)
    code = (err.code if isinstance(err, DomainError) else None) or answer.code
    return answer.status, error_body(code, message, details), answer.headers(err)


def _json(status: int, body: dict[str, Any], headers: Headers | None = None):
    resp = jsonify(body)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def error_response(err: BaseException):
    """The JSON response for a mapped error."""
    return _json(*answer_for(err))


#: ``app.extensions`` key of the HTML error pages: ``[(path prefix, render(status, body, headers))]``.
PAGE_ERRORS = "archiver.page_errors"


def register_page_errors(app: Flask, prefix: str, render: Callable[[int, dict[str, Any], Headers], Any]) -> None:
    """Answer errors of requests under ``prefix`` that want HTML with ``render`` (the console's
    pages): the same statuses, codes and messages as the JSON envelope, as a page."""
    app.extensions.setdefault(PAGE_ERRORS, []).append((prefix, render))


def _respond(status: int, body: dict[str, Any], headers: Headers | None = None):
    """The error as JSON, or as a page for a request under a registered prefix that wants HTML."""
    for prefix, render in current_app.extensions.get(PAGE_ERRORS, ()):
        if request.path.startswith(prefix) and request.accept_mimetypes.best_match(
                ["text/html", "application/json"]) != "application/json":
            return render(status, body, headers or {})
    return _json(status, body, headers)


# --- plain HTTP errors (routing, webargs parsing, Werkzeug) --------------------

#: Codes for HTTP statuses raised by Flask/Werkzeug routing and parsing.
HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "You are not allowed to do this"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Expected a JSON body"),
    422: ("validation_error", "Invalid input"),
    429: ("rate_limited", "Too many requests"),
    500: ("internal_error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}

_WEBARGS_LOCATIONS = {"json", "query", "form", "headers", "files", "view_args", "path", "querystring"}


def _flatten_webargs(messages):
    """webargs nests errors by location ({"json": {...}}); keep the field map."""
    if isinstance(messages, dict) and len(messages) == 1:
        (location, inner), = messages.items()
        if location in _WEBARGS_LOCATIONS:
            return inner
    return messages


def http_exception_answer(error: HTTPException) -> tuple[dict[str, Any], int, Headers]:
    """``(body, status, headers)`` for a Werkzeug HTTP error; webargs' field errors become a 400."""
    status = error.code or 500
    code, message = HTTP_CODES.get(status, ("error", error.name))
    details = None
    data = getattr(error, "data", None) or {}
    if status in (400, 422) and ("messages" in data or "errors" in data):
        code, message = "validation_error", "Invalid input"
        details = _flatten_webargs(data.get("errors") or data.get("messages"))
        status = 400
    headers = dict(data.get("headers") or {})
    if status == 405 and error.get_response().headers.get("Allow"):
        headers["Allow"] = error.get_response().headers["Allow"]
    return error_body(code, message, details), status, headers


# --- registration --------------------------------------------------------------

def _unauthorized(message: str, code: str):
    return error_response(Unauthenticated(message, code=code))


def register_error_handlers(app: Flask) -> None:
    def _handle_mapped(err: BaseException):
        db.session.rollback()
        status, body, headers = answer_for(err)
        if status == 503:
            log.warning("%s: %s", type(err).__name__, err)
        elif status >= 500:
            log.error("%s: %s", type(err).__name__, err, exc_info=err)
        return _respond(status, body, headers)

    for error_type in ERROR_MAP:
        app.register_error_handler(error_type, _handle_mapped)

    @app.errorhandler(HTTPException)
    def _handle_http(err: HTTPException):
        db.session.rollback()
        body, status, headers = http_exception_answer(err)
        return _respond(status, body, headers)

    @app.errorhandler(Exception)
    def _handle_unexpected(err: Exception):
        db.session.rollback()
        log.exception("unhandled error")
        return _respond(500, error_body("internal_error", "Internal server error"))

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

    @jwt.decode_key_loader
    def _decode_key(header, unverified_claims):
        # Every token must carry the claims this service issues (exp, type, jti, ver, fam, ...):
        # a token signed with our key but lacking them is refused, not filled in with defaults.
        # (The signature is verified right after, with the key returned here.)
        if not isinstance(unverified_claims, dict) or claims_problem(unverified_claims) is not None:
            raise pyjwt.InvalidTokenError("token lacks required claims")
        return default_decode_key_callback(header, unverified_claims)

    @jwt.user_lookup_loader
    def _lookup(header, payload):
        # For a token from any location (header now, cookie for the console later): the user is
        # active, the token's version is current and its login session is open (services.identity).
        return load_caller(payload)

    @jwt.user_lookup_error_loader
    def _lookup_error(header, payload):
        return _unauthorized("User is unknown or deactivated", "user_inactive")
