"""/auth: sign-up without mass assignment, login, token contents, refresh, /me, password bounds."""
from __future__ import annotations

import jwt as pyjwt
import pytest
import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import TablePermission, User
from archiver.services import auth as auth_service
from tests.app_support import PASSWORD, make_app
from tests.archive_helpers import known_tables
from tests.auth_support import MAX_PASSWORD, TOO_LONG_PASSWORD, assert_error, bearer, decode, login, user_count

# --- signup -----------------------------------------------------------------

def test_signup_creates_plain_user_without_permissions(app, client, signup_enabled):
    resp = client.post("/auth/signup", json={"username": "alice", "password": PASSWORD})
    assert resp.status_code == 202
    body = resp.get_json()
    assert body["username"] == "alice"
    assert set(body) == {"username", "message"}
    assert "password" not in body and "password_hash" not in body
    me = client.get("/auth/me", headers=bearer(login(client, "alice").get_json()["access_token"])).get_json()
    assert me["role"] == "user" and me["permissions"] == [] and me["active"] is True
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
def test_signup_rejects_any_field_but_username_and_password(app, client, signup_enabled, extra):
    resp = client.post("/auth/signup", json={"username": "mallory", "password": PASSWORD, **extra})
    err = assert_error(resp, 400, "validation_error")
    assert set(err["details"]) == set(extra)
    assert user_count(app) == 0
    assert_error(login(client, "mallory"), 401)


def test_signup_cannot_create_an_admin_even_with_role_alone(app, client, signup_enabled):
    resp = client.post("/auth/signup", json={"username": "mallory", "password": PASSWORD,
                                             "role": "admin", "permissions": ["orders"]})
    assert_error(resp, 400)
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count(TablePermission.id))).scalar_one() == 0
    assert user_count(app) == 0


@pytest.mark.parametrize("username", ["ab", "a" * 65, "has space", "semi;colon", "ünïcode", "slash/name", "",
                                      "trailing\n"])
def test_signup_rejects_bad_usernames(app, client, signup_enabled, username):
    resp = client.post("/auth/signup", json={"username": username, "password": PASSWORD})
    err = assert_error(resp, 400, "validation_error")
    assert "username" in err["details"]
    assert user_count(app) == 0


@pytest.mark.parametrize("username", ["abc", "a" * 64, "A.b-c_9"])
def test_signup_accepts_username_bounds(app, client, signup_enabled, username):
    assert client.post("/auth/signup", json={"username": username, "password": PASSWORD}).status_code == 202
    assert user_count(app) == 1


def test_signup_of_a_taken_username_is_indistinguishable_and_creates_nothing(app, client, signup_enabled):
    """Sign-up is no enumeration oracle: a taken name (in any case) gets the same answer as a free one."""
    first = client.post("/auth/signup", json={"username": "alice", "password": PASSWORD})
    again = client.post("/auth/signup", json={"username": "alice", "password": "another-secret-phrase"})
    other_case = client.post("/auth/signup", json={"username": "ALICE", "password": "another-secret-phrase"})
    assert first.status_code == again.status_code == other_case.status_code == 202
    assert again.get_json() == first.get_json()
    assert other_case.get_json() == {**first.get_json(), "username": "ALICE"}
    assert user_count(app) == 1
    assert login(client, "alice").status_code == 200  # the first account, its password unchanged
    assert login(client, "alice", "another-secret-phrase").status_code == 401


def test_signup_is_disabled_by_default_outside_development(app, client):
    assert app.config["SIGNUP_ENABLED"] is False
    err = assert_error(client.post("/auth/signup", json={"username": "alice", "password": PASSWORD}), 403,
                       "signup_disabled")
    assert "disabled" in err["message"]
    assert user_count(app) == 0


@pytest.mark.parametrize("body", [None, [], "text", {"username": "alice"}, {"password": PASSWORD},
                                  {"username": 5, "password": PASSWORD}, {"username": "alice", "password": None},
                                  {"username": "alice", "password": 12345678}])
def test_signup_malformed_bodies_are_400(app, client, signup_enabled, body):
    resp = client.post("/auth/signup", json=body) if body is not None else client.post(
        "/auth/signup", data="{not json", content_type="application/json")
    assert_error(resp, 400)
    assert user_count(app) == 0


@pytest.mark.parametrize("password", ["1234567", "12345678901", TOO_LONG_PASSWORD, "a" * 73, "€" * 25])
def test_signup_password_out_of_bounds_is_400(app, client, signup_enabled, password):
    resp = client.post("/auth/signup", json={"username": "alice", "password": password})
    err = assert_error(resp, 400, "validation_error")
    assert "password" in err["details"]
    assert user_count(app) == 0


@pytest.mark.parametrize("password", ["qu1et-ember9", MAX_PASSWORD, "ab" * 36])
def test_signup_password_at_bounds_is_accepted(client, signup_enabled, password):
    assert client.post("/auth/signup", json={"username": "alice", "password": password}).status_code == 202
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
    app = make_app(databases, SIGNUP_ENABLED=True)
    from archiver.services import database
    with app.app_context():
        database.init_db()
    try:
        client = app.test_client()
        assert client.post("/auth/signup", json={"username": "alice", "password": PASSWORD}).status_code == 202
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

def test_refresh_issues_new_tokens_with_permissions_reread(app, client, accounts):
    uid = accounts.create("alice", tables=["orders"])
    admin = accounts.admin()
    known_tables(app, "orders", "invoices")
    tokens = login(client, "alice").get_json()
    assert decode(tokens["access_token"])["permissions"] == ["orders"]

    resp = client.put(f"/users/{uid}/permissions", json={"permissions": ["orders", "invoices"]}, headers=admin)
    assert resp.status_code == 200
    resp = client.post("/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}  # rotated
    assert body["token_type"] == "bearer"
    claims = decode(body["access_token"])
    assert sorted(claims["permissions"]) == ["invoices", "orders"]
    assert claims["role"] == "user"
    assert claims["sub"] == str(uid)
    refreshed = decode(body["refresh_token"])
    assert refreshed["fam"] == decode(tokens["refresh_token"])["fam"] and refreshed["jti"] != decode(
        tokens["refresh_token"])["jti"]

    # A role change ends the user's sessions; the new role comes with the next login.
    assert client.patch(f"/users/{uid}", json={"role": "admin"}, headers=admin).status_code == 200
    assert_error(client.post("/auth/refresh", headers=bearer(body["refresh_token"])), 401, "token_revoked")
    assert_error(client.get("/users", headers=bearer(body["access_token"])), 401, "token_revoked")
    new = login(client, "alice").get_json()
    assert decode(new["access_token"])["role"] == "admin"
    assert client.get("/users", headers=bearer(new["access_token"])).status_code == 200


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


# --- password rules (OWASP ASVS V2.1) ------------------------------------------------------------

@pytest.mark.parametrize("password, reason", [
    ("password", "at least 12 characters"),
    ("12345678", "at least 12 characters"),
    (" " * 8, "at least 12 characters"),
    (" " * 12, "one character repeated or only spaces"),
    ("aaaaaaaaaaaaaaaa", "one character repeated"),
    ("qwerty123456", "too common"),
    ("QWERTY123456", "too common"),  # the list is compared ignoring case
    ("1q2w3e4r5t6y", "too common"),
    ("alice-the-great", "must not contain the username"),
    ("xxALICExx-2024", "must not contain the username"),
])
def test_weak_passwords_are_refused_everywhere_they_are_set(app, client, accounts, signup_enabled, password, reason):
    admin = accounts.admin("root")
    for url, body, headers in (("/auth/signup", {"username": "alice", "password": password}, {}),
                               ("/users/", {"username": "alice", "password": password}, admin)):
        error = assert_error(client.post(url, json=body, headers=headers), 400, "validation_error")
        assert reason in error["details"]["password"][0], (url, error)
    assert user_count(app) == 1  # the admin only


def test_a_password_equal_to_the_username_is_refused(client, accounts):
    admin = accounts.admin("root")
    error = assert_error(client.post("/users/", json={"username": "longusername1", "password": "longusername1"},
                                     headers=admin), 400)
    assert "must not contain the username" in error["details"]["password"][0]


def test_the_common_password_list_ships_with_the_app():
    from archiver.services.passwords import COMMON_PASSWORDS_FILE, common_passwords
    assert COMMON_PASSWORDS_FILE.is_file()
    words = common_passwords()
    assert len(words) > 19_000 and "password" in words and "qwerty123456" in words
    assert all(w == w.lower() for w in list(words)[:1000])
