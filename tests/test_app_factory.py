"""The factory, the error envelope and the liveness/readiness routes."""
from __future__ import annotations

import pytest

from config import ConfigError, load_config, validate_config
from tests.conftest import make_app


def test_health_needs_no_database(client):
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_ready_when_both_databases_answer(client):
    resp = client.get("/ready")
    assert resp.status_code == 200
    assert resp.get_json()["databases"] == {"archive": "ok", "source": "ok"}


def test_ready_is_503_naming_the_unreachable_database(databases, tmp_path):
    broken = "postgresql://nobody@127.0.0.1:1/none" 
    app = make_app(databases, SOURCE_DATABASE_URL=broken)
    resp = app.test_client().get("/ready")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["error"]["code"] == "unavailable"
    assert body["error"]["details"] == {"failed": ["source"], "states": {"archive": "ok", "source": "unreachable"}}
    assert "127.0.0.1" not in resp.get_data(as_text=True)


def test_unknown_route_is_json_404(client):
    resp = client.get("/no/such/route")
    assert resp.status_code == 404
    assert resp.get_json() == {"error": {"code": "not_found", "message": "Not found", "details": None}}


def test_wrong_method_is_json_405(client):
    resp = client.delete("/health")
    assert resp.status_code == 405
    assert resp.get_json()["error"]["code"] == "method_not_allowed"


def test_production_refuses_short_secret_and_missing_urls():
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY"):
        validate_config(load_config("/tmp", {"ARCHIVER_ENV": "production", "JWT_SECRET_KEY": "short",
                                             "SOURCE_DATABASE_URL": "sqlite://", "ARCHIVE_DATABASE_URL": "sqlite://"}))
    with pytest.raises(ConfigError, match="ARCHIVE_DATABASE_URL"):
        validate_config(load_config("/tmp", {"ARCHIVER_ENV": "production", "JWT_SECRET_KEY": "x" * 40,
                                             "SOURCE_DATABASE_URL": "sqlite://"}))


def test_bad_environment_values_are_rejected():
    with pytest.raises(ConfigError, match="ARCHIVER_ENV"):
        load_config("/tmp", {"ARCHIVER_ENV": "staging"})
    with pytest.raises(ConfigError, match="ARCHIVE_INTERVAL_SECONDS"):
        load_config("/tmp", {"ARCHIVER_ENV": "testing", "ARCHIVE_INTERVAL_SECONDS": "soon"})


def test_openapi_document_is_served(client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    spec = resp.get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "/health" in spec["paths"]
