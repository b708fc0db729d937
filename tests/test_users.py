"""/users: admin-only user administration."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import User
from tests.archive_helpers import known_tables
from tests.auth_support import MAX_PASSWORD, PASSWORD, TOO_LONG_PASSWORD, assert_error, bearer, login, user_count


def get_user_row(app, username: str) -> User | None:
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == username)).scalar_one_or_none()
        if user is not None:
            user.table_names  # load before the session closes
            db.session.expunge(user)
        return user


def assert_no_secrets(resp) -> None:
    text = resp.get_data(as_text=True)
    assert "password" not in text
    assert "$2b$" not in text


# --- who may call ---------------------------------------------------------------

def admin_routes(uid: int):
    return [
        ("get", "/users", None),
        ("get", "/users/", None),
        ("post", "/users", {"username": "newbie", "password": PASSWORD}),
        ("post", "/users/", {"username": "newbie", "password": PASSWORD}),
        ("get", f"/users/{uid}", None),
        ("patch", f"/users/{uid}", {"role": "admin"}),
        ("put", f"/users/{uid}/permissions", {"permissions": ["orders"]}),
        ("delete", f"/users/{uid}", None),
    ]


def test_plain_user_gets_403_on_every_admin_route(app, client, accounts):
    headers = accounts.user("alice", tables=["orders"])
    uid = accounts.create("bob")
    for method, path, body in admin_routes(uid):
        resp = getattr(client, method)(path, json=body, headers=headers)
        assert_error(resp, 403, "forbidden")
    bob = get_user_row(app, "bob")
    assert bob.role == "user" and bob.active and bob.table_names == []
    assert get_user_row(app, "newbie") is None


def test_admin_can_use_every_admin_route(app, client, accounts):
    headers = accounts.admin()
    known_tables(app, "orders")
    uid = accounts.create("bob")
    expected = {"get": 200, "post": 201, "patch": 200, "put": 200, "delete": 200}
    seen_post = False
    for method, path, body in admin_routes(uid):
        if method == "post" and seen_post:
            body = {**body, "username": "newbie2"}
        seen_post = seen_post or method == "post"
        resp = getattr(client, method)(path, json=body, headers=headers)
        assert resp.status_code == expected[method], (method, path, resp.get_json())
        assert_no_secrets(resp)


def test_demoted_admin_with_unexpired_admin_token_is_refused(client, accounts):
    root = accounts.admin("root")
    other = accounts.admin("other")  # token minted while "other" is an admin
    other_id = client.get("/auth/me", headers=other).get_json()["id"]
    assert client.patch(f"/users/{other_id}", json={"role": "user"}, headers=root).status_code == 200
    # a role change ends the user's sessions: the admin-era token is no longer accepted at all
    assert_error(client.get("/users", headers=other), 401, "token_revoked")
    assert_error(client.patch(f"/users/{other_id}", json={"role": "admin"}, headers=other), 401)
    # after a new login the demoted user is an ordinary user
    assert_error(client.get("/users", headers=bearer(login(client, "other").get_json()["access_token"])), 403)


# --- create -----------------------------------------------------------------------

def test_admin_creates_user_with_role_and_deduplicated_permissions(app, client, accounts):
    headers = accounts.admin()
    known_tables(app, "orders", "invoices", "sales.q1")
    resp = client.post("/users", headers=headers, json={
        "username": "carol", "password": PASSWORD, "role": "user",
        "permissions": ["orders", "invoices", "orders", "sales.q1"]})
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["username"] == "carol" and body["role"] == "user" and body["active"] is True
    assert body["permissions"] == ["invoices", "orders", "sales.q1"]
    assert_no_secrets(resp)
    assert get_user_row(app, "carol").table_names == ["invoices", "orders", "sales.q1"]
    tokens = login(client, "carol").get_json()
    assert client.get("/auth/me", headers=bearer(tokens["access_token"])).get_json()["id"] == body["id"]


def test_admin_creates_admin_and_defaults(client, accounts):
    headers = accounts.admin()
    resp = client.post("/users/", headers=headers, json={"username": "root2", "password": PASSWORD, "role": "admin"})
    assert resp.status_code == 201
    assert resp.get_json()["role"] == "admin" and resp.get_json()["permissions"] == []
    resp = client.post("/users", headers=headers, json={"username": "plain", "password": PASSWORD})
    assert resp.get_json()["role"] == "user"


@pytest.mark.parametrize("body, field", [
    ({"username": "x", "password": PASSWORD}, "username"),
    ({"username": "bad name", "password": PASSWORD}, "username"),
    ({"username": "carol", "password": "1234567"}, "password"),
    ({"username": "carol", "password": TOO_LONG_PASSWORD}, "password"),
    ({"username": "carol", "password": PASSWORD, "role": "superuser"}, "role"),
    ({"username": "carol", "password": PASSWORD, "permissions": "orders"}, "permissions"),
    ({"username": "carol", "password": PASSWORD, "permissions": ["1orders"]}, "permissions"),
    ({"username": "carol", "password": PASSWORD, "active": False}, "active"),
    ({"password": PASSWORD}, "username"),
])
def test_create_user_bad_input_is_400_and_creates_nothing(app, client, accounts, body, field):
    headers = accounts.admin()
    resp = client.post("/users", headers=headers, json=body)
    err = assert_error(resp, 400, "validation_error")
    assert field in err["details"]
    assert user_count(app) == 1


def test_create_user_password_at_72_bytes_is_accepted(client, accounts):
    headers = accounts.admin()
    resp = client.post("/users", headers=headers, json={"username": "carol", "password": MAX_PASSWORD})
    assert resp.status_code == 201
    assert login(client, "carol", MAX_PASSWORD).status_code == 200


def test_create_duplicate_user_is_409(client, accounts):
    headers = accounts.admin()
    accounts.create("carol")
    assert_error(client.post("/users", headers=headers, json={"username": "carol", "password": PASSWORD}), 409)
    assert_error(client.post("/users", headers=headers, json={"username": "Carol", "password": PASSWORD}), 409)


# --- list / get ---------------------------------------------------------------------

def test_list_users_paginates_and_filters(client, accounts):
    headers = accounts.admin()
    for i in range(5):
        accounts.create(f"user{i}", tables=["orders"] if i % 2 else [])
    accounts.create("gone", active=False)

    body = client.get("/users?per_page=2&page=1", headers=headers).get_json()
    assert body["total"] == 7 and body["page"] == 1 and body["per_page"] == 2
    assert [u["username"] for u in body["items"]] == ["admin", "user0"]
    page2 = client.get("/users?per_page=2&page=2", headers=headers).get_json()
    assert [u["username"] for u in page2["items"]] == ["user1", "user2"]
    assert page2["items"][0]["permissions"] == ["orders"]
    last = client.get("/users?per_page=2&page=4", headers=headers).get_json()
    assert [u["username"] for u in last["items"]] == ["gone"]
    assert client.get("/users?per_page=2&page=5", headers=headers).get_json()["items"] == []

    default = client.get("/users", headers=headers)
    assert default.get_json()["per_page"] == 50 and len(default.get_json()["items"]) == 7
    assert_no_secrets(default)

    admins = client.get("/users?role=admin", headers=headers).get_json()
    assert [u["username"] for u in admins["items"]] == ["admin"] and admins["total"] == 1
    inactive = client.get("/users?active=false", headers=headers).get_json()
    assert [u["username"] for u in inactive["items"]] == ["gone"]


@pytest.mark.parametrize("query", ["page=0", "per_page=0", "per_page=201", "page=abc", "role=root", "active=maybe"])
def test_list_users_bad_query_is_400(client, accounts, query):
    headers = accounts.admin()
    assert_error(client.get(f"/users?{query}", headers=headers), 400, "validation_error")


def test_get_user_and_unknown_is_404(client, accounts):
    headers = accounts.admin()
    uid = accounts.create("bob", tables=["orders"])
    resp = client.get(f"/users/{uid}", headers=headers)
    assert resp.status_code == 200
    assert resp.get_json()["username"] == "bob" and resp.get_json()["permissions"] == ["orders"]
    assert_no_secrets(resp)
    assert_error(client.get("/users/999999", headers=headers), 404, "not_found")
    assert_error(client.get("/users/abc", headers=headers), 404)
    assert_error(client.patch("/users/999999", json={"active": False}, headers=headers), 404)
    assert_error(client.put("/users/999999/permissions", json={"permissions": []}, headers=headers), 404)
    assert_error(client.delete("/users/999999", headers=headers), 404)


# --- patch --------------------------------------------------------------------------

def test_patch_changes_role_and_active(app, client, accounts):
    headers = accounts.admin()
    uid = accounts.create("bob")
    resp = client.patch(f"/users/{uid}", json={"role": "admin"}, headers=headers)
    assert resp.status_code == 200 and resp.get_json()["role"] == "admin"
    resp = client.patch(f"/users/{uid}", json={"role": "user", "active": False}, headers=headers)
    assert resp.get_json()["role"] == "user" and resp.get_json()["active"] is False
    assert_error(login(client, "bob"), 401)
    resp = client.patch(f"/users/{uid}", json={"active": True}, headers=headers)
    assert resp.get_json()["active"] is True
    assert login(client, "bob").status_code == 200


def test_admin_cannot_demote_or_deactivate_themself(app, client, accounts):
    headers = accounts.admin("root")
    me = client.get("/auth/me", headers=headers).get_json()["id"]
    assert_error(client.patch(f"/users/{me}", json={"role": "user"}, headers=headers), 409, "conflict")
    assert_error(client.patch(f"/users/{me}", json={"active": False}, headers=headers), 409, "conflict")
    assert_error(client.delete(f"/users/{me}", headers=headers), 409, "conflict")
    row = get_user_row(app, "root")
    assert row.role == "admin" and row.active
    # a no-op on themself is fine
    assert client.patch(f"/users/{me}", json={"role": "admin", "active": True}, headers=headers).status_code == 200


@pytest.mark.parametrize("body", [{}, {"active": "yes"}, {"active": 0}, {"role": "root"}, {"password": PASSWORD},
                                  {"username": "renamed"}, {"permissions": ["orders"]}])
def test_patch_bad_body_is_400(app, client, accounts, body):
    headers = accounts.admin()
    uid = accounts.create("bob")
    assert_error(client.patch(f"/users/{uid}", json=body, headers=headers), 400, "validation_error")
    row = get_user_row(app, "bob")
    assert row.role == "user" and row.active


# --- permissions ----------------------------------------------------------------------

def test_put_permissions_replaces_and_deduplicates(app, client, accounts):
    headers = accounts.admin()
    uid = accounts.create("bob", tables=["orders", "invoices"])
    long_name = "t" * 255
    known_tables(app, "invoices", "customers", long_name)
    resp = client.put(f"/users/{uid}/permissions", headers=headers,
                      json={"permissions": ["invoices", "customers", "customers", long_name]})
    assert resp.status_code == 200
    assert resp.get_json()["permissions"] == ["customers", "invoices", long_name]
    assert get_user_row(app, "bob").table_names == ["customers", "invoices", long_name]
    resp = client.put(f"/users/{uid}/permissions", headers=headers, json={"permissions": []})
    assert resp.get_json()["permissions"] == []
    assert get_user_row(app, "bob").table_names == []


@pytest.mark.parametrize("body", [
    {},
    {"permissions": "orders"},
    {"permissions": None},
    {"permissions": [""]},
    {"permissions": ["t" * 256]},
    {"permissions": ["1orders"]},
    {"permissions": ["orders; DROP TABLE users"]},
    {"permissions": ["a.b.c"]},
    {"permissions": [42]},
    {"permissions": ["orders"], "extra": 1},
])
def test_put_permissions_bad_input_is_400_and_changes_nothing(app, client, accounts, body):
    headers = accounts.admin()
    uid = accounts.create("bob", tables=["orders"])
    assert_error(client.put(f"/users/{uid}/permissions", json=body, headers=headers), 400, "validation_error")
    assert get_user_row(app, "bob").table_names == ["orders"]


# --- deactivate ---------------------------------------------------------------------

def test_delete_deactivates_and_locks_the_user_out(app, client, accounts):
    headers = accounts.admin()
    uid = accounts.create("bob", tables=["orders"])
    tokens = login(client, "bob").get_json()
    assert client.get("/auth/me", headers=bearer(tokens["access_token"])).status_code == 200

    resp = client.delete(f"/users/{uid}", headers=headers)
    assert resp.status_code == 200 and resp.get_json()["active"] is False
    assert get_user_row(app, "bob") is not None  # kept, only deactivated

    assert_error(login(client, "bob"), 401, "invalid_credentials")
    assert_error(client.post("/auth/refresh", headers=bearer(tokens["refresh_token"])), 401)
    assert_error(client.get("/auth/me", headers=bearer(tokens["access_token"])), 401)
    # idempotent
    assert client.delete(f"/users/{uid}", headers=headers).status_code == 200


def test_deactivated_admin_token_stops_working_on_admin_routes(client, accounts):
    root = accounts.admin("root")
    other = accounts.admin("other")
    other_id = client.get("/auth/me", headers=other).get_json()["id"]
    assert client.delete(f"/users/{other_id}", headers=root).status_code == 200
    assert_error(client.get("/users", headers=other), 401)


def test_grant_to_a_table_that_does_not_exist_is_refused(app, client, accounts, source_engine, archive_engine):
    """A table exists when it is a source table, has a policy or has archived rows; any other
    name is refused (400 naming it), on create and on replace; an existing grant may be kept."""
    from tests.archive_helpers import archive_synthetic
    headers = accounts.admin()
    with source_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE live_src (id INTEGER PRIMARY KEY)")
    archive_synthetic(archive_engine, "only_archived", 1)
    known_tables(app, "with_policy")
    uid = accounts.create("bob", tables=["dropped_long_ago"])
    resp = client.put(f"/users/{uid}/permissions", headers=headers,
                      json={"permissions": ["live_src", "only_archived", "with_policy", "dropped_long_ago"]})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["permissions"] == ["dropped_long_ago", "live_src", "only_archived", "with_policy"]
    resp = client.put(f"/users/{uid}/permissions", headers=headers, json={"permissions": ["live_src", "typo"]})
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["code"] == "unknown_table" and "typo" in error["message"]
    assert "typo" in error["details"]["permissions"]["1"][0]
    assert get_user_row(app, "bob").table_names == ["dropped_long_ago", "live_src", "only_archived", "with_policy"]
    resp = client.post("/users", headers=headers, json={"username": "carol", "password": PASSWORD,
                                                        "permissions": ["nope"]})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "unknown_table"
    assert get_user_row(app, "carol") is None
