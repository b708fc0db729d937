"""The one error map (archiver/api/errors.py): domain and engine errors -> status, code, envelope."""
from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import archiver.errors as domain
from archiver.api.errors import ERROR_MAP
from archiver.engine.criteria import CriteriaError
from archiver.engine.errors import (ColumnNotFound, DatabaseError, EngineError, InvalidPolicy, LeaseLost,
                                   NoPrimaryKey, NotADateValue, TableNotFound, UnsupportedDateColumn)
from archiver.engine.restore import RestoreError
from archiver.extensions import db
from archiver.services import database
from tests.app_support import Accounts, make_app
from tests.engine_support import add_policy, make_orders, old_dates
CASES = [
    (domain.DomainError("Cannot do that"), 400, "bad_request", "Cannot do that", None, {}),
    (domain.BadRequest("Request body is nested too deeply", {"location": "body"}), 400, "bad_request",
     "Request body is nested too deeply", {"location": "body"}, {}),
    (domain.InvalidInput(details={"username": ["Too short"]}), 400, "validation_error", "Invalid input",
     {"username": ["Too short"]}, {}),
    (domain.InvalidInput("Invalid cursor", {"cursor": ["Not ours"]}, code="invalid_cursor"), 400, "invalid_cursor",
     "Invalid cursor", {"cursor": ["Not ours"]}, {}),
    (domain.Unauthenticated("Invalid username or password", code="invalid_credentials"), 401, "invalid_credentials",
     "Invalid username or password", None, {"WWW-Authenticate": "Bearer"}),
    (domain.Unauthenticated(), 401, "unauthorized", "Authentication required", None, {"WWW-Authenticate": "Bearer"}),
    (domain.Forbidden("Admin role required"), 403, "forbidden", "Admin role required", None, {}),
    (domain.NotFound("User not found"), 404, "not_found", "User not found", None, {}),
    (domain.Conflict("Username is already taken", {"username": "bob"}), 409, "conflict",
     "Username is already taken", {"username": "bob"}, {}),
    (domain.TooLarge(), 413, "payload_too_large", "Request body too large", None, {}),
    (domain.RateLimited(retry_after=30), 429, "rate_limited", "Too many requests", None, {"Retry-After": "30"}),
    (domain.Unavailable("Database unreachable: source", {"failed": ["source"]}), 503, "unavailable",
     "Database unreachable: source", {"failed": ["source"]}, {}),
    # engine errors a service lets through
    (DatabaseError("source", "connection failure (SQLSTATE 08006)"), 503, "unavailable", "Source database error",
     {"reason": "source database error: connection failure (SQLSTATE 08006)"}, {}),
    (DatabaseError("archive", "disk full (SQLSTATE 53100)"), 503, "unavailable", "Archive database error",
     {"reason": "archive database error: disk full (SQLSTATE 53100)"}, {}),
    (TableNotFound("orders"), 400, "policy_not_applicable", "source table 'orders' does not exist",
     {"table_name": ["Table not found in the source database"]}, {}),
    (ColumnNotFound("orders", "made_at"), 400, "policy_not_applicable",
     "column 'made_at' does not exist in source table 'orders'", {"date_column": ["Column not found in table orders"]},
     {}),
    (NoPrimaryKey("orders"), 400, "policy_not_applicable",
     "source table 'orders' has no primary key; it cannot be archived safely",
     {"table_name": ["Table has no primary key; archiving needs one to track rows"]}, {}),
    (UnsupportedDateColumn("orders", "note", "TEXT"), 400, "policy_not_applicable",
     str(UnsupportedDateColumn("orders", "note", "TEXT")),
     {"date_column": [str(UnsupportedDateColumn("orders", "note", "TEXT"))]}, {}),
    (NotADateValue("orders", "note", "'note 1'", "why"), 400, "policy_not_applicable",
     str(NotADateValue("orders", "note", "'note 1'", "why")),
     {"date_column": [str(NotADateValue("orders", "note", "'note 1'", "why"))]}, {}),
    (InvalidPolicy({"table_name": ["a"], "custom_criteria": ["b"]}), 400, "policy_not_applicable",
     "a; invalid custom_criteria: b", {"table_name": ["a"], "custom_criteria": ["b"]}, {}),
    (CriteriaError("unknown column 'x'"), 400, "policy_not_applicable", "invalid custom_criteria: unknown column 'x'",
     None, {}),
    (LeaseLost("orders"), 409, "conflict", str(LeaseLost("orders")), None, {}),
    (RestoreError("source table 'gone' does not exist"), 409, "conflict", "source table 'gone' does not exist",
     None, {}),
    # a broken engine invariant: a 500 that says nothing about it
    (EngineError("archive upsert of 'orders' took 3 of 4 rows"), 500, "internal_error", "Internal server error",
     None, {}),
]


@pytest.fixture
def raising_client(databases):
    """An app with one extra route that raises the error under test."""
    app = make_app(databases)
    raised: dict[str, BaseException] = {}

    def boom():
        raise raised["error"]

    app.add_url_rule("/_raise", "raise_for_test", boom)
    client = app.test_client()

    def get(err: BaseException):
        raised["error"] = err
        return client.get("/_raise")
    return get


@pytest.mark.parametrize("err,status,code,message,details,headers", CASES,
                         ids=[f"{type(c[0]).__name__}-{c[2]}" for c in CASES])
def test_each_error_type_has_its_status_code_and_envelope(raising_client, err, status, code, message, details,
                                                          headers):
    resp = raising_client(err)
    assert resp.status_code == status
    assert resp.get_json() == {"error": {"code": code, "message": message, "details": details}}
    for name, value in headers.items():
        assert resp.headers.get(name) == value


def test_every_domain_error_type_has_a_row_in_the_table():
    kinds = [cls for _, cls in inspect.getmembers(domain, inspect.isclass)
             if issubclass(cls, domain.DomainError)]
    assert len(kinds) >= 10
    assert [k.__name__ for k in kinds if k not in ERROR_MAP] == []


def test_rate_limited_without_a_known_wait_sends_no_retry_after(raising_client):
    resp = raising_client(domain.RateLimited())
    assert resp.status_code == 429 and "Retry-After" not in resp.headers


def test_engine_database_error_from_a_service_is_a_503_naming_the_source(databases):
    """preview lets the engine's DatabaseError through; the map answers 503 in the envelope."""
    app = make_app(databases)
    with app.app_context():
        database.init_db()
    with app.app_context():
        make_orders(db.engines["source"], old_dates(3))
    add_policy(app, "orders")
    # The same archive database, with the source now unreachable.
    down = make_app(databases, SOURCE_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    admin = Accounts(down).admin()
    resp = down.test_client().post("/config/orders/preview", headers=admin)
    assert resp.status_code == 503
    err = resp.get_json()["error"]
    assert err["code"] == "unavailable" and err["message"] == "Source database error"
    assert set(err["details"]) == {"reason"}
    assert err["details"]["reason"].startswith("source database error: ")
    text = resp.get_data(as_text=True)
    assert "127.0.0.1" not in text and "nobody" not in text and "Traceback" not in text
    for app_ in (app, down):
        with app_.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def test_services_do_not_import_the_http_layer():
    """Importing every service (and the CLI) loads no flask-smorest, apispec, webargs or marshmallow."""
    code = (
        "import sys, pkgutil, importlib, archiver.services as s\n"
        "for m in pkgutil.iter_modules(s.__path__): importlib.import_module('archiver.services.' + m.name)\n"
        "import archiver.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flask_smorest', 'apispec', 'webargs', 'marshmallow') or m.startswith('archiver.api'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == ""
