"""The web console at /ui/: server-rendered pages over the same services, RBAC and audit as the API.

Pages are Jinja2 templates (``templates/console/``) with one stylesheet and one small script
(``static/``), served from this origin: no inline script or style, so the strict
Content-Security-Policy of ``api/headers.py`` holds. Views are thin like the API's: parse the form or
query, authorize (``auth.page``: a cookie session; admin pages 403 for others), call a service,
render. Errors under /ui/ are answered as pages by the one error map (``api/errors.py``).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Flask, make_response, render_template
from flask_jwt_extended import get_current_user

from ..errors import register_page_errors
from ..security import is_admin
from . import auth

bp = Blueprint("console", __name__, url_prefix="/ui", template_folder="templates", static_folder="static",
               static_url_path="/static")

#: Short notices a redirect may ask a page to show (``?notice=<key>``; never free text from the URL).
NOTICES = {
    "saved": "Saved.",
    "deleted": "Deleted.",
    "renewed": "Your session had expired and has been renewed: nothing was changed; please send the form again.",
    "expired": "Your session has expired: please sign in again.",
    "ended": "Your session has ended (signed out elsewhere, password or role changed): please sign in again.",
    "signed_out": "You are signed out.",
    "password_changed": "Password changed. Your other sessions have been signed out.",
    "created": "Created.",
    "enabled": "Policy enabled: its rows will be archived at the next scheduler tick.",
    "disabled": "Policy disabled: nothing of this table is archived or purged until it is enabled again.",
}


def timestamp(value: Any) -> str:
    """A timestamp as shown on pages: ``2024-01-31 12:00:00 UTC`` (ISO text or datetime in)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def _context() -> dict[str, Any]:
    user = None
    try:
        user = get_current_user()
    except RuntimeError:
        user = None
    return {"me": user, "admin": bool(user) and is_admin(), "csrf_token": auth.csrf_token}


def render_error(status: int, body: dict[str, Any], headers: dict[str, str]):
    error = body.get("error") or {}
    page = render_template("console/error.html", status=status, code=error.get("code"),
                           message=error.get("message"), details=error.get("details"))
    response = make_response(page, status)
    for name, value in headers.items():
        response.headers[name] = value
    return response


def register_console(app: Flask) -> None:
    from . import views_account, views_admin, views_browse  # noqa: F401 - routes on ``bp``
    app.register_blueprint(bp)
    app.jinja_env.filters["ts"] = timestamp
    register_page_errors(app, "/ui/", render_error)


@bp.app_context_processor
def _inject() -> dict[str, Any]:
    return _context()


@bp.after_request
def _renew(response):
    return auth.apply_renewal(response)
