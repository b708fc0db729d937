"""Domain errors: what went wrong, in the service's own terms, with no HTTP in sight.

Services, the CLI and the scheduler raise and catch these. Each carries a
``message`` that is safe to show to the caller (no SQL, stack or connection
text), optional ``details`` (for :class:`InvalidInput`, ``{"field": ["msg"]}``)
and optional ``code``, a stable machine-readable reason that refines the
kind (``invalid_credentials``, ``invalid_cursor``, ...). How each kind is
answered over HTTP is decided in one table, in ``archiver/api/errors.py``.
"""
from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """A failure the caller can be told about: a safe message, optional details and code."""

    default_message: ClassVar[str] = "The request cannot be carried out"

    def __init__(self, message: str | None = None, details: Any = None, *, code: str | None = None) -> None:
        self.message = message or self.default_message
        self.details = details
        self.code = code
        super().__init__(self.message)


class BadRequest(DomainError):
    """The request cannot be read at all (bad encoding, nesting); ``details`` says where."""

    default_message = "Bad request"


class InvalidInput(DomainError):
    """Input that breaks a rule; ``details`` maps each bad field to its messages.

    ``InvalidInput(details={"username": ["Username is too long"]})``.
    """

    default_message = "Invalid input"


class Unauthenticated(DomainError):
    """The caller is not (or no longer) who they claim; ``code`` says why, e.g. ``invalid_credentials``."""

    default_message = "Authentication required"


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    default_message = "You are not allowed to do this"


class NotFound(DomainError):
    """The thing asked for does not exist (or the caller may not learn that it does)."""

    default_message = "Not found"


class Conflict(DomainError):
    """The request clashes with the current state (a name taken, a table held by a run)."""

    default_message = "Conflict"


class TooLarge(DomainError):
    """The input is larger than the service accepts."""

    default_message = "Request body too large"


class RateLimited(DomainError):
    """Too many attempts; ``retry_after`` is the number of seconds to wait, when known."""

    default_message = "Too many requests"

    def __init__(self, message: str | None = None, details: Any = None, *, retry_after: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, details, code=code)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A database (or another dependency) does not answer; ``details`` may name which."""

    default_message = "Service unavailable"


__all__ = ["DomainError", "BadRequest", "InvalidInput", "Unauthenticated", "Forbidden", "NotFound",
           "Conflict", "TooLarge", "RateLimited", "Unavailable"]
