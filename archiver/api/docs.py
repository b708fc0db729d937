"""OpenAPI documentation helpers shared by the blueprints."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from .openapi import Blueprint, ErrorSchema

DEFAULT_ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input; `details` names the bad fields",
    401: "Missing, invalid or expired access token",
    403: "Caller may not do this",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body larger than 1 MiB",
    415: "Body is not JSON",
    503: "Service unavailable",
}


def error_responses(blp: Blueprint, statuses: tuple[int, ...],
                    descriptions: Mapping[int, str] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare the JSON error envelope for each of ``statuses`` on a view."""
    texts = {**DEFAULT_ERROR_DESCRIPTIONS, **(descriptions or {})}

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for status in statuses:
            fn = blp.alt_response(status, schema=ErrorSchema, description=texts[status])(fn)
        return fn
    return decorate
