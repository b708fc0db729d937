"""The OpenAPI document covers every route, its errors and its security (generic over app.url_map)."""
from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

# Operations anyone may call; every other operation must require a bearer token.
PUBLIC = {("/health", "get"), ("/ready", "get"), ("/auth/signup", "post"), ("/auth/login", "post")}
BEARER = {"bearerAuth": []}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
_CONVERTER = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


def documented_rules(app):
    """url_map rules that the document must describe (not static files, the docs themselves, the
    console's HTML pages at /ui/, which are not part of the JSON API: tests/test_console.py, or
    Prometheus's /metrics: tests/test_monitoring.py)."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith(("api-docs.", "docs-ui.", "console.", "metrics.")):
            continue
        yield rule


def spec_path(rule) -> str:
    return _CONVERTER.sub(r"{\1}", rule.rule)


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in {"get", "put", "post", "delete", "patch"}:
                yield path, method, op


def resolve(spec: dict, obj: dict) -> dict:
    while "$ref" in obj:
        node: Any = spec
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def is_error_envelope(spec: dict, schema: dict) -> bool:
    schema = resolve(spec, schema)
    error = schema.get("properties", {}).get("error")
    if not error:
        return False
    inner = resolve(spec, error.get("allOf", [error])[0])
    return {"code", "message", "details"} <= set(inner.get("properties", {}))


@pytest.fixture
def spec(client) -> dict:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["openapi"].startswith("3.")
    return doc


def test_every_route_is_in_the_document_with_its_methods(app, spec):
    missing = []
    for rule in documented_rules(app):
        path = spec_path(rule)
        documented = set(spec["paths"].get(path, {}))
        for method in sorted(rule.methods - IGNORED_METHODS):
            if method.lower() not in documented:
                missing.append(f"{method} {path}")
    assert not missing, f"routes missing from /openapi.json: {missing}"


def test_no_documented_operation_without_a_route(app, spec):
    served = {(spec_path(r), m.lower()) for r in documented_rules(app) for m in r.methods - IGNORED_METHODS}
    stale = [(p, m) for p, m, _ in operations(spec) if (p, m) not in served]
    assert not stale, f"documented but not served: {stale}"


def test_path_parameters_are_documented(spec):
    for path, method, op in operations(spec):
        names = set(re.findall(r"{([^}]+)}", path))
        params = [resolve(spec, p) for p in op.get("parameters", []) + spec["paths"][path].get("parameters", [])]
        declared = {p["name"] for p in params if p.get("in") == "path"}
        assert names <= declared, f"{method.upper()} {path}: undocumented path parameters {names - declared}"


def test_every_operation_declares_a_4xx_error_with_the_envelope(spec):
    assert is_error_envelope(spec, {"$ref": "#/components/schemas/Error"})
    for path, method, op in operations(spec):
        responses = op["responses"]
        errors = {code: resp for code, resp in responses.items() if code.isdigit() and 400 <= int(code) < 500}
        assert errors, f"{method.upper()} {path} declares no 4xx response"
        for code, resp in errors.items():
            schema = resolve(spec, resp).get("content", {}).get("application/json", {}).get("schema")
            assert schema and is_error_envelope(spec, schema), \
                f"{method.upper()} {path} {code} does not use the error envelope schema"
        assert any(code.startswith("2") for code in responses), f"{method.upper()} {path} has no success response"


def test_request_bodies_reference_a_schema(spec):
    for path, method, op in operations(spec):
        body = op.get("requestBody")
        if body:
            schema = resolve(spec, body)["content"]["application/json"]["schema"]
            assert resolve(spec, schema).get("properties") is not None, f"{method.upper()} {path}"


def test_security_bearer_by_default_public_routes_explicitly_open(spec):
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    default = spec.get("security", [])
    seen_public = set()
    for path, method, op in operations(spec):
        if (path, method) in PUBLIC:
            seen_public.add((path, method))
            assert op.get("security") == [], f"{method.upper()} {path} must declare security: []"
        else:
            effective = op.get("security", default)
            assert BEARER in effective, f"{method.upper()} {path} must require the bearer token"
    assert seen_public == PUBLIC


def test_bearer_operations_really_refuse_anonymous_callers(app, client, spec):
    """What the document claims matches behaviour: no token -> 401 before anything else."""
    adapter = app.url_map.bind("localhost")
    for rule in documented_rules(app):
        values = {arg: 1 for arg in rule.arguments}
        url = adapter.build(rule.endpoint, values, force_external=False)
        for method in sorted(rule.methods - IGNORED_METHODS):
            if (spec_path(rule), method.lower()) in PUBLIC:
                continue
            resp = client.open(url, method=method)
            assert resp.status_code == 401, f"{method} {url} without a token gave {resp.status_code}"
            assert resp.get_json()["error"]["code"].startswith("token_")


def test_interactive_docs_are_served(client):
    resp = client.get("/docs")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert "swagger-ui" in page and "openapi.json" in page
