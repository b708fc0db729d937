"""Helpers of the API tests: log in, bearer headers, decode a token, check an error body."""
from __future__ import annotations

import uuid

import jwt as pyjwt
import sqlalchemy as sa
from werkzeug.routing import FloatConverter, IntegerConverter, UUIDConverter

from archiver.extensions import db
from archiver.models import User
from tests.app_support import JWT_SECRET, PASSWORD

MAX_PASSWORD = "éè" * 18          # 72 UTF-8 bytes
TOO_LONG_PASSWORD = "é" * 36 + "a"  # 73 UTF-8 bytes, 37 characters


def user_count(app) -> int:
    with app.app_context():
        return db.session.execute(sa.select(sa.func.count(User.id))).scalar_one()


def login(client, username: str, password: str = PASSWORD):
    return client.post("/auth/login", json={"username": username, "password": password})


def decode(token: str) -> dict:
    return pyjwt.decode(token, JWT_SECRET, algorithms=["HS256"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def dummy_path_values(rule) -> dict:
    """A value for each variable of a URL rule, so that the rule can be built."""
    values = {}
    for name, converter in rule._converters.items():
        if isinstance(converter, IntegerConverter):
            values[name] = 1
        elif isinstance(converter, FloatConverter):
            values[name] = 1.0
        elif isinstance(converter, UUIDConverter):
            values[name] = uuid.UUID(int=1)
        else:
            values[name] = "dummy"
    return values
