"""NUL bytes and lone surrogates in any part of a request are a 400, never a 500."""
from __future__ import annotations

import json


def test_nul_in_path_is_400(client, accounts):
    headers = accounts.admin()
    resp = client.get("/config/bad%00name", headers=headers)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["details"] == {"location": "path"}


def test_nul_in_query_is_400(client, accounts):
    headers = accounts.admin()
    resp = client.get("/users?role=ad%00min", headers=headers)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["details"] == {"location": "query"}


def test_nul_and_surrogates_in_json_body_are_400(client, accounts):
    headers = accounts.admin()
    for text in ("ord\x00ers", "\ud800"):
        raw = json.dumps({"table_name": text, "archive_after_days": 30, "delete_after_days": 365})
        resp = client.post("/config", data=raw, headers={**headers, "Content-Type": "application/json"})
        assert resp.status_code == 400, text
        assert resp.get_json()["error"]["details"] == {"location": "body"}


def test_demoted_admin_token_loses_admin_rights_at_once(client, accounts, app):
    from archiver.extensions import db
    from archiver.models import User
    headers = accounts.admin("boss")
    assert client.get("/config/", headers=headers).status_code == 200
    with app.app_context():
        user = db.session.execute(db.select(User).where(User.username == "boss")).scalar_one()
        user.role = "user"
        db.session.commit()
    assert client.get("/config/", headers=headers).status_code == 403
