"""bcrypt password hashing with explicit bounds (bcrypt 5 raises over 72 bytes)."""
from __future__ import annotations

import bcrypt

MIN_LENGTH = 8
MAX_BYTES = 72


def password_problem(password: str) -> str | None:
    """Why ``password`` is not acceptable, or None if it is."""
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters"
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (valid in JSON "\ud800", not in UTF-8)
        return "Password must be valid Unicode text"
    if len(encoded) > MAX_BYTES:
        return f"Password must be at most {MAX_BYTES} bytes"
    return None


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
