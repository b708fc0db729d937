"""Console sign-in: the API's own tokens, carried in flask-jwt-extended's cookies.

* **One auth system.** Logging in through the form opens a login session exactly like
  ``POST /auth/login`` (same service, same rate limits, same audit); its access and refresh tokens
  are set as cookies: HttpOnly, ``SameSite=Strict``, path ``/ui/``, ``Secure`` when
  ``CONSOLE_COOKIE_SECURE`` (the default outside development). The API never reads cookies
  (``JWT_TOKEN_LOCATION`` is the header only); console pages read only the cookies.
* **The same checks on every request**: a page verifies the access cookie with
  ``verify_jwt_in_request(locations=["cookies"])``, which runs the per-request user lookup (active
  user, token version, open session: :func:`archiver.services.identity.load_caller`), so a
  deactivation, password change or logout elsewhere ends the console session at once.
* **CSRF**: every state-changing request must echo the access token's CSRF value (flask-jwt-extended's
  double submit): the forms carry it as ``csrf_token``, the console's script as ``X-CSRF-TOKEN``.
  The login form has its own double-submit token (a random cookie and field).
* **Staying signed in**: an expired access token is replaced on the next page view from the refresh
  cookie (rotation, as ``POST /auth/refresh``), and a page view in the last minutes of its life
  renews it ahead of time, so a form on the page carries a CSRF value that stays valid. A form sent
  with an expired token is not carried out: the page comes back, renewed, asking to send it again.
"""
from __future__ import annotations

import secrets
import time
from functools import wraps
from typing import Any, Callable, TypeVar
from urllib.parse import urlencode

import jwt as pyjwt
from flask import Response, current_app, g, redirect, request, url_for
from flask_jwt_extended import (decode_token, get_csrf_token, get_jwt, set_access_cookies, set_refresh_cookies,
                                unset_jwt_cookies, verify_jwt_in_request)
from flask_jwt_extended.exceptions import CSRFError, JWTExtendedException, NoAuthorizationError

from ...errors import DomainError, Forbidden, Unauthenticated
from ...extensions import db
from ...services import auth as auth_service
from ...services.identity import load_caller
from ..ratelimit import client_address
from ..security import is_admin

F = TypeVar("F", bound=Callable[..., Any])

#: A page view renews the session when its access token has less than this left.
RENEW_BEFORE_SECONDS = 5 * 60
LOGIN_CSRF_COOKIE = "archiver_login_csrf"
LOGIN_PATH = "/ui/login"


def sign_in(response: Response, tokens: dict[str, Any]) -> Response:
    """Set the login session's tokens as the console's cookies."""
    set_access_cookies(response, tokens["access_token"])
    if tokens.get("refresh_token"):
        set_refresh_cookies(response, tokens["refresh_token"])
    return response


def sign_out(response: Response) -> Response:
    unset_jwt_cookies(response)
    return response


def wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"


def _navigation() -> bool:
    """A page view (not the console script's background fetch)."""
    return request.method in ("GET", "HEAD") and not wants_json() and request.headers.get(
        "X-Requested-With") != "fetch"


def safe_next(target: str | None) -> str:
    """A console path to return to after login (never another site)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


def _to_login(message: str | None = None, *, clear: bool = False) -> Response:
    if wants_json() or request.headers.get("X-Requested-With") == "fetch":
        raise Unauthenticated(message or "Sign in again", code="session_ended")
    query = {"next": request.full_path.rstrip("?")} if request.method == "GET" else {}
    if message:
        query["notice"] = message
    resp = redirect(LOGIN_PATH + ("?" + urlencode(query) if query else ""))
    return sign_out(resp) if clear else resp


def _renewed_tokens() -> dict[str, Any] | None:
    """New tokens from the refresh cookie (rotated like POST /auth/refresh), or None."""
    token = request.cookies.get(current_app.config["JWT_REFRESH_COOKIE_NAME"])
    if not token:
        return None
    try:
        claims = decode_token(token)
        if claims.get("type") != "refresh" or load_caller(claims) is None:
            return None
        return auth_service.refresh(claims, client_address())
    except (JWTExtendedException, pyjwt.PyJWTError, DomainError):
        db.session.rollback()
        return None


def authenticate() -> Response | None:
    """None when the request carries a valid console session (the caller is loaded as for the API);
    otherwise the response to send instead (to the login page, or the page again, renewed)."""
    try:
        verify_jwt_in_request(locations=["cookies"])
    except CSRFError:
        raise Forbidden("This form has no valid CSRF token (it may be from an old page): reload the page and "
                        "try again", code="csrf_failed") from None
    except pyjwt.ExpiredSignatureError:
        if wants_json() or request.headers.get("X-Requested-With") == "fetch":
            # The script's background request: no renewal here (its new cookies could be lost with
            # the answer, and the old refresh token sent again would end the session as stolen);
            # the script reloads the page, and the page view renews the session.
            raise Unauthenticated("Your session needs renewing: reload the page", code="token_expired")
        tokens = _renewed_tokens()
        if tokens is None:
            return _to_login("expired", clear=True)
        if _navigation():
            target = request.full_path.rstrip("?")
        else:  # a form sent with an expired token: not carried out; show the page again, renewed
            target = safe_next(_referrer_path())
            target += ("&" if "?" in target else "?") + "notice=renewed"
        return sign_in(redirect(target, code=303), tokens)
    except NoAuthorizationError:
        return _to_login()
    except (JWTExtendedException, pyjwt.PyJWTError, Unauthenticated):
        db.session.rollback()
        return _to_login("ended", clear=True)
    if _navigation() and get_jwt().get("exp", 0) - time.time() < RENEW_BEFORE_SECONDS:
        tokens = _renewed_tokens()
        if tokens is not None:
            g.console_tokens = tokens
    return None


def _referrer_path() -> str:
    ref = request.referrer or ""
    host = request.host_url.rstrip("/")
    return ref[len(host):] if ref.startswith(host + "/ui/") else "/ui/"


def csrf_token() -> str:
    """The CSRF value forms on this page must send back (of the renewed token, if renewed now)."""
    tokens = getattr(g, "console_tokens", None)
    if tokens is not None:
        return get_csrf_token(tokens["access_token"])
    try:
        return get_jwt().get("csrf", "")
    except RuntimeError:
        return ""


def apply_renewal(response: Response) -> Response:
    tokens = getattr(g, "console_tokens", None)
    if tokens is not None:
        sign_in(response, tokens)
    return response


def page(admin: bool = False) -> Callable[[F], F]:
    """A console view: a valid session (else the login page); ``admin``: 403 page for non-admins."""

    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            outcome = authenticate()
            if outcome is not None:
                return outcome
            if admin and not is_admin():
                raise Forbidden("This page is for administrators")
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


# --- the login form's own CSRF token --------------------------------------------------------------

def login_csrf(response: Response, value: str) -> Response:
    response.set_cookie(LOGIN_CSRF_COOKIE, value, httponly=True, samesite="Strict", path=LOGIN_PATH,
                        secure=current_app.config["JWT_COOKIE_SECURE"])
    return response


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def login_csrf_ok() -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    field = request.form.get("csrf_token", "")
    return bool(cookie) and secrets.compare_digest(cookie, field)


def login_url(next_path: str | None = None) -> str:
    return url_for("console.login", **({"next": next_path} if next_path else {}))
