"""Regressions found by tests/test_api_fuzz.py: each was a 500 before its fix."""
from __future__ import annotations

import io
import time
import uuid

import jwt as pyjwt
import pytest

from tests.app_support import JWT_SECRET
from tests.engine_support import add_policy

BIG_IDS = ["9223372036854775808", "18446744073709551616", "1" + "0" * 30]
ID_ROUTES = [("GET", "/users/{}"), ("PATCH", "/users/{}"), ("DELETE", "/users/{}"), ("PUT", "/users/{}/permissions"),
             ("GET", "/runs/{}"), ("GET", "/archives/orders/{}")]
BODIES = {"PATCH": {"active": True}, "PUT": {"permissions": []}}


def assert_envelope(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    body = resp.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.mark.parametrize("method,route", ID_ROUTES)
def test_path_ids_beyond_bigint_or_not_ascii_digits_are_404(client, accounts, method, route):
    """SQLite raised OverflowError binding ids >= 2**63: 500 on /users/{id} and /runs/{id}."""
    admin = accounts.admin()
    for raw in BIG_IDS + ["0", "\u0661", "\uff11"]:  # ARABIC-INDIC ONE and FULLWIDTH ONE: int() took them as 1
        resp = client.open(route.format(raw), method=method, headers=admin, json=BODIES.get(method))
        assert_envelope(resp, 404, "not_found")
    # The largest BIGINT is still a well-formed id, just an absent one.
    resp = client.open(route.format(2**63 - 1), method=method, headers=admin, json=BODIES.get(method))
    assert_envelope(resp, 404, "not_found")


def test_admin_itself_is_not_reachable_through_non_ascii_digits(client, accounts):
    admin = accounts.admin()
    assert client.get("/users/1", headers=admin).status_code == 200
    assert_envelope(client.get("/users/\u0661", headers=admin), 404)


def test_id_path_parameters_are_documented_with_their_bounds(client):
    spec = client.get("/openapi.json").get_json()
    seen = set()
    for path, item in spec["paths"].items():
        params = list(item.get("parameters", []))
        params += [p for op in item.values() if isinstance(op, dict) for p in op.get("parameters", [])]
        for param in params:
            if param["in"] == "path" and param["name"] in {"user_id", "run_id", "row_id"}:
                seen.add(param["name"])
                assert param["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}, path
    assert seen == {"user_id", "run_id", "row_id"}


def test_runs_before_id_beyond_bigint_is_400(client, accounts):
    """SQLite raised OverflowError: GET /runs?before_id=2**63 was a 500."""
    admin = accounts.admin()
    for raw in BIG_IDS:
        error = assert_envelope(client.get(f"/runs?before_id={raw}", headers=admin), 400, "validation_error")
        assert "before_id" in error["details"]
    assert client.get(f"/runs?before_id={2**63 - 1}", headers=admin).status_code == 200


def test_restore_ids_beyond_bigint_are_400(client, accounts, app):
    """SQLite raised OverflowError in the engine's IN (...): POST restore {"ids": [2**63]} was a 500."""
    add_policy(app, "orders")
    admin = accounts.admin()
    for raw in BIG_IDS:
        resp = client.post("/archives/orders/restore", headers=admin, json={"ids": [1, int(raw)]})
        error = assert_envelope(resp, 400, "validation_error")
        assert "ids" in error["details"]


@pytest.mark.parametrize("sub", ["99999999999999999999", "9223372036854775808", "1" * 5000, "\u0661", " 1", "1\x00"])
@pytest.mark.parametrize("kind", ["access", "refresh"])
def test_signed_token_whose_subject_is_no_id_is_401(client, accounts, sub, kind):
    """A validly signed token with sub "99999999999999999999" made the user lookup overflow: 500."""
    accounts.admin()  # user 1 exists, so a sub that int() reads as 1 would wrongly log in
    now = int(time.time())
    token = pyjwt.encode({"sub": sub, "type": kind, "fresh": False, "jti": str(uuid.uuid4()), "iat": now,
                          "nbf": now, "exp": now + 600}, JWT_SECRET, algorithm="HS256")
    headers = {"Authorization": f"Bearer {token}"}
    resp = client.get("/auth/me", headers=headers) if kind == "access" else client.post("/auth/refresh",
                                                                                          headers=headers)
    assert_envelope(resp, 401)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000])
def test_json_nested_too_deeply_is_400(client, accounts, body, chunked):
    """json.loads raised RecursionError (not ValueError) in the input guard and in webargs: 500."""
    admin = accounts.admin()
    headers = {**admin, "Content-Type": "application/json"}
    for method, url in (("POST", "/auth/login"), ("POST", "/config"), ("PATCH", "/users/1")):
        if chunked:  # no Content-Length: the input guard skips the body, webargs parses it
            resp = client.open(url, method=method, headers={**headers, "Transfer-Encoding": "chunked"},
                               input_stream=io.BytesIO(body), environ_overrides={"wsgi.input_terminated": True})
        else:
            resp = client.open(url, method=method, headers=headers, data=body)
        error = assert_envelope(resp, 400)
        assert "nested too deeply" in (error["message"] + str(error["details"]))
    # Nesting a parser copes with is an ordinary validation error.
    assert_envelope(client.post("/config", headers=headers, data=b"[" * 100 + b"]" * 100), 400, "validation_error")
