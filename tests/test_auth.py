"""/auth: sign-up without mass assignment, login, token contents, refresh, /me, password bounds."""
from __future__ import annotations

import jwt as pyjwt
import pytest
import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import TablePermission, User
from archiver.services import auth as auth_service
from tests.conftest import JWT_SECRET, make_app

PASSWORD = "password123"
MAX_PASSWORD = "é" * 36          # 72 UTF-8 bytes
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


# --- signup -----------------------------------------------------------------

def test_signup_creates_plain_user_without_permissions(app, client):
    resp = client.post("/auth/signup", json={"username": "alice", "password": PASSWORD})
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["username"] == "alice"
    assert body["role"] == "user"
    assert body["permissions"] == []
    assert body["active"] is True
    assert "password" not in body and "password_hash" not in body
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == "alice")).scalar_one()
        assert user.role == "user" and user.table_names == []
        assert user.password_hash.startswith("$2b$04$")  # bcrypt at the configured (test) cost
        assert PASSWORD not in user.password_hash
    assert login(client, "alice").status_code == 200


@pytest.mark.parametrize("extra", [
    {"role": "admin"},
    {"role": "user"},
    {"permissions": ["orders"]},
    {"active": True},
    {"id": 1},
    {"is_admin": True},
])
def test_signup_rejects_any_field_but_username_and_password(app, client, extra):
    resp = client.post("/auth/signup", json={"username": "mallory", "password": PASSWORD, **extra})
    err = assert_error(resp, 400, "validation_error")
    assert set(err["details"]) == set(extra)
    assert user_count(app) == 0
    assert_error(login(client, "mallory"), 401)


def test_signup_cannot_create_an_admin_even_with_role_alone(app, client):
    resp = client.post("/auth/signup", json={"username": "mallory", "password": PASSWORD,
                                             "role": "admin", "permissions": ["orders"]})
    assert_error(resp, 400)
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count(TablePermission.id))).scalar_one() == 0
    assert user_count(app) == 0


@pytest.mark.parametrize("username", ["ab", "a" * 65, "has space", "semi;colon", "ünïcode", "slash/name", "",
                                      "trailing\n"])
def test_signup_rejects_bad_usernames(app, client, username):
    resp = client.post("/auth/signup", json={"username": username, "password": PASSWORD})
    err = assert_error(resp, 400, "validation_error")
    assert "username" in err["details"]
    assert user_count(app) == 0


@pytest.mark.parametrize("username", ["abc", "a" * 64, "A.b-c_9"])
def test_signup_accepts_username_bounds(client, username):
    assert client.post("/auth/signup", json={"username": username, "password": PASSWORD}).status_code == 201


def test_signup_duplicate_username_is_409_case_insensitively(app, client):
    assert client.post("/auth/signup", json={"username": "alice", "password": PASSWORD}).status_code == 201
    assert_error(client.post("/auth/signup", json={"username": "alice", "password": PASSWORD}), 409, "conflict")
    assert_error(client.post("/auth/signup", json={"username": "ALICE", "password": PASSWORD}), 409, "conflict")
    assert user_count(app) == 1


@pytest.mark.parametrize("body", [None, [], "text", {"username": "alice"}, {"password": PASSWORD},
                                  {"username": 5, "password": PASSWORD}, {"username": "alice", "password": None},
                                  {"username": "alice", "password": 12345678}])
def test_signup_malformed_bodies_are_400(app, client, body):
    resp = client.post("/auth/signup", json=body) if body is not None else client.post(
        "/auth/signup", data="{not json", content_type="application/json")
    assert_error(resp, 400)
    assert user_count(app) == 0


@pytest.mark.parametrize("password", ["1234567", TOO_LONG_PASSWORD, "a" * 73, "€" * 25])
def test_signup_password_out_of_bounds_is_400(app, client, password):
    resp = client.post("/auth/signup", json={"username": "alice", "password": password})
    err = assert_error(resp, 400, "validation_error")
    assert "password" in err["details"]
    assert user_count(app) == 0


@pytest.mark.parametrize("password", ["12345678", MAX_PASSWORD, "a" * 72])
def test_signup_password_at_bounds_is_accepted(client, password):
    assert client.post("/auth/signup", json={"username": "alice", "password": password}).status_code == 201
    assert login(client, "alice", password).status_code == 200


# --- login and tokens ---------------------------------------------------------

def test_login_returns_bearer_pair_with_claims(client, accounts):
    uid = accounts.create("alice", tables=["orders", "invoices"])
    resp = login(client, "alice")
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    assert pyjwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    claims = decode(body["access_token"])
    assert claims["sub"] == str(uid)
    assert claims["role"] == "user"
    assert sorted(claims["permissions"]) == ["invoices", "orders"]
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == 15 * 60
    refresh = decode(body["refresh_token"])
    assert refresh["type"] == "refresh" and refresh["sub"] == str(uid)


def test_access_token_lifetime_is_configurable(databases, monkeypatch):
    monkeypatch.setenv("JWT_ACCESS_TOKEN_MINUTES", "5")
    app = make_app(databases)
    from archiver.services import database
    with app.app_context():
        database.init_db()
    try:
        client = app.test_client()
        assert client.post("/auth/signup", json={"username": "alice", "password": PASSWORD}).status_code == 201
        body = login(client, "alice").get_json()
        assert body["expires_in"] == 300
        claims = decode(body["access_token"])
        assert claims["exp"] - claims["iat"] == 300
    finally:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def test_login_unknown_user_and_wrong_password_get_identical_401(client, accounts):
    accounts.create("alice")
    accounts.create("dormant", active=False)
    unknown = login(client, "nobody")
    wrong = login(client, "alice", "wrong-password")
    inactive = login(client, "dormant")
    too_long = login(client, "alice", TOO_LONG_PASSWORD)
    short = login(client, "alice", "x")
    for resp in (unknown, wrong, inactive, too_long, short):
        assert resp.status_code == 401
        assert resp.get_json() == unknown.get_json()
    assert unknown.get_json()["error"]["code"] == "invalid_credentials"


def test_login_for_unknown_user_still_runs_a_bcrypt_check(client, accounts, monkeypatch):
    accounts.create("alice")
    calls = []
    real = auth_service.check_password

    def spy(password, password_hash):
        calls.append(password_hash)
        return real(password, password_hash)

    monkeypatch.setattr(auth_service, "check_password", spy)
    assert login(client, "nobody").status_code == 401
    assert len(calls) == 1 and calls[0].startswith("$2b$04$")
    assert login(client, "alice", "wrong-password").status_code == 401
    assert len(calls) == 2


@pytest.mark.parametrize("body", [{}, {"username": "alice"}, {"username": "alice", "password": PASSWORD, "x": 1},
                                  {"username": ["alice"], "password": PASSWORD}])
def test_login_malformed_body_is_400(client, accounts, body):
    accounts.create("alice")
    assert_error(client.post("/auth/login", json=body), 400, "validation_error")


# --- refresh ------------------------------------------------------------------

def test_refresh_issues_access_token_with_permissions_reread(app, client, accounts):
    uid = accounts.create("alice", tables=["orders"])
    admin = accounts.admin()
    tokens = login(client, "alice").get_json()
    assert decode(tokens["access_token"])["permissions"] == ["orders"]

    resp = client.put(f"/users/{uid}/permissions", json={"permissions": ["orders", "invoices"]}, headers=admin)
    assert resp.status_code == 200
    resp = client.post("/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    claims = decode(body["access_token"])
    assert sorted(claims["permissions"]) == ["invoices", "orders"]
    assert claims["role"] == "user"
    assert claims["sub"] == str(uid)

    # the role is re-read too
    assert client.patch(f"/users/{uid}", json={"role": "admin"}, headers=admin).status_code == 200
    claims = decode(client.post("/auth/refresh", headers=bearer(tokens["refresh_token"])).get_json()["access_token"])
    assert claims["role"] == "admin"
    # and the new token works as an admin's
    new_access = client.post("/auth/refresh", headers=bearer(tokens["refresh_token"])).get_json()["access_token"]
    assert client.get("/users", headers=bearer(new_access)).status_code == 200
    # the old access token still carries the old role
    assert client.get("/users", headers=bearer(tokens["access_token"])).status_code == 403


def test_refresh_requires_refresh_token_and_access_routes_reject_it(client, accounts):
    accounts.create("alice")
    tokens = login(client, "alice").get_json()
    assert_error(client.post("/auth/refresh", headers=bearer(tokens["access_token"])), 401)
    assert_error(client.get("/auth/me", headers=bearer(tokens["refresh_token"])), 401)
    assert_error(client.post("/auth/refresh"), 401)


# --- me -----------------------------------------------------------------------

def test_me_returns_identity_role_and_tables(client, accounts):
    uid = accounts.create("alice", tables=["orders"])
    tokens = login(client, "alice").get_json()
    resp = client.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["id"] == uid
    assert body["username"] == "alice"
    assert body["role"] == "user"
    assert body["permissions"] == ["orders"]
    assert "password_hash" not in body and "password" not in body


def test_me_for_admin(client, accounts):
    headers = accounts.admin("root")
    body = client.get("/auth/me", headers=headers).get_json()
    assert body["username"] == "root" and body["role"] == "admin"


@pytest.mark.parametrize("path, username, password, status", [
    ("/auth/signup", "bob", "\\ud800" * 8, 400),
    ("/auth/signup", "b\\ud800b", PASSWORD, 400),
    ("/auth/signup", "bo\\u0000b", PASSWORD, 400),
    # NUL and lone surrogates are refused by the input guard before any handler runs.
    ("/auth/login", "alice", "\\ud800" * 8, 400),
    ("/auth/login", "al\\ud800", PASSWORD, 400),
    ("/auth/login", "al\\u0000ice", PASSWORD, 400),
    ("/auth/login", "a" * 5000, PASSWORD, 401),
])
def test_unencodable_or_odd_input_is_never_a_500(client, accounts, path, username, password, status):
    """Lone surrogates and NUL are valid JSON escapes but not valid UTF-8 / SQL text."""
    accounts.create("alice")
    raw = '{"username": "%s", "password": "%s"}' % (username, password)
    resp = client.post(path, data=raw, content_type="application/json")
    assert_error(resp, status)
