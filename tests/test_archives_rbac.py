"""Per-table RBAC on every /archives route: a user granted A can never reach B's archive."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.archive_helpers import archive_from_source, archive_synthetic, archived_ids


@pytest.fixture
def tables(archive_engine, source_engine):
    """Archived rows in tables "a" and "b" ("b" also exists in the source, so it is restorable)."""
    a_ids = archive_synthetic(archive_engine, "a", 3)
    b = sa.Table("b", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                 sa.Column("name", sa.Text))
    b.metadata.create_all(source_engine)
    with source_engine.begin() as conn:
        conn.execute(b.insert(), [{"id": i, "name": f"b{i}"} for i in range(1, 4)])
    b_ids, _ = archive_from_source(source_engine, archive_engine, "b")
    return a_ids, b_ids


def _forbidden(resp):
    assert resp.status_code == 403, resp.get_json()
    assert resp.get_json()["error"]["code"] == "forbidden"


def test_user_granted_a_reads_a_and_never_b(client, accounts, tables, archive_engine):
    a_ids, b_ids = tables
    user = accounts.user("ann", tables=["a"])

    assert [t["table_name"] for t in client.get("/archives/", headers=user).get_json()["items"]] == ["a"]
    assert len(client.get("/archives/a", headers=user).get_json()["items"]) == 3
    assert client.get(f"/archives/a/{a_ids[0]}", headers=user).status_code == 200
    assert client.get("/archives/a/export", headers=user).status_code == 200

    _forbidden(client.get("/archives/b", headers=user))
    _forbidden(client.get("/archives/b?order=asc&limit=1", headers=user))
    _forbidden(client.get(f"/archives/b/{b_ids[0]}", headers=user))
    _forbidden(client.get("/archives/b/export", headers=user))
    _forbidden(client.get("/archives/b/export?format=csv", headers=user))
    _forbidden(client.post("/archives/b/restore", headers=user, json={"all": True}))
    _forbidden(client.post("/archives/b/restore", headers=user, json={"ids": b_ids}))
    # guessing B's ids under A's URL finds nothing
    for b_id in b_ids:
        resp = client.get(f"/archives/a/{b_id}", headers=user)
        assert resp.status_code == 404
        assert "b" not in resp.get_json()["error"]["message"].split()
    # B's rows never appear in A's listing or export, whatever the filters
    listed = client.get("/archives/a?limit=1000", headers=user).get_json()["items"]
    assert {i["id"] for i in listed} == set(a_ids)
    assert client.get("/archives/a?source_pk=1", headers=user).get_json()["items"][0]["id"] == a_ids[0]
    exported = client.get("/archives/a/export", headers=user).get_data()
    assert len(exported.splitlines()) == 3
    assert archived_ids(archive_engine, "b") == b_ids


def test_restore_is_admin_only_even_for_a_granted_table(client, accounts, tables, archive_engine):
    _, b_ids = tables
    user = accounts.user("bea", tables=["b"])
    _forbidden(client.post("/archives/b/restore", headers=user, json={"ids": b_ids}))
    _forbidden(client.post("/archives/b/restore", headers=user, json={}))  # authorization before validation
    assert archived_ids(archive_engine, "b") == b_ids
    admin = accounts.admin()
    assert client.post("/archives/b/restore", headers=admin, json={"ids": b_ids}).get_json()["restored"] == 3


def test_unknown_table_is_404_for_admin_and_403_for_users(client, accounts, tables):
    admin = accounts.admin()
    user = accounts.user("cal", tables=["a"])
    for method, url in (("get", "/archives/nope"), ("get", "/archives/nope/1"),
                        ("get", "/archives/nope/export"), ("post", "/archives/nope/restore")):
        kwargs = {"json": {"all": True}} if method == "post" else {}
        assert getattr(client, method)(url, headers=admin, **kwargs).status_code == 404, url
        # a user cannot tell an unknown table from an existing one it is not granted
        _forbidden(getattr(client, method)(url, headers=user, **kwargs))
        _forbidden(getattr(client, method)(url.replace("nope", "b"), headers=user, **kwargs))


def test_cursor_from_a_cannot_open_b(client, accounts, tables):
    admin = accounts.admin()
    user = accounts.user("dan", tables=["a"])
    cursor = client.get("/archives/a?limit=1", headers=user).get_json()["next_cursor"]
    _forbidden(client.get("/archives/b", headers=user, query_string={"cursor": cursor}))
    assert client.get("/archives/b", headers=admin, query_string={"cursor": cursor}).status_code == 400


def test_every_route_needs_a_valid_token(client, tables):
    a_ids, _ = tables
    for method, url in (("get", "/archives/"), ("get", "/archives"), ("get", "/archives/a"),
                        ("get", f"/archives/a/{a_ids[0]}"), ("get", "/archives/a/export"),
                        ("post", "/archives/a/restore")):
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            resp = getattr(client, method)(url, headers=headers)
            assert resp.status_code == 401, (method, url)
            assert resp.get_json()["error"]["code"].startswith("token_")


def test_user_without_grants_sees_nothing(client, accounts, tables):
    a_ids, _ = tables
    user = accounts.user("eve")
    assert client.get("/archives/", headers=user).get_json() == {"items": []}
    _forbidden(client.get("/archives/a", headers=user))
    _forbidden(client.get(f"/archives/a/{a_ids[0]}", headers=user))
    _forbidden(client.get("/archives/a/export", headers=user))


def test_routes_are_documented_in_openapi(client):
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]
    expected = {"/archives/": ["get"], "/archives/{table_name}": ["get"],
                "/archives/{table_name}/{row_id}": ["get"], "/archives/{table_name}/export": ["get"],
                "/archives/{table_name}/restore": ["post"]}
    for path, methods in expected.items():
        for method in methods:
            op = paths[path][method]
            for status in ("400", "401"):
                assert status in op["responses"], (path, status)
            assert "security" not in op or op["security"]  # bearer (the default), never public
    restore = paths["/archives/{table_name}/restore"]["post"]
    assert {"403", "404", "409"} <= set(restore["responses"])
    assert "requestBody" in restore
    export = paths["/archives/{table_name}/export"]["get"]
    assert {"application/x-ndjson", "text/csv"} <= set(export["responses"]["200"]["content"])
