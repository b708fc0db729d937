"""HTTP layer: blueprints are thin (parse, authorize, call a service, serialize)."""
from __future__ import annotations

from flask import Flask

from . import archives, audit, auth, config, docs_ui, runs, source, system, users
from .console import register_console
from .converters import IdConverter
from .errors import register_error_handlers
from .headers import register_security_headers
from .input_guard import register_input_guard
from .openapi import openapi
from .transactions import register_write_intent

BLUEPRINTS = (system.blp, auth.blp, users.blp, config.blp, source.blp, archives.blp, runs.blp, audit.blp)


def register_blueprints(app: Flask) -> None:
    register_write_intent(app)  # first: before any other hook may query the archive
    register_security_headers(app)
    register_input_guard(app)
    app.url_map.converters["id"] = IdConverter  # before any rule uses it
    openapi.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    for blp in BLUEPRINTS:
        openapi.register_blueprint(blp)
    app.register_blueprint(docs_ui.bp)
    register_console(app)


__all__ = ["register_blueprints", "register_error_handlers"]
