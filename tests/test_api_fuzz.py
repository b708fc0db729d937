"""Property-based fuzzing of every operation in the service's own OpenAPI document.

Schemathesis generates requests from ``/openapi.json`` (schema-valid ones and
deliberately invalid ones) and sends them in process to a seeded app (demo
tables with a composite-key table, policies, archived rows) as an admin, as a
user granted one table, and with no token. Whatever it sends, the answer must
never be a 5xx, every error must be the JSON envelope
``{"error": {"code", "message", "details"}}``, and no error may carry stack,
SQL or driver text. Hand-made strategies then push where schema-driven cases
rarely get: near-valid policies, archive filters at datetime extremes, signed
tokens with odd subjects, raw bodies with odd media types and deep nesting.

Runs on SQLite with ``FUZZ_EXAMPLES`` (default 40) cases per operation and
identity, and again on PostgreSQL (when ``TEST_POSTGRES_URL`` is set) with
``FUZZ_PG_EXAMPLES`` (default 10) and on MariaDB (when ``TEST_MARIADB_URL`` is
set) with ``FUZZ_MARIADB_EXAMPLES`` (default 10): cheap passes for failures
only those servers show.
Raise both for a deeper local run; hypothesis is derandomized, so CI is
reproducible.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import jwt as pyjwt
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis.generation import GenerationMode

from archiver.extensions import db
from archiver.models import Role, User
from archiver.services import database, demo, jobs, policies
from archiver.services.users import set_permissions
from tests.app_support import BACKENDS, JWT_SECRET, Accounts, Databases, make_app, throwaway_databases

EXAMPLES = {"sqlite": int(os.environ.get("FUZZ_EXAMPLES", "40")),
            "postgres": int(os.environ.get("FUZZ_PG_EXAMPLES", "10")),
            "mariadb": int(os.environ.get("FUZZ_MARIADB_EXAMPLES", "10"))}
ADMIN, USER = "fuzz-admin", "fuzz-user"
USER_TABLES = ("orders",)
LEAKS = ("Traceback", "sqlalchemy", "psycopg", "sqlite3", "pymysql", "SELECT ", "INSERT ", "UPDATE ",
         "DELETE FROM", 'File "', "(Background on this error")
TABLE_NAMES = ["orders", "events", "audit_log", "no_such_table"]
# Operations whose fuzzing would only exercise the disabled scheduler (always 409 in tests).
LIGHT = {"POST /system/scheduler/test"}


def _spec_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation, read from a throwaway app's /openapi.json."""
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(Databases("sqlite", f"sqlite:///{tmp}/s.db", f"sqlite:///{tmp}/a.db"))
        spec = app.test_client().get("/openapi.json").get_json()
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
    return [(method.upper(), path) for path, item in spec["paths"].items()
            for method in item if method in {"get", "post", "put", "patch", "delete"}]


OPERATIONS = _spec_operations()


class FuzzTarget:
    """A seeded app, its schemathesis schema, known ids, and the identities' headers."""

    def __init__(self, app, examples: int) -> None:
        self.app = app
        self.examples = examples
        self.accounts = Accounts(app)
        with app.app_context():
            database.init_db()
            demo.seed_demo()
            jobs.run_archive(trigger="cli")
        self.admin_id = self.accounts.create(ADMIN, role=Role.ADMIN.value)
        self.user_id = self.accounts.create(USER, tables=list(USER_TABLES))
        self.headers = {"admin": self.accounts.headers(ADMIN), "user": self.accounts.headers(USER), "anonymous": {}}
        self.schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
        # The identities supply (or omit) the token; schemathesis must not drop or invent one.
        self.schema.config.generation.update(with_security_parameters=False)
        with app.app_context():
            first = dict(db.session.execute(sa.text(
                "SELECT table_name, MIN(id) FROM archived_rows GROUP BY table_name")).all())
            run_id = db.session.execute(sa.text("SELECT MAX(id) FROM archive_runs")).scalar_one()
            analyst = db.session.execute(sa.select(User.id).where(User.username == demo.ANALYST_USERNAME)).scalar_one()
        # Real values for path parameters, so generated queries and bodies reach the database
        # instead of stopping at "not found".
        self.path_values = {
            "table_name": [{"table_name": t} for t in TABLE_NAMES],
            "user_id": [{"user_id": i} for i in (self.admin_id, self.user_id, analyst)],
            "run_id": [{"run_id": run_id}],
            "row_id": [{"table_name": "orders", "row_id": first["orders"]},
                       {"table_name": "audit_log", "row_id": first["audit_log"]},
                       {"table_name": "orders", "row_id": first["events"]}],
        }

    def reset(self) -> None:
        """Undo what fuzzing may have done to the identities and the policies."""
        with self.app.app_context():
            for name, role in ((ADMIN, Role.ADMIN.value), (USER, Role.USER.value)):
                user = db.session.execute(sa.select(User).where(User.username == name)).scalar_one()
                user.role, user.active = role, True
            db.session.commit()
            user = db.session.execute(sa.select(User).where(User.username == USER)).scalar_one()
            if sorted(user.table_names) != sorted(USER_TABLES):
                set_permissions(user.id, USER_TABLES)
            for table in demo.ORDERS, demo.EVENTS, demo.AUDIT_LOG:
                if policies.get_policy(table.name) is None:
                    policies.create_or_update({"table_name": table.name, "archive_after_days": 30,
                                               "delete_after_days": 365}, updated_by="fuzz")
            db.session.remove()

    def strategy(self, method: str, path: str):
        """Schema-valid and schema-violating cases, half of them with real path values."""
        operation = self.schema[path][method]
        params = [name for name in self.path_values if "{" + name + "}" in path]
        combos = self.path_values[params[-1]] if params else []
        return st.one_of(
            [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
            + [operation.as_strategy(generation_mode=mode, path_parameters=combo)
               for combo in combos for mode in GenerationMode])


# Values at the edges of what databases and datetime can hold, swapped into generated cases.
EDGE_INTS = [0, -1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]
EDGE_TEXT = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-14:00", "0001-01-01", "9999-12-31",
             "2024-02-30T00:00:00", "2024-01-01T24:00:00", "1e309", "NaN", "-0", "\u0000", "%00",
             "' OR 1=1 --", "orders; DROP TABLE users", "é" * 300, "𝔘" * 80, " ", ""]


# Real values by field name, so generated bodies and queries also reach the database layer.
KNOWN_BY_KEY = {
    "table_name": TABLE_NAMES,
    "date_column": ["created_at", "id", "customer", "region", "no_such_column"],
    "custom_criteria": ["status = 'closed'", "amount < 100 AND customer LIKE 'a%'", "id = 99999999999999999999",
                        "created_at < '0001-01-01T00:00:00+14:00'", "region IN ('eu', 'us') OR id BETWEEN 1 AND 2"],
    "source_pk": ["1", "10000000001", '["eu", 1]', '["eu",1]', "[1, 2, 3]", "9" * 400],
    "username": [ADMIN, USER, demo.ANALYST_USERNAME, "new-user"],
    "password": ["password123", "x" * 72, "é" * 40],
    "permissions": [["orders"], [], ["orders", "events", "orders"]],
}


def with_edges(data, value: Any, key: str | None = None) -> Any:
    """``value`` with some fields swapped for real or edge values (drawn from ``data``)."""
    if key in KNOWN_BY_KEY and data.draw(st.integers(0, 3)) > 0:
        return data.draw(st.sampled_from(KNOWN_BY_KEY[key]))
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return data.draw(st.sampled_from(EDGE_INTS)) if data.draw(st.integers(0, 2)) == 0 else value
    if isinstance(value, str):
        return data.draw(st.sampled_from(EDGE_TEXT)) if data.draw(st.integers(0, 3)) == 0 else value
    if isinstance(value, dict):
        return {k: with_edges(data, v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [with_edges(data, v) for v in value]
    return value


@pytest.fixture(scope="module", params=BACKENDS)
def target(request, tmp_path_factory):
    with throwaway_databases(request.param, tmp_path_factory.mktemp("fuzz")) as dbs:
        app = make_app(dbs)
        try:
            yield FuzzTarget(app, EXAMPLES[request.param])
        finally:
            with app.app_context():
                db.session.remove()
                for engine in db.engines.values():
                    engine.dispose()


def check_response(case, response) -> None:
    """The API's error contract, for one response.

    Leaks are looked for in error bodies only: a 2xx body carries stored data
    (archived payloads, usernames) that may legitimately contain any text.
    """
    status = response.status_code
    body = response.content.decode("utf-8", "replace")
    where = f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r} -> {status}: {body[:300]}"
    assert status < 500 or (status == 503 and case.path == "/ready"), where
    for leak in LEAKS:
        assert leak.lower() not in body.lower() or status < 300, f"leak {leak!r}: {where}"
    if status >= 400:
        assert (response.headers.get("content-type") or [""])[0].startswith("application/json"), where
        payload = json.loads(body)
        assert set(payload) == {"error"}, where
        assert set(payload["error"]) == {"code", "message", "details"}, where
        assert isinstance(payload["error"]["code"], str) and isinstance(payload["error"]["message"], str), where


def fuzz_settings(examples: int) -> settings:
    """Bounded, reproducible hypothesis settings (the app and its data are shared, so no health checks)."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def fuzz_operation(target: FuzzTarget, method: str, path: str, identity: str, examples: int,
                   check=check_response) -> None:
    """Send ``examples`` generated requests to one operation as ``identity`` and ``check`` each answer."""
    target.reset()
    headers = target.headers[identity]

    @fuzz_settings(examples)
    @given(case=target.strategy(method, path), data=st.data())
    def run(case, data) -> None:
        if data.draw(st.booleans()):
            for attr in ("path_parameters", "query", "body"):
                value = getattr(case, attr, None)
                if isinstance(value, (dict, list)) and value:
                    setattr(case, attr, with_edges(data, value))
        check(case, case.call(headers=dict(headers)))

    run()


@pytest.mark.slow
@pytest.mark.parametrize("identity", ["admin", "user", "anonymous"])
@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_never_fails_badly(target: FuzzTarget, method: str, path: str, identity: str) -> None:
    fuzz_operation(target, method, path, identity, min(5, target.examples) if f"{method} {path}" in LIGHT
                   else target.examples)


# --- near-valid inputs: the schema-driven cases above rarely get this far ----------------------------

def check_flask(resp, where: str) -> None:
    """check_response for a Flask test-client response."""
    body = resp.get_data(as_text=True)
    where = f"{where} -> {resp.status_code}: {body[:300]}"
    assert resp.status_code < 500, where
    if resp.status_code >= 400:
        assert resp.is_json and set(resp.get_json()) == {"error"}, where
        assert set(resp.get_json()["error"]) == {"code", "message", "details"}, where
        for leak in LEAKS:
            assert leak.lower() not in body.lower(), f"leak {leak!r}: {where}"


DAYS = st.integers(-1, 36501) | st.sampled_from(EDGE_INTS)
POLICY_BODIES = st.fixed_dictionaries(
    {"table_name": st.sampled_from(TABLE_NAMES), "archive_after_days": DAYS, "delete_after_days": DAYS},
    optional={"date_column": st.sampled_from(KNOWN_BY_KEY["date_column"]) | st.text(max_size=20),
              "custom_criteria": st.none() | st.sampled_from(KNOWN_BY_KEY["custom_criteria"]) | st.text(max_size=40),
              "batch_size": st.integers(0, 50001) | st.sampled_from(EDGE_INTS),
              "enabled": st.booleans() | st.sampled_from([0, 1, "true", None])})
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
DATETIMES = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
                         timezones=st.none() | st.just(timezone.utc) | OFFSETS)
DATE_TEXT = st.one_of(DATETIMES.map(lambda d: d.isoformat()), DATETIMES.map(lambda d: d.date().isoformat()),
                      DATETIMES.map(lambda d: d.isoformat(sep=" ", timespec="seconds")), st.sampled_from(EDGE_TEXT))
FILTERS = st.fixed_dictionaries({}, optional={
    "archived_from": DATE_TEXT, "archived_to": DATE_TEXT, "row_date_from": DATE_TEXT, "row_date_to": DATE_TEXT,
    "source_pk": st.sampled_from(KNOWN_BY_KEY["source_pk"]) | st.text(min_size=1, max_size=20)})


@pytest.mark.slow
def test_near_valid_policies_are_saved_or_refused_cleanly(target: FuzzTarget) -> None:
    client, admin = target.app.test_client(), target.headers["admin"]

    @fuzz_settings(target.examples)
    @given(body=POLICY_BODIES)
    def run(body: dict) -> None:
        resp = client.post("/config", json=body, headers=admin)
        check_flask(resp, f"POST /config {body!r}")
        if resp.status_code in (200, 201):
            check_flask(client.post(f"/config/{body['table_name']}/preview", headers=admin), f"preview {body!r}")

    target.reset()
    run()


@pytest.mark.slow
def test_archive_filters_at_datetime_extremes(target: FuzzTarget) -> None:
    client = target.app.test_client()

    @fuzz_settings(target.examples)
    @given(table=st.sampled_from(TABLE_NAMES[:3]), filters=FILTERS, identity=st.sampled_from(["admin", "user"]),
           order=st.sampled_from(["asc", "desc"]))
    def run(table: str, filters: dict, identity: str, order: str) -> None:
        headers, query = target.headers[identity], {**filters, "order": order}
        check_flask(client.get(f"/archives/{table}", query_string=query, headers=headers), f"list {table} {query!r}")
        export = client.get(f"/archives/{table}/export", query_string={**query, "format": "csv"}, headers=headers)
        check_flask(export, f"export {table} {query!r}")
        if filters and identity == "admin" and table == "audit_log":  # restore really moves rows: one table only
            resp = client.post(f"/archives/{table}/restore", json={"filters": filters}, headers=headers)
            check_flask(resp, f"restore {table} {filters!r}")

    target.reset()
    run()


@pytest.mark.slow
def test_signed_tokens_with_odd_subjects(target: FuzzTarget) -> None:
    """Whoever holds the signing key can put anything in ``sub``: still never a 500."""
    client = target.app.test_client()

    @fuzz_settings(target.examples)
    @given(sub=st.sampled_from(["1", "0", "-1", "99999999999999999999", "1" * 5000, "\u0661", "1.0", "1e3"])
           | st.text(max_size=30) | st.integers(), kind=st.sampled_from(["access", "refresh"]),
           role=st.sampled_from(["admin", "user", None, 1, ["admin"]]))
    def run(sub: Any, kind: str, role: Any) -> None:
        now = int(time.time())
        claims = {"sub": sub, "type": kind, "fresh": False, "jti": str(uuid.uuid4()), "iat": now, "nbf": now,
                  "exp": now + 600, "role": role, "permissions": ["orders"]}
        headers = {"Authorization": f"Bearer {pyjwt.encode(claims, JWT_SECRET, algorithm='HS256')}"}
        for method, url in (("GET", "/auth/me"), ("POST", "/auth/refresh"), ("GET", "/users/"),
                            ("GET", "/archives/")):
            check_flask(client.open(url, method=method, headers=headers), f"{method} {url} sub={sub!r} {kind}")

    target.reset()
    run()


RAW_BODIES = st.one_of(
    st.binary(max_size=64), st.text(max_size=64).map(str.encode),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),  # json.loads recurses: ~1000 levels is its limit
    st.integers(1, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.sampled_from([b"null", b"[]", b"1e999", b'{"ids": [NaN]}', b'{"all": true, "all": false}', b"\xff\xfe{\x00}\x00",
                     b'{"ids": [1.0]}', b'{"permissions": "orders"}', b'{"delay_seconds": 1e308}']))
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-16", "application/json; charset=x",
                                 "application/merge-patch+json", "text/plain", "multipart/form-data",
                                 "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", None]) \
    | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@pytest.mark.slow
def test_raw_bodies_and_content_types(target: FuzzTarget) -> None:
    """Bytes the spec would never generate: bad JSON, deep nesting, odd media types, chunked bodies."""
    client = target.app.test_client()
    routes = [(m, p.replace("{table_name}", "orders").replace("{user_id}", str(target.user_id)))
              for m, p in OPERATIONS if m in {"POST", "PUT", "PATCH"}]

    @fuzz_settings(target.examples)
    @given(route=st.sampled_from(routes), body=RAW_BODIES, content_type=CONTENT_TYPES, chunked=st.booleans(),
           identity=st.sampled_from(["admin", "anonymous"]))
    def run(route: tuple[str, str], body: bytes, content_type: str | None, chunked: bool, identity: str) -> None:
        method, url = route
        headers = dict(target.headers[identity])
        if content_type is not None:
            headers["Content-Type"] = content_type
        if chunked:  # no Content-Length: the body is read to its end
            headers["Transfer-Encoding"] = "chunked"
            resp = client.open(url, method=method, headers=headers, input_stream=io.BytesIO(body),
                               environ_overrides={"wsgi.input_terminated": True})
        else:
            resp = client.open(url, method=method, headers=headers, data=body)
        check_flask(resp, f"{method} {url} {content_type!r} chunked={chunked} {body[:60]!r}")

    target.reset()
    run()
