"""flask-smorest wiring: the Api, the Blueprint class every route uses, and the error envelope's schema.

HTTP-only, so it lives in the api layer: services never import it (nor
flask-smorest, apispec, webargs or marshmallow through it).
"""
from __future__ import annotations

import json

import marshmallow as ma
from flask_smorest import Api, Blueprint as _SmorestBlueprint
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.exceptions import HTTPException

from .errors import http_exception_answer


class ErrorDetailSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"example": "validation_error"})
    message = ma.fields.String(required=True)
    details = ma.fields.Raw(allow_none=True)


class ErrorSchema(ma.Schema):
    """Documents the error envelope in the OpenAPI document."""

    error = ma.fields.Nested(ErrorDetailSchema, required=True)


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
        except json.JSONDecodeError:
            raise  # webargs answers these ("Invalid JSON body.")
        except ValueError:  # an integer of more than 4,300 digits (Python's int() limit)
            abort(400, messages={"json": ["Invalid JSON body: a number is too long."]})


class Blueprint(_SmorestBlueprint):
    """flask-smorest Blueprint whose argument errors are 400s."""

    ARGUMENTS_PARSER = _Parser()


class ArchiverApi(Api):
    """flask-smorest Api that renders HTTP errors in the service's envelope."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):  # type: ignore[override]
        return http_exception_answer(error)


openapi = ArchiverApi()
