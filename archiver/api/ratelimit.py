"""Rate limits on the routes that check passwords: login, sign-up, password change.

* login: per username (``RATELIMIT_LOGIN_PER_USERNAME``, default 5/minute and 20/hour, counting
  failed attempts only, from any address) and per client address
  (``RATELIMIT_LOGIN_PER_ADDRESS``, default 30/minute, every attempt);
* sign-up: per client address (``RATELIMIT_SIGNUP_PER_ADDRESS``, default 10/hour) and per
  username (the login's per-username limits, every attempt);
* password change: per user (the login's per-username limits, every attempt).

Windows slide (``moving-window``): "5 per minute" holds over any 60 seconds. A limited request
is refused before its handler runs (no bcrypt work) with a 429 in the error envelope and
``Retry-After`` (a ``RateLimited`` domain error, answered by ``api/errors.py``). Counters live in
``RATELIMIT_STORAGE_URI``: memory (one process) by default, Redis (or any storage the ``limits``
library knows) when several processes or replicas serve the API, so that they share one count;
if that storage is unreachable, each process falls back to counting in memory (and checks the
storage again now and then, 1 s to 32 s apart, going back to it once it answers).

The counting and the storages are the ``limits`` library's; this module only says which limits a
route has, when they are checked (in the innermost limit decorator of a view, i.e. after the
decorators above it — body parsing, the token check — and before the handler) and when a
"failed attempts only" limit is charged (after the response, when it is a 401). Each app has its
own :class:`Limiter` (``app.extensions``), made by :func:`init_limiter`; the decorators hold no
state. The keys in the storage are those Flask-Limiter wrote (``LIMITER/<prefix>/<key>/<scope>/…``).

The client address is ``request.remote_addr``: behind a reverse proxy, set
``TRUSTED_PROXY_HOPS`` so it is the client's, not the proxy's (``api/headers.py``).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from flask import Flask, current_app, g, request
from flask_jwt_extended import get_jwt_identity

from ..errors import RateLimited

log = logging.getLogger(__name__)

#: ``app.extensions`` key of the app's :class:`Limiter` (absent when ``RATELIMIT_ENABLED`` is off).
EXTENSION = "archiver.ratelimit"
#: Attribute of a rate-limited view: the list of its :class:`RouteLimit`.
_LIMITS_ATTR = "_archiver_rate_limits"
#: ``flask.g`` key: the "failed attempts only" limits this request is charged for if it fails.
_PENDING = "_archiver_rate_limit_pending"
#: Storage down: how often it is tried again (1, 2, 4, … 32 s apart, then from 1 s again).
_MAX_BACKOFF_STEP = 5


def client_address() -> str:
    return request.remote_addr or "127.0.0.1"


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


def _failed(response) -> bool:
    return response.status_code == 401


@dataclass(frozen=True)
class RouteLimit:
    """One limit of a route: the config setting holding its rate strings (read per request), the
    key function, the scope (part of the storage key) and the message of a refusal. With
    ``deduct_when`` the request is only tested against the limit, and charged after the response
    when ``deduct_when(response)`` holds."""

    setting: str
    key: Callable[[], str]
    scope: str
    message: str
    deduct_when: Callable[[Any], bool] | None = None


def limit(setting: str, *, key: Callable[[], str], scope: str, message: str,
          deduct_when: Callable[[Any], bool] | None = None) -> Callable[[Callable], Callable]:
    """A route decorator adding one limit. Stacked limit decorators make one check of all the
    view's limits, where the innermost of them stands."""
    route_limit = RouteLimit(setting, key, scope, message, deduct_when)

    def decorate(view: Callable) -> Callable:
        limits = getattr(view, _LIMITS_ATTR, None)
        if limits is not None:  # already limited (the innermost decorator checks them all)
            limits.append(route_limit)
            return view
        limits = [route_limit]

        @functools.wraps(view)
        def limited(*args, **kwargs):
            limiter: Limiter | None = current_app.extensions.get(EXTENSION)
            if limiter is not None:
                limiter.check(limits)
            return view(*args, **kwargs)

        setattr(limited, _LIMITS_ATTR, limits)
        return limited

    return decorate


#: Decorators for the routes (api/auth.py, api/console/views_account.py). The limit strings are
#: read per request from the app's config, so each app (and each test) uses its own settings.
login_per_username = limit("RATELIMIT_LOGIN_PER_USERNAME", key=username_key, deduct_when=_failed,
                           scope="login-username", message="Too many failed logins for this username")
login_per_address = limit("RATELIMIT_LOGIN_PER_ADDRESS", key=address_key, scope="login-address",
                          message="Too many logins from this address")
signup_per_address = limit("RATELIMIT_SIGNUP_PER_ADDRESS", key=address_key, scope="signup-address",
                           message="Too many sign-ups from this address")
signup_per_username = limit("RATELIMIT_LOGIN_PER_USERNAME", key=username_key, scope="signup-username",
                            message="Too many sign-ups for this username")
password_change_per_user = limit("RATELIMIT_LOGIN_PER_USERNAME", key=caller_key, scope="password-change",
                                 message="Too many password changes; wait before trying again")


class Limiter:
    """One app's counting: its storage and strategy (``limits``), key prefix, and the in-memory
    fallback used while the storage does not answer."""

    def __init__(self, config) -> None:
        from limits import parse_many
        from limits.storage import MemoryStorage, storage_from_string
        from limits.strategies import STRATEGIES

        self._parse_many = parse_many
        strategy = STRATEGIES[config["RATELIMIT_STRATEGY"]]
        self.prefix: str = config["RATELIMIT_KEY_PREFIX"]
        self.storage = storage_from_string(config["RATELIMIT_STORAGE_URI"],
                                           **(config.get("RATELIMIT_STORAGE_OPTIONS") or {}))
        self._strategy = strategy(self.storage)
        self._fallback = strategy(MemoryStorage()) if config.get("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED") else None
        self._storage_dead = False
        self._lock = threading.Lock()
        self._last_storage_check = time.time()
        self._storage_check_step = 0

    @property
    def strategy(self):
        """The strategy counting now: the storage's, or the in-memory fallback's while it is down."""
        return self._fallback if self._storage_dead and self._fallback is not None else self._strategy

    def check(self, limits: list[RouteLimit]) -> None:
        """Count this request against ``limits``; ``RateLimited`` if one of them is used up."""
        try:
            self._evaluate(limits)
        except RateLimited:
            raise
        except Exception:  # noqa: BLE001 - the storage failed (a Redis that does not answer)
            if not self._fall_back():
                raise
            self._evaluate(limits)

    def _fall_back(self) -> bool:
        """The storage failed: count in memory from now on. False when there is no fallback, or it
        is the one in use already (the failure is the caller's to raise)."""
        if self._fallback is None or self._storage_dead:
            return False
        log.warning("Rate limit storage unreachable - falling back to in-memory storage")
        self._storage_dead = True
        return True

    def _evaluate(self, limits: list[RouteLimit]) -> None:
        if self._storage_dead:
            self._maybe_recover()
        strategy = self.strategy
        config = current_app.config
        # Shortest windows first (a stable sort: decoration order within a window), as Flask-Limiter
        # did; the first used-up limit refuses the request and the later ones are not counted.
        items = sorted(((item, lim) for lim in limits for item in self._parse_many(config[lim.setting])),
                       key=lambda pair: pair[0])
        pending: list[tuple[Any, list[str], Callable[[Any], bool]]] = []
        setattr(g, _PENDING, pending)
        for item, lim in items:
            args = [lim.key(), lim.scope]
            if self.prefix:
                args.insert(0, self.prefix)
            if lim.deduct_when is not None:
                pending.append((item, args, lim.deduct_when))
                allowed = strategy.test(item, *args)
            else:
                allowed = strategy.hit(item, *args)
            if not allowed:
                log.info("ratelimit %s (%s) exceeded at endpoint: %s", item, args[-2], lim.scope)
                seconds = self._retry_after(strategy, item, args)
                raise RateLimited(lim.message, {"retry_after": seconds}, retry_after=seconds)

    @staticmethod
    def _retry_after(strategy, item, args: list[str]) -> int:
        """Seconds until the used-up limit lets the next attempt through (>= 1)."""
        try:
            reset_at = int(strategy.get_window_stats(item, *args).reset_time)
            return max(1, int(reset_at - time.time()) + 1)
        except Exception:  # noqa: BLE001 - storage trouble: a conservative hint
            return 60

    def _maybe_recover(self) -> None:
        """While the storage is down, try it again after 1, 2, 4, … 32 s (then from 1 s again)."""
        with self._lock:
            if self._storage_check_step > _MAX_BACKOFF_STEP:
                self._storage_check_step = 0
            if time.time() - self._last_storage_check <= 2 ** self._storage_check_step:
                return
            self._last_storage_check = time.time()
            self._storage_check_step += 1
        if self.storage.check():
            log.info("Rate limit storage recovered")
            self._storage_dead = False
            self._storage_check_step = 0

    def charge_failures(self, response):
        """``after_request``: charge the "failed attempts only" limits when the response says so."""
        for item, args, deduct_when in g.pop(_PENDING, ()):
            if not deduct_when(response):
                continue
            try:
                self.strategy.hit(item, *args)
            except Exception:  # noqa: BLE001 - the storage failed since the check: count in memory
                if not self._fall_back():
                    raise
                self._fallback.hit(item, *args)
        return response


def init_limiter(app: Flask) -> None:
    """Give ``app`` its limiter (none when ``RATELIMIT_ENABLED`` is off) with its storage (a Redis
    client gets short timeouts)."""
    if not app.config["RATELIMIT_ENABLED"]:
        return
    uri = app.config["RATELIMIT_STORAGE_URI"]
    if uri.startswith(("redis", "rediss", "valkey")):
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 2, "socket_timeout": 2})
    limiter = Limiter(app.config)
    app.extensions[EXTENSION] = limiter
    app.after_request(limiter.charge_failures)
