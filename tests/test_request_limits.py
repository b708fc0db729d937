"""Oversized, malformed and non-JSON bodies get the JSON error envelope, never a 500 or HTML."""
from __future__ import annotations

import json

import pytest

from archiver.extensions import db
from archiver.models import ArchivePolicy


@pytest.fixture
def admin(accounts):
    return accounts.admin("admin")


def assert_envelope(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


def nothing_stored(app) -> bool:
    with app.app_context():
        return db.session.query(ArchivePolicy).count() == 0


def test_two_mib_body_is_413_in_the_envelope(app, client, admin):
    body = json.dumps({"table_name": "orders", "archive_after_days": 1, "delete_after_days": 2,
                       "custom_criteria": "x" * (2 * 1024 * 1024)})
    resp = client.post("/config", data=body, content_type="application/json", headers=admin)
    assert_envelope(resp, 413, "payload_too_large")
    assert nothing_stored(app)


def test_body_just_over_the_limit_is_413(client, admin):
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    assert limit == 1024 * 1024
    resp = client.post("/config", data=b"{" + b" " * limit + b"}", content_type="application/json", headers=admin)
    assert_envelope(resp, 413, "payload_too_large")


def test_invalid_json_is_400(app, client, admin):
    resp = client.post("/config", data='{"table_name": "orders",', content_type="application/json", headers=admin)
    error = assert_envelope(resp, 400, "validation_error")
    assert "Invalid JSON" in json.dumps(error["details"])
    assert nothing_stored(app)


def test_non_utf8_json_is_400(client, admin):
    resp = client.post("/config", data=b'{"table_name": "\xff\xfe"}', content_type="application/json", headers=admin)
    assert_envelope(resp, 400, "validation_error")


@pytest.mark.parametrize("payload", ["[1, 2]", '"orders"', "null", "42"])
def test_json_that_is_not_an_object_is_400(client, admin, payload):
    resp = client.post("/config", data=payload, content_type="application/json", headers=admin)
    assert_envelope(resp, 400, "validation_error")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"])
def test_non_json_content_type_is_415(app, client, admin, content_type):
    resp = client.post("/config", data="table_name=orders&archive_after_days=1&delete_after_days=2",
                       content_type=content_type, headers=admin)
    error = assert_envelope(resp, 415, "unsupported_media_type")
    assert "JSON" in error["message"]
    assert nothing_stored(app)


def test_missing_body_is_400_naming_required_fields(client, admin):
    resp = client.post("/config", headers=admin)
    error = assert_envelope(resp, 400, "validation_error")
    assert {"table_name", "archive_after_days", "delete_after_days"} <= set(error["details"])


def test_unknown_route_is_json_404(client, admin):
    assert_envelope(client.get("/config/orders/nothing/here", headers=admin), 404, "not_found")
    assert_envelope(client.post("/nope", json={}), 404, "not_found")


def test_wrong_method_is_json_405(client, admin):
    assert_envelope(client.put("/config/", json={}, headers=admin), 405, "method_not_allowed")
