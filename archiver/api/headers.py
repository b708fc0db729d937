"""Security headers on every response, and the client address behind trusted reverse proxies.

Every response gets ``X-Content-Type-Options: nosniff``, frame denial (``X-Frame-Options: DENY``
and CSP ``frame-ancestors 'none'``), ``Referrer-Policy: no-referrer``, same-origin
cross-origin policies and ``Cache-Control: no-store`` (tokens, archived rows and the audit trail
must not be kept by browsers or proxies; only the docs' static files set their own caching).
The Content-Security-Policy is ``default-src 'none'`` for the API's JSON and exports, and
allows only this origin for HTML pages (``/docs`` and the console at ``/ui/``; ``/docs`` also allows
the hash of the one fixed style element Swagger UI inserts). Over HTTPS (as told by a
trusted proxy) ``Strict-Transport-Security`` is added.

``TRUSTED_PROXY_HOPS`` > 0 trusts that many ``X-Forwarded-For`` / ``X-Forwarded-Proto`` hops
(Werkzeug's ProxyFix), so rate limits and the audit trail see the client's address and HTTPS.
"""
from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'self'")
#: /docs: Swagger UI (flask-swagger-ui, pinned) adds one fixed <style> element at start-up; its hash is
#: allowed on that page only (tests/test_console_browser.py renders /docs in Chromium: no violation).
SWAGGER_STYLE_HASH = "'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='"
DOCS_CSP = PAGE_CSP.replace("style-src 'self'", f"style-src 'self' {SWAGGER_STYLE_HASH}")
HSTS = "max-age=31536000; includeSubDomains"

_ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _secure_headers(response: Response) -> Response:
    headers = response.headers
    for name, value in _ALWAYS.items():
        headers[name] = value
    if response.mimetype != "text/html":
        headers["Content-Security-Policy"] = API_CSP
    else:
        headers["Content-Security-Policy"] = DOCS_CSP if request.path in ("/docs", "/docs/") else PAGE_CSP
    if "Cache-Control" not in headers:
        headers["Cache-Control"] = "no-store"
    if request.is_secure:
        headers["Strict-Transport-Security"] = HSTS
    return response


def register_security_headers(app: Flask) -> None:
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.after_request(_secure_headers)
