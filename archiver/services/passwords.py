"""Passwords: the rules a new password must meet, bcrypt hashing, and a cap on concurrent bcrypt work.

Rules (OWASP ASVS V2.1): 12 characters to 72 UTF-8 bytes (bcrypt's limit; nothing is
truncated), any characters, not one character repeated, not in the list of 20,000 common
passwords shipped in ``archiver/data`` (compared lower-cased), and not equal to or containing
the username (ignoring case). Existing hashes are not re-checked: the rules apply whenever a
password is set (sign-up, user creation, ``create-admin``, ``POST /auth/password``).

Every bcrypt check or hash takes a slot of a per-process gate (``PASSWORD_CHECK_CONCURRENCY``,
default 2): when all slots are busy the request is refused at once with ``RateLimited``
(retry after 1 s) instead of queueing, so a burst of logins cannot hold every server thread.
The session's transaction ends before the slow work (its callers have only read by then), so
no database lock is held meanwhile: on a SQLite archive a writing request's transaction holds
the write lock (``api/transactions.py``), which a run's next batch would wait for.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import threading
from pathlib import Path
from typing import Iterator

import bcrypt
from flask import current_app

from ..errors import RateLimited
from .source_db import end_read_transaction

MIN_LENGTH = 12
MAX_BYTES = 72
COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt.gz"


@functools.lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased (read once per process, ~20k entries)."""
    with gzip.open(COMMON_PASSWORDS_FILE, "rt", encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip())


def password_problem(password: str, username: str | None = None) -> str | None:
    """Why ``password`` may not be set (for ``username``, when given), or None if it may."""
    if not isinstance(password, str):
        return "Password must be a string"
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters"
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (valid in JSON "\ud800", not in UTF-8)
        return "Password must be valid Unicode text"
    if len(encoded) > MAX_BYTES:
        return f"Password must be at most {MAX_BYTES} bytes"
    if len(set(password)) == 1 or not password.strip():
        return "Password must not be one character repeated or only spaces"
    lowered = password.lower()
    if lowered in common_passwords():
        return "Password is too common; choose another"
    if isinstance(username, str) and username and username.lower() in lowered:
        return "Password must not contain the username"
    return None


# --- bcrypt, behind the gate ---------------------------------------------------

class PasswordGate:
    """At most ``size`` bcrypt operations at once in this process; no waiting for a slot."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise RateLimited("Too many password checks in progress; try again in a second",
                              retry_after=1, code="busy")
        try:
            yield
        finally:
            self._slots.release()


GATE_KEY = "archiver.password_gate"


def init_gate(app) -> None:
    """Give ``app`` its gate, sized by ``PASSWORD_CHECK_CONCURRENCY`` (create_app calls this)."""
    app.extensions[GATE_KEY] = PasswordGate(app.config["PASSWORD_CHECK_CONCURRENCY"])


def bcrypt_slot() -> contextlib.AbstractContextManager[None]:
    """A slot of the current app's gate (``RateLimited`` when none is free), the session's read
    transaction ended first (see the module docstring: read what the check needs before)."""
    end_read_transaction()  # only reads so far: nothing is written, the locks are let go
    return current_app.extensions[GATE_KEY].slot()


def hash_password(password: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def check_password(password: str, password_hash: str) -> bool:
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if len(encoded) > MAX_BYTES:
        return False
    try:
        return bcrypt.checkpw(encoded, password_hash.encode("ascii"))
    except ValueError:
        return False
