"""Token checks: every protected route refuses missing, malformed, forged and expired tokens with 401.

Forged tokens are built with PyJWT directly, never through the app.
"""
from __future__ import annotations

import base64
import json
import time
import uuid
import warnings

import jwt as pyjwt
import pytest

from tests.app_support import JWT_SECRET
from tests.auth_support import PASSWORD, assert_error, bearer, dummy_path_values, login

OTHER_SECRET = "another-secret-that-is-also-long-enough-0123456789"

# Routes anyone may call without a token; everything else must be protected.
# /metrics: off by default (404), else its own METRICS_TOKEN, never a user's (tests/test_monitoring.py).
PUBLIC_RULES = {"/health", "/ready", "/openapi.json", "/auth/signup", "/auth/login", "/metrics"}
# /ui/: the console's pages take a cookie session, not a bearer token (tests/test_console.py checks
# that every one of them needs that session).
PUBLIC_PREFIXES = ("/docs", "/static", "/ui/")


def b64url(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


NO_SESSION = "0" * 32  # a well-formed family id that names no login session


def claims(sub: int | str, role: str = "admin", permissions=(), token_type: str = "access",
           lifetime: int = 600, fam: str = NO_SESSION, ver: int = 0, jti: str | None = None) -> dict:
    now = int(time.time())
    body = {"sub": str(sub), "type": token_type, "fresh": False, "jti": jti or uuid.uuid4().hex,
            "iat": now, "nbf": now, "exp": now + lifetime, "ver": ver, "fam": fam}
    if token_type == "access":
        body.update(role=role, permissions=list(permissions))
    return body


def signed(payload: dict, key: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():  # PyJWT warns about the key length for HS512
        warnings.simplefilter("ignore")
        return pyjwt.encode(payload, key, algorithm=algorithm)


def unsigned(payload: dict) -> str:
    """An ``alg: none`` token (empty signature)."""
    return f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(payload)}."


def tampered(token: str, **changes) -> str:
    """``token`` with claims changed but the original header and signature kept."""
    header, payload, signature = token.split(".")
    data = b64url_decode(payload)
    data.update(changes)
    return f"{header}.{b64url(data)}.{signature}"


def forged_tokens(admin_id: int, user_id: int, user_token: str, token_type: str = "access",
                  admin_fam: str = NO_SESSION) -> dict[str, str]:
    """Bad tokens that name real, active users; a valid token with the same claims would be accepted."""
    good = claims(admin_id, token_type=token_type, fam=admin_fam)
    return {
        "expired": signed(claims(admin_id, token_type=token_type, lifetime=-120)),
        "alg_none": unsigned(good),
        "alg_none_upper": f"{b64url({'alg': 'None', 'typ': 'JWT'})}.{b64url(good)}.",
        "other_key": signed(good, OTHER_SECRET),
        "hs512_same_key": signed(good, JWT_SECRET, "HS512"),
        "tampered_role": tampered(user_token, role="admin", permissions=["orders"]),
        "tampered_sub": tampered(user_token, sub=str(admin_id)),
        "tampered_exp": tampered(signed(claims(user_id, token_type=token_type, lifetime=-120)),
                                 exp=int(time.time()) + 3600),
        "garbage": "not.a.jwt",
        "empty_signature": signed(good).rsplit(".", 1)[0] + ".",
        "unknown_user": signed(claims(987654, token_type=token_type)),
        "non_numeric_sub": signed(claims("root", token_type=token_type)),
    }


# Routes of /auth and /users that need a token, with a valid request body.
PROTECTED = [
    ("get", "/auth/me", None),
    ("get", "/users", None),
    ("post", "/users", {"username": "newbie", "password": PASSWORD}),
    ("get", "/users/{uid}", None),
    ("patch", "/users/{uid}", {"role": "admin"}),
    ("put", "/users/{uid}/permissions", {"permissions": ["orders"]}),
    ("delete", "/users/{uid}", None),
]


@pytest.fixture
def people(client, accounts):
    admin_id = accounts.create("root", role="admin")
    user_id = accounts.create("alice", tables=["invoices"])
    user_tokens = login(client, "alice").get_json()
    admin_tokens = login(client, "root").get_json()
    admin_refresh = pyjwt.decode(admin_tokens["refresh_token"], JWT_SECRET, algorithms=["HS256"])
    return {"admin_id": admin_id, "user_id": user_id, "user": user_tokens, "admin": admin_tokens,
            "admin_fam": admin_refresh["fam"], "admin_refresh_jti": admin_refresh["jti"]}


def test_valid_tokens_are_accepted_as_a_baseline(client, people):
    """The forged variants below differ from these only in the defect under test."""
    good_admin = signed(claims(people["admin_id"], fam=people["admin_fam"]))
    assert client.get("/auth/me", headers=bearer(good_admin)).status_code == 200
    assert client.get("/users", headers=bearer(good_admin)).status_code == 200
    good_refresh = signed(claims(people["admin_id"], token_type="refresh", fam=people["admin_fam"],
                                 jti=people["admin_refresh_jti"]))
    assert client.post("/auth/refresh", headers=bearer(good_refresh)).status_code == 200


@pytest.mark.parametrize("method, path, body", PROTECTED)
def test_protected_routes_refuse_bad_access_tokens(app, client, people, method, path, body):
    path = path.format(uid=people["user_id"])
    send = getattr(client, method)
    assert_error(send(path, json=body), 401, "token_missing")
    for header in ("Bearer", "Bearer ", "Basic cm9vdDpwYXNzd29yZA==", "Token abc", "bearer"):
        assert_error(send(path, json=body, headers={"Authorization": header}), 401)
    forged = forged_tokens(people["admin_id"], people["user_id"], people["user"]["access_token"],
                           admin_fam=people["admin_fam"])
    for name, token in forged.items():
        resp = send(path, json=body, headers=bearer(token))
        assert resp.status_code == 401, (name, resp.get_json())
        assert_error(resp, 401)
        assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer")
    # a refresh token is not an access token
    assert_error(send(path, json=body, headers=bearer(people["admin"]["refresh_token"])), 401)
    assert_error(send(path, json=body, headers=bearer(signed(claims(people["admin_id"], token_type="refresh")))), 401)
    # nothing changed
    with app.app_context():
        from archiver.extensions import db
        from archiver.models import User
        alice = db.session.get(User, people["user_id"])
        assert alice.role == "user" and alice.active and alice.table_names == ["invoices"]
        assert db.session.query(User).count() == 2


def test_refresh_route_refuses_bad_refresh_tokens(client, people):
    forged = forged_tokens(people["admin_id"], people["user_id"], people["user"]["refresh_token"], "refresh",
                           admin_fam=people["admin_fam"])
    for name, token in forged.items():
        resp = client.post("/auth/refresh", headers=bearer(token))
        assert resp.status_code == 401, (name, resp.get_json())
        assert_error(resp, 401)
    assert_error(client.post("/auth/refresh"), 401, "token_missing")
    assert_error(client.post("/auth/refresh", headers=bearer(people["admin"]["access_token"])), 401)
    assert_error(client.post("/auth/refresh", headers=bearer(signed(claims(people["admin_id"])))), 401)


def test_expired_token_code(client, people):
    expired = signed(claims(people["admin_id"], lifetime=-120))
    assert_error(client.get("/auth/me", headers=bearer(expired)), 401, "token_expired")


def test_token_of_deactivated_user_is_401(client, accounts, people):
    headers = bearer(people["admin"]["access_token"])
    assert client.delete(f"/users/{people['user_id']}", headers=headers).status_code == 200
    assert_error(client.get("/auth/me", headers=bearer(people["user"]["access_token"])), 401, "user_inactive")
    forged_admin_claims = signed(claims(people["user_id"], role="admin"))
    assert_error(client.get("/users", headers=bearer(forged_admin_claims)), 401, "user_inactive")


def test_user_sees_only_own_grants_admin_sees_all(client, people):
    me = client.get("/auth/me", headers=bearer(people["user"]["access_token"])).get_json()
    assert me["role"] == "user" and me["permissions"] == ["invoices"]
    assert_error(client.get("/users", headers=bearer(people["user"]["access_token"])), 403)
    listing = client.get("/users", headers=bearer(people["admin"]["access_token"])).get_json()
    assert {u["username"] for u in listing["items"]} == {"root", "alice"}


# --- every protected route in the app ---------------------------------------------------

def _is_public(rule: str) -> bool:
    return rule in PUBLIC_RULES or rule.startswith(PUBLIC_PREFIXES)


def protected_requests(app) -> list[tuple[str, str, str]]:
    adapter = app.url_map.bind("localhost")
    found = []
    for rule in app.url_map.iter_rules():
        if _is_public(rule.rule):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            path = adapter.build(rule.endpoint, dummy_path_values(rule), method=method)
            found.append((rule.rule, method, path))
    return found


def test_every_protected_route_answers_401_without_a_token(app, client):
    requests = protected_requests(app)
    covered = {(rule, method) for rule, method, _ in requests}
    # the routes of this module are among them (guards against an empty or broken list)
    assert {("/auth/me", "GET"), ("/auth/refresh", "POST"), ("/users/", "GET"), ("/users/", "POST"),
            ("/users/<id:user_id>", "PATCH"), ("/users/<id:user_id>/permissions", "PUT")} <= covered
    failures = []
    for rule, method, path in requests:
        resp = client.open(path, method=method)
        body = resp.get_json(silent=True)
        ok = (resp.status_code == 401 and isinstance(body, dict) and set(body) == {"error"}
              and {"code", "message", "details"} == set(body["error"]))
        if not ok:
            failures.append((method, rule, resp.status_code, body))
    assert failures == []


def test_every_protected_route_answers_401_with_a_forged_token(app, client, people):
    forged = signed(claims(people["admin_id"]), OTHER_SECRET)
    failures = []
    for rule, method, path in protected_requests(app):
        resp = client.open(path, method=method, headers=bearer(forged))
        if resp.status_code != 401 or "error" not in (resp.get_json(silent=True) or {}):
            failures.append((method, rule, resp.status_code))
    assert failures == []
