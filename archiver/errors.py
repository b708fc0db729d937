"""The one domain exception, and the JSON error envelope every response uses.

Every error leaves the service as
``{"error": {"code": str, "message": str, "details": object|null}}``.
Nothing from a stack trace, SQL or a library message is ever put in it.
"""
from __future__ import annotations

from typing import Any

import marshmallow as ma


class ApiError(Exception):
    """A failure with an HTTP status, a stable code and a safe message."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    # Named constructors -------------------------------------------------
    @classmethod
    def bad_request(cls, message: str = "Bad request", details: Any = None, code: str = "bad_request") -> "ApiError":
        return cls(400, code, message, details)

    @classmethod
    def validation(cls, details: Any, message: str = "Invalid input") -> "ApiError":
        return cls(400, "validation_error", message, details)

    @classmethod
    def unauthorized(cls, message: str = "Authentication required", code: str = "unauthorized") -> "ApiError":
        return cls(401, code, message, None, {"WWW-Authenticate": "Bearer"})

    @classmethod
    def forbidden(cls, message: str = "You are not allowed to do this") -> "ApiError":
        return cls(403, "forbidden", message)

    @classmethod
    def not_found(cls, message: str = "Not found") -> "ApiError":
        return cls(404, "not_found", message)

    @classmethod
    def conflict(cls, message: str, details: Any = None) -> "ApiError":
        return cls(409, "conflict", message, details)

    @classmethod
    def too_large(cls, message: str = "Request body too large") -> "ApiError":
        return cls(413, "payload_too_large", message)

    @classmethod
    def rate_limited(cls, message: str = "Too many requests") -> "ApiError":
        return cls(429, "rate_limited", message)

    @classmethod
    def unavailable(cls, message: str, details: Any = None) -> "ApiError":
        return cls(503, "unavailable", message, details)

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


# Codes for plain HTTP statuses raised by Flask/Werkzeug routing and parsing.
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


class ErrorDetailSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"example": "validation_error"})
    message = ma.fields.String(required=True)
    details = ma.fields.Raw(allow_none=True)


class ErrorSchema(ma.Schema):
    """Documents the error envelope in the OpenAPI document."""

    error = ma.fields.Nested(ErrorDetailSchema, required=True)
