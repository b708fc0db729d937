"""Extension singletons, bound to an app by create_app()."""
from __future__ import annotations

from pathlib import Path

from flask_apscheduler import APScheduler
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from flask_smorest import Api, Blueprint as _SmorestBlueprint
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.exceptions import HTTPException

from .errors import HTTP_CODES, ErrorSchema, error_body

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class _Parser(FlaskParser):
    # Bad input is a 400 in this service, not webargs' default 422.
    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req):
        # A body sent with a non-JSON content type is a 415, not silently "no body".
        if req.content_length and not is_json_request(req):
            abort(415)
        try:
            return super()._raw_load_json(req)
        except RecursionError:  # json.loads gives up on ~1000 nested arrays/objects
            abort(400, messages={"json": ["JSON nested too deeply."]})


class Blueprint(_SmorestBlueprint):
    """flask-smorest Blueprint whose argument errors are 400s."""

    ARGUMENTS_PARSER = _Parser()


class ArchiverApi(Api):
    """flask-smorest Api that renders HTTP errors in the service's envelope."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):  # type: ignore[override]
        status = error.code or 500
        code, message = HTTP_CODES.get(status, ("error", error.name))
        details = None
        data = getattr(error, "data", None) or {}
        if status in (400, 422) and ("messages" in data or "errors" in data):
            code, message = "validation_error", "Invalid input"
            details = _flatten_webargs(data.get("errors") or data.get("messages"))
            status = 400
        return error_body(code, message, details), status, dict(data.get("headers") or {})


def _flatten_webargs(messages):
    """webargs nests errors by location ({"json": {...}}); keep the field map."""
    if isinstance(messages, dict) and len(messages) == 1:
        (location, inner), = messages.items()
        if location in {"json", "query", "form", "headers", "files", "view_args", "path", "querystring"}:
            return inner
    return messages


db = SQLAlchemy(model_class=Base)
# The archive database's Alembic migrations (`flask --app archiver db …`, init-db). They live in the
# package, not beside the working directory, so an installed or containerised service finds them
# wherever it is started.
migrate = Migrate(directory=str(Path(__file__).resolve().parent / "migrations"))
jwt = JWTManager()
scheduler = APScheduler()
openapi = ArchiverApi()
