"""Rate limits (Flask-Limiter) on the routes that check passwords: login, sign-up, password change.

* login: per username (``RATELIMIT_LOGIN_PER_USERNAME``, default 5/minute and 20/hour, counting
  failed attempts only, from any address) and per client address
  (``RATELIMIT_LOGIN_PER_ADDRESS``, default 30/minute, every attempt);
* sign-up: per client address (``RATELIMIT_SIGNUP_PER_ADDRESS``, default 10/hour) and per
  username (the login's per-username limits, every attempt);
* password change: per user (the login's per-username limits, every attempt).

Windows slide (``moving-window``): "5 per minute" holds over any 60 seconds. A limited request
is refused before its handler runs (no bcrypt work) with a 429 in the error envelope and
``Retry-After`` (see ``api/errors.py``). Counters live in ``RATELIMIT_STORAGE_URI``: memory (one
process) by default, Redis (or any storage the ``limits`` library knows) when several
processes or replicas serve the API, so that they share one count; if that storage is
unreachable, each process falls back to counting in memory.

The client address is ``request.remote_addr``: behind a reverse proxy, set
``TRUSTED_PROXY_HOPS`` so it is the client's, not the proxy's (``api/headers.py``).
"""
from __future__ import annotations

import hashlib
from typing import Any

from flask import Flask, current_app, request
from flask_jwt_extended import get_jwt_identity
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address)


def client_address() -> str:
    return get_remote_address() or "unknown"


def _body_username() -> str:
    """The ``username`` of a JSON body (or of the console's login form), normalised (case-folded,
    hashed when odd), as a limit key."""
    try:
        body: Any = request.get_json(silent=True)
    except Exception:  # noqa: BLE001 - a body the parser cannot read is refused later, with a 400
        body = None
    if body is None and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        body = request.form
    name = body.get("username") if hasattr(body, "get") else None
    if not isinstance(name, str) or not name:
        return "-"
    name = name.casefold()
    if len(name) <= 64 and name.isascii() and name.isprintable():
        return name
    return "#" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def username_key() -> str:
    return "user:" + _body_username()


def caller_key() -> str:
    return f"uid:{get_jwt_identity()}"


def address_key() -> str:
    return "addr:" + client_address()


def _setting(name: str):
    return lambda: current_app.config[name]


def _failed(response) -> bool:
    return response.status_code == 401


#: Decorators for the routes (applied in api/auth.py). The limit strings are read per request
#: from the app's config, so each app (and each test) uses its own settings.
login_per_username = limiter.limit(_setting("RATELIMIT_LOGIN_PER_USERNAME"), key_func=username_key,
                                   deduct_when=_failed, scope="login-username",
                                   error_message="Too many failed logins for this username")
login_per_address = limiter.limit(_setting("RATELIMIT_LOGIN_PER_ADDRESS"), key_func=address_key,
                                  scope="login-address", error_message="Too many logins from this address")
signup_per_address = limiter.limit(_setting("RATELIMIT_SIGNUP_PER_ADDRESS"), key_func=address_key,
                                   scope="signup-address", error_message="Too many sign-ups from this address")
signup_per_username = limiter.limit(_setting("RATELIMIT_LOGIN_PER_USERNAME"), key_func=username_key,
                                    scope="signup-username", error_message="Too many sign-ups for this username")
password_change_per_user = limiter.limit(_setting("RATELIMIT_LOGIN_PER_USERNAME"), key_func=caller_key,
                                         scope="password-change",
                                         error_message="Too many password changes; wait before trying again")


def init_limiter(app: Flask) -> None:
    """Bind the limiter to ``app`` with its storage (a Redis client gets short timeouts)."""
    uri = app.config["RATELIMIT_STORAGE_URI"]
    if uri.startswith(("redis", "rediss", "valkey")):
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 2, "socket_timeout": 2})
    # The limiter is module-wide (its decorators are applied at import); Flask-Limiter keeps the
    # first app's key prefix and strategy on it, so set this app's before binding it.
    limiter._key_prefix = app.config["RATELIMIT_KEY_PREFIX"]
    limiter._strategy = app.config["RATELIMIT_STRATEGY"]
    limiter.init_app(app)


def retry_after_seconds() -> int:
    """Seconds until the breached limit of this request lets the next attempt through (>= 1)."""
    import time

    current = limiter.current_limit
    if current is None:
        return 1
    try:
        return max(1, int(current.reset_at - time.time()) + 1)
    except Exception:  # noqa: BLE001 - storage trouble: a conservative hint
        return 60
