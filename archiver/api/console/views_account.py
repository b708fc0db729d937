"""Console: sign in, sign out, your account (password change)."""
from __future__ import annotations

from flask import current_app, make_response, redirect, render_template, request
from flask_jwt_extended import get_current_user, get_jwt

from ...errors import DomainError, InvalidInput, Unauthenticated
from ...services import auth as auth_service
from ...services.passwords import MAX_BYTES, MIN_LENGTH
from .. import ratelimit
from ..security import current_actor, permitted_tables
from . import NOTICES, auth, bp


def _login_page(status: int = 200, error: str | None = None, username: str = ""):
    token = auth.new_login_csrf()
    insecure = current_app.config["JWT_COOKIE_SECURE"] and not request.is_secure
    page = render_template("console/login.html", error=error, username=username, login_csrf=token,
                           next=auth.safe_next(request.values.get("next")), insecure=insecure,
                           notice=NOTICES.get(request.args.get("notice", "")),
                           signup=current_app.config["SIGNUP_ENABLED"])
    return auth.login_csrf(make_response(page, status), token)


@bp.route("/login", methods=["GET"])
def login():
    return _login_page()


@bp.route("/login", methods=["POST"])
@ratelimit.login_per_username
@ratelimit.login_per_address
def login_submit():
    """The form's POST: the same login as POST /auth/login (rate limits, audit), then the cookies."""
    username = request.form.get("username", "")
    if not auth.login_csrf_ok():
        return _login_page(400, "The sign-in form had expired: please try again.", username)
    if current_app.config["JWT_COOKIE_SECURE"] and not request.is_secure:
        return _login_page(400, "This console is served over plain HTTP, but its cookies are Secure-only "
                                "(CONSOLE_COOKIE_SECURE): serve it over HTTPS, or set CONSOLE_COOKIE_SECURE=false.",
                           username)
    try:
        tokens = auth_service.login(username, request.form.get("password", ""), ratelimit.client_address())
    except Unauthenticated as exc:
        return _login_page(401, exc.message, username)
    resp = redirect(auth.safe_next(request.form.get("next")), code=303)
    resp.delete_cookie(auth.LOGIN_CSRF_COOKIE, path=auth.LOGIN_PATH)
    return auth.sign_in(resp, tokens)


@bp.route("/logout", methods=["POST"])
@auth.page()
def logout():
    """End this login session (its refresh and access tokens) and clear the cookies."""
    auth_service.logout(get_jwt(), current_actor())
    return auth.sign_out(redirect(auth.LOGIN_PATH + "?notice=signed_out", code=303))


@bp.route("/account", methods=["GET", "POST"])
@auth.page()
def account():
    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        old, new, again = (request.form.get(k, "") for k in ("old_password", "new_password", "new_password_again"))
        if new != again:
            errors = {"new_password_again": ["The two new passwords differ."]}
            status = 400
        else:
            try:
                tokens = auth_service.change_password(get_current_user().id, old, new, current_actor())
            except InvalidInput as exc:
                errors, status = (exc.details or {"_": [exc.message]}), 400
            except DomainError:
                raise
            else:
                # Every earlier session ended (token version): this one continues with new tokens.
                return auth.sign_in(redirect("/ui/account?notice=password_changed", code=303), tokens)
    page = render_template("console/account.html", errors=errors, tables=sorted(permitted_tables()),
                           notice=NOTICES.get(request.args.get("notice", "")), min_length=MIN_LENGTH,
                           max_bytes=MAX_BYTES)
    return make_response(page, status)
