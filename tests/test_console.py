"""The console (/ui/) through Flask's test client: sign-in cookies and their flags, CSRF, RBAC on every
page, browsing (a row with the rows archived with it), the admin pages and their audit records, error
pages (every backend)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from archiver.api.headers import PAGE_CSP
from archiver.engine import schema
from archiver.extensions import db
from archiver.models import ArchivePolicy, AuditEvent, User
from archiver.services import jobs
from tests.archive_helpers import archive_from_source, archive_synthetic
from tests.app_support import PASSWORD
from tests.auth_support import dummy_path_values
from tests.relational_support import fill_orders, orders_schema

ACCESS, REFRESH, CSRF = "archiver_access", "archiver_refresh", "archiver_csrf_access"


def login(client, username: str, password: str = PASSWORD, next_path: str | None = None):
    page = client.get("/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    data = {"username": username, "password": password, "csrf_token": token}
    if next_path:
        data["next"] = next_path
    return client.post("/ui/login", data=data)


def csrf(client) -> str:
    cookie = client.get_cookie(CSRF, path="/ui/")
    assert cookie is not None
    return cookie.value


def post(client, path: str, data: dict | None = None, **kwargs):
    return client.post(path, data={"csrf_token": csrf(client), **(data or {})}, **kwargs)


def text(resp) -> str:
    return resp.get_data(as_text=True)


def set_cookies(resp) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in resp.headers.getlist("Set-Cookie")}


@pytest.fixture
def orders(source_engine, archive_engine):
    """A source table ``orders`` archived (30 rows, one NULL amount), and ``events`` archived too."""
    md = sa.MetaData()
    table = sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("status", sa.String(20)), sa.Column("amount", sa.Numeric(10, 2)),
                     sa.Column("created_at", sa.DateTime, nullable=False))
    md.create_all(source_engine)
    with source_engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "status": "open" if i % 3 == 0 else "closed",
                                       "amount": None if i == 7 else f"{i}.50",
                                       "created_at": datetime(2023, 1, 1) + timedelta(days=i)} for i in range(1, 31)])
    ids, _ = archive_from_source(source_engine, archive_engine, "orders", date_column="created_at")
    archive_synthetic(archive_engine, "events", 3)
    return ids


# --- sign-in, cookies, CSRF ------------------------------------------------------------------------

def test_login_sets_httponly_strict_cookies_and_logout_clears_them(app, client, accounts):
    accounts.create("ann")
    resp = login(client, "ann", next_path="/ui/account")
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/account"
    cookies = set_cookies(resp)
    for name in (ACCESS, REFRESH):
        flags = cookies[name].lower()
        assert "httponly" in flags and "samesite=strict" in flags and "path=/ui/" in flags
        assert "secure" not in flags  # testing: CONSOLE_COOKIE_SECURE is off outside production
    assert "samesite=strict" in cookies[CSRF].lower() and "httponly" not in cookies[CSRF].lower()
    page = client.get("/ui/account")
    assert page.status_code == 200 and "ann" in text(page)
    resp = post(client, "/ui/logout")
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/ui/login")
    assert all("expires=thu, 01 jan 1970" in set_cookies(resp)[n].lower() for n in (ACCESS, REFRESH))
    assert client.get("/ui/account").status_code == 302  # to the login page


def test_cookies_are_secure_when_configured(app, client, accounts):
    accounts.create("ann")
    app.config["JWT_COOKIE_SECURE"] = True   # CONSOLE_COOKIE_SECURE (the production default)
    https = app.test_client()
    page = https.get("/ui/login", base_url="https://localhost")
    token = re.search(r'name="csrf_token" value="([^"]+)"', text(page)).group(1)
    resp = https.post("/ui/login", base_url="https://localhost",
                      data={"username": "ann", "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 303
    assert all("secure" in set_cookies(resp)[n].lower() for n in (ACCESS, REFRESH, CSRF))
    # over plain HTTP the login page says why signing in cannot work, instead of failing silently
    plain = app.test_client()
    page = plain.get("/ui/login")
    assert "CONSOLE_COOKIE_SECURE" in text(page)


def test_wrong_password_is_a_401_page_and_audited(app, client, accounts):
    accounts.create("ann")
    resp = login(client, "ann", "not-the-password-at-all")
    assert resp.status_code == 401 and "Invalid username or password" in text(resp)
    assert ACCESS not in set_cookies(resp)
    with app.app_context():
        event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "auth.login")
                                   .order_by(AuditEvent.id.desc())).scalars().first()
        assert event.outcome == "failure" and event.details["username"] == "ann"


def test_login_form_needs_its_csrf_token(client, accounts):
    accounts.create("ann")
    client.get("/ui/login")
    resp = client.post("/ui/login", data={"username": "ann", "password": PASSWORD, "csrf_token": "forged"})
    assert resp.status_code == 400 and ACCESS not in set_cookies(resp)


def test_state_changing_requests_without_the_csrf_token_are_refused(app, client, accounts, orders):
    accounts.create("root", role="admin")
    login(client, "root")
    with app.app_context():
        db.session.add(ArchivePolicy(table_name="orders", date_column="created_at", archive_after_days=30,
                                     delete_after_days=365))
        db.session.commit()
    for path in ("/ui/policies/orders/delete", "/ui/logout", "/ui/policies/orders/enabled",
                 f"/ui/tables/orders/rows/{orders[0]}/restore"):
        resp = client.post(path)
        assert resp.status_code == 403 and "CSRF" in text(resp), path
        resp = client.post(path, data={"csrf_token": "not-the-token"})
        assert resp.status_code == 403, path
        resp = client.post(path, headers={"X-CSRF-TOKEN": "not-the-token"})
        assert resp.status_code == 403, path
    with app.app_context():  # nothing happened
        assert db.session.execute(sa.select(ArchivePolicy.enabled)).scalar_one() is True
    assert client.get("/ui/account").status_code == 200  # still signed in
    assert post(client, "/ui/policies/orders/delete").status_code == 303   # with the token it works
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count(ArchivePolicy.id))).scalar() == 0


def test_the_api_never_reads_the_console_cookies(client, accounts):
    accounts.create("ann")
    login(client, "ann")
    assert client.get("/ui/account").status_code == 200
    assert client.get("/auth/me").status_code == 401
    assert client.get("/auth/me").get_json()["error"]["code"] == "token_missing"


def expire_access_cookie(app, client) -> None:
    """Replace the access cookie by the same token, expired (same session, version and CSRF value)."""
    import jwt as pyjwt
    claims = pyjwt.decode(client.get_cookie(ACCESS, path="/ui/").value, options={"verify_signature": False})
    claims["exp"] = claims["iat"] - 1
    token = pyjwt.encode(claims, app.config["JWT_SECRET_KEY"], algorithm="HS256")
    client.set_cookie(ACCESS, token, path="/ui/")


def test_an_expired_access_cookie_is_renewed_from_the_refresh_cookie(app, client, accounts):
    accounts.create("ann")
    login(client, "ann")
    expire_access_cookie(app, client)
    old_refresh = client.get_cookie(REFRESH, path="/ui/").value
    resp = client.get("/ui/account")
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/account"
    assert ACCESS in set_cookies(resp) and REFRESH in set_cookies(resp)   # rotated, as POST /auth/refresh
    assert client.get("/ui/account").status_code == 200
    # a form sent with an expired token is not carried out: the page comes back, renewed
    expire_access_cookie(app, client)
    resp = post(client, "/ui/account", {"old_password": PASSWORD, "new_password": "a-brand-new-passphrase",
                                        "new_password_again": "a-brand-new-passphrase"},
                headers={"Referer": "http://localhost/ui/account"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/account?notice=renewed"
    assert login(app.test_client(), "ann").status_code == 303   # the password did not change
    # the rotated-away refresh token presented again is reuse: the whole session is revoked
    expire_access_cookie(app, client)
    client.set_cookie(REFRESH, old_refresh, path="/ui/")
    resp = client.get("/ui/account")
    assert resp.status_code == 302 and "/ui/login" in resp.headers["Location"]


def test_a_deactivated_user_is_signed_out_at_once(app, client, accounts):
    uid = accounts.create("ann")
    login(client, "ann")
    assert client.get("/ui/").status_code == 200
    with app.app_context():
        db.session.get(User, uid).active = False
        db.session.commit()
    resp = client.get("/ui/")
    assert resp.status_code == 302 and "notice=ended" in resp.headers["Location"]


# --- who may see what ------------------------------------------------------------------------------

def test_a_viewer_sees_only_granted_tables_and_no_admin_page(client, accounts, orders):
    accounts.create("viewer", tables=["orders"])
    login(client, "viewer")
    home = text(client.get("/ui/"))
    assert "/ui/tables/orders" in home and "/ui/tables/events" not in home
    assert "/ui/policies" not in home and "/ui/users" not in home
    for path in ("/ui/tables/events", "/ui/tables/events/export?format=csv", "/ui/tables/nothing",
                 "/ui/policies", "/ui/policies/new?table=orders", "/ui/runs", "/ui/runs/1", "/ui/users",
                 "/ui/users/1", f"/ui/tables/events/rows/{orders[0]}"):
        resp = client.get(path)
        assert resp.status_code == 403, path
        assert resp.mimetype == "text/html" and "Not allowed" in text(resp), path
    for path in (f"/ui/tables/orders/rows/{orders[0]}/restore", "/ui/policies/orders/delete", "/ui/users"):
        assert post(client, path).status_code == 403, path
    # a row of another table through a table the viewer holds is not found
    assert client.get(f"/ui/tables/orders/rows/{orders[-1] + 3}").status_code == 404


def test_pages_need_a_session(client):
    for path in ("/ui/", "/ui/tables/orders", "/ui/policies", "/ui/account"):
        resp = client.get(path)
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/ui/login?next="), path


# --- browsing -----------------------------------------------------------------------------------------

def row_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<a href="/ui/tables/orders/rows/(\d+)" aria-label', html)]


def test_browse_page_by_page_both_ways(client, accounts, orders):
    accounts.create("viewer", tables=["orders"])
    login(client, "viewer")
    first = text(client.get("/ui/tables/orders?limit=25&order=asc"))
    assert row_ids(first) == orders[:25] and 'id="prev-page"' not in first
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = text(client.get(next_url))
    assert row_ids(second) == orders[25:] and 'id="next-page"' not in second
    prev_url = re.search(r'href="([^"]+)" rel="prev"', second).group(1).replace("&amp;", "&")
    assert row_ids(text(client.get(prev_url))) == orders[:25]
    # by row date, newest first
    newest = text(client.get("/ui/tables/orders?sort=row_date&order=desc&limit=25"))
    assert row_ids(newest) == list(reversed(orders))[:25]


def test_filters_and_their_errors(client, accounts, orders):
    accounts.create("viewer", tables=["orders"])
    login(client, "viewer")
    page = text(client.get("/ui/tables/orders?where=status+%3D+%27open%27&limit=100"))
    assert len(row_ids(page)) == 10
    page = text(client.get("/ui/tables/orders?row_date_from=2023-01-10&row_date_to=2023-01-13"))
    assert len(row_ids(page)) == 3
    page = text(client.get("/ui/tables/orders?source_pk=7"))
    assert len(row_ids(page)) == 1
    bad = client.get("/ui/tables/orders?where=nope+%3D+1")
    assert bad.status_code == 400 and "unknown column" in text(bad)
    assert "Columns:" in text(bad)  # the hint lists the columns one may use
    bad = client.get("/ui/tables/orders?row_date_from=yesterday")
    assert bad.status_code == 400 and "ISO 8601" in text(bad)


def test_a_row_is_a_record_with_types_and_null(client, accounts, orders):
    accounts.create("viewer", tables=["orders"])
    login(client, "viewer")
    page = text(client.get(f"/ui/tables/orders/rows/{orders[6]}"))   # id 7: amount NULL
    assert re.search(r'<th scope="row">amount</th><td class="muted">(numeric|decimal)\(10, 2\)</td>'
                     r'<td class="value null">NULL</td>', page)
    assert "Restore" not in page   # admins only
    page = text(client.get(f"/ui/tables/orders/rows/{orders[7]}"))
    assert '<td class="value text">8.50</td>' in page


def test_export_streams_the_current_filter(client, accounts, orders):
    accounts.create("viewer", tables=["orders"])
    login(client, "viewer")
    resp = client.get("/ui/tables/orders/export?format=csv&where=status+%3D+%27open%27")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    lines = text(resp).strip().splitlines()
    assert lines[0].startswith('"id","source_pk"') and len(lines) == 11


def test_restore_from_the_row_page_warns_about_an_enabled_policy(app, client, accounts, orders, source_engine):
    accounts.create("root", role="admin")
    login(client, "root")
    with app.app_context():
        db.session.add(ArchivePolicy(table_name="orders", date_column="created_at", archive_after_days=30,
                                     delete_after_days=365, enabled=True))
        db.session.commit()
    page = text(client.get(f"/ui/tables/orders/rows/{orders[0]}"))
    assert 'id="restore-warning"' in page
    resp = post(client, f"/ui/tables/orders/rows/{orders[0]}/restore")
    assert resp.status_code == 200 and "Restored 1 row" in text(resp)
    with source_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM orders").scalar() == 1


def test_a_row_page_lists_the_rows_archived_with_it(app, client, accounts, source_engine, archive_engine):
    """An order archived with its items and their notes: its page links them (indented by depth), an
    item's page names its order, and a viewer of orders alone only sees how many rows are hidden."""
    md, orders_t, items, notes = orders_schema()
    md.create_all(source_engine)
    today = datetime.now(timezone.utc).replace(tzinfo=None)  # the service runs at the real clock
    fill_orders(source_engine, orders_t, items, notes, n=2, old=today - timedelta(days=90))
    with app.app_context():
        db.session.add(ArchivePolicy(table_name="orders", date_column="created_at", archive_after_days=30,
                                     delete_after_days=365))
        db.session.commit()
        assert jobs.run_archive("orders", trigger="test").ok
    ar = schema.archived_rows
    with archive_engine.connect() as conn:
        ids = {(t, pk): i for t, pk, i in conn.execute(sa.select(ar.c.table_name, ar.c.source_pk, ar.c.id))}
    order = ids[("orders", "1")]
    accounts.create("root", role="admin")
    login(client, "root")
    page = text(client.get(f"/ui/tables/orders/rows/{order}"))
    assert '<h2 id="object-title">Archived with it</h2>' in page
    listed = re.findall(r'<li>(—*) <a href="/ui/tables/(\w+)/rows/(\d+)">\w+ (\d+)</a></li>', page)
    assert listed == [("—", "order_items", str(ids[("order_items", pk)]), pk) for pk in ("10", "11", "12")] + \
        [("——", "item_notes", str(ids[("item_notes", pk)]), pk) for pk in ("100", "102")]
    assert ids[("order_items", "20")] not in {int(i) for _, _, i, _ in listed}  # order 2's item: not this object
    item = text(client.get(f"/ui/tables/order_items/rows/{ids[('order_items', '10')]}"))
    assert f"This row moved with its parent row (archive id {order})." in item
    assert "Put this row and the rows archived with it back" in page
    viewer = app.test_client()
    accounts.create("viewer", tables=["orders"])
    login(viewer, "viewer")
    page = text(viewer.get(f"/ui/tables/orders/rows/{order}"))
    assert "Archived with it" in page and "5 more row(s) in tables you may not read." in page
    assert "/ui/tables/order_items/rows/" not in page and "/ui/tables/item_notes/rows/" not in page


# --- admin pages ---------------------------------------------------------------------------------------

def test_admin_creates_a_policy_with_a_preview(app, client, accounts, orders, source_engine):
    with source_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE invoices (id INTEGER PRIMARY KEY, issued_at TIMESTAMP NOT NULL)")
        conn.exec_driver_sql("INSERT INTO invoices VALUES (1, '2020-01-01 00:00:00'), (2, '2020-02-01 00:00:00')")
    accounts.create("root", role="admin")
    login(client, "root")
    listing = text(client.get("/ui/policies"))
    assert '<option value="invoices">' in listing
    form = text(client.get("/ui/policies/new?table=invoices"))
    assert '<option value="issued_at" selected>' in form   # the suggested date column
    fields = {"date_column": "issued_at", "archive_after_days": "30", "delete_after_days": "365",
              "batch_mode": "adaptive", "enabled": "on", "custom_criteria": ""}
    preview = post(client, "/ui/policies/invoices/preview", fields, headers={"X-Requested-With": "fetch"})
    assert preview.status_code == 200 and 'id="preview-count"><strong>2</strong> rows' in text(preview)
    bad = post(client, "/ui/policies/invoices/preview", {**fields, "custom_criteria": "nope = 1"})
    assert "unknown column" in text(bad)
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count(ArchivePolicy.id))).scalar() == 0   # nothing saved
    refused = post(client, "/ui/policies/invoices", {**fields, "archive_after_days": "-3", "action": "save"})
    assert refused.status_code == 400 and "greater than or equal to 0" in text(refused)
    saved = post(client, "/ui/policies/invoices", {**fields, "action": "save"})
    assert saved.status_code == 303 and saved.headers["Location"] == "/ui/policies/invoices?notice=created"
    assert post(client, "/ui/policies/invoices/enabled", {"enabled": "false"}).status_code == 303
    changed = post(client, "/ui/policies/invoices", {**fields, "enabled": "", "archive_after_days": "40",
                                                     "action": "save"})
    assert changed.status_code == 303
    with app.app_context():
        policy = db.session.execute(sa.select(ArchivePolicy)).scalar_one()
        assert (policy.archive_after_days, policy.enabled, policy.updated_by) == (40, False, "root")
        actions = db.session.execute(sa.select(AuditEvent.action, AuditEvent.actor)
                                     .where(AuditEvent.action.like("policy.%")).order_by(AuditEvent.id)).all()
        assert [a for a, _ in actions] == ["policy.create", "policy.update", "policy.update"]
        assert {who for _, who in actions} == {"root"}


def test_admin_sets_and_clears_a_policys_throttles(app, client, accounts, orders):
    accounts.create("root", role="admin")
    login(client, "root")
    fields = {"date_column": "created_at", "archive_after_days": "30", "delete_after_days": "365",
              "batch_mode": "adaptive", "enabled": "on", "custom_criteria": "", "action": "save"}
    form = text(client.get("/ui/policies/new?table=orders"))
    assert 'id="max_rows_per_run"' in form and "Throttles (optional)" in form
    refused = post(client, "/ui/policies/orders", {**fields, "sleep_ms": "soon", "sleep_ratio": "-1"})
    assert refused.status_code == 400 and "Not a whole number." in text(refused)
    refused = post(client, "/ui/policies/orders", {**fields, "sleep_ratio": "-1"})
    assert refused.status_code == 400 and "greater than or equal to 0" in text(refused)
    assert "<details class=\"throttles\" open>" in text(refused)   # the error is shown, not folded away
    saved = post(client, "/ui/policies/orders", {**fields, "sleep_ms": "250", "sleep_ratio": "0.5",
                                                 "max_rows_per_run": "100000", "max_run_seconds": "0"})
    assert saved.status_code == 303, text(saved)
    with app.app_context():
        policy = db.session.execute(sa.select(ArchivePolicy)).scalar_one()
        assert (policy.sleep_ms, policy.sleep_ratio, policy.max_rows_per_run, policy.max_run_seconds,
                policy.max_active_sessions) == (250, 0.5, 100_000, 0, None)
    page = text(client.get("/ui/policies/orders"))
    assert 'id="sleep_ms" name="sleep_ms" type="number" min="0" step="1" value="250"' in page
    assert post(client, "/ui/policies/orders", fields).status_code == 303   # blank: back to the defaults
    with app.app_context():
        policy = db.session.execute(sa.select(ArchivePolicy)).scalar_one()
        assert (policy.sleep_ms, policy.sleep_ratio, policy.max_rows_per_run) == (None, None, None)


def test_admin_edits_grants_and_unknown_tables_are_refused(app, client, accounts, orders):
    accounts.create("root", role="admin")
    uid = accounts.create("viewer", tables=["orders"])
    login(client, "root")
    page = text(client.get(f"/ui/users/{uid}"))
    assert 'value="events"' in page and 'value="orders" checked' in page
    resp = post(client, f"/ui/users/{uid}", {"what": "grants", "permissions": ["orders", "events"]})
    assert resp.status_code == 303
    refused = post(client, f"/ui/users/{uid}", {"what": "grants", "permissions": ["orders", "no_such_table"]})
    assert refused.status_code == 400 and "No such table: no_such_table" in text(refused)
    with app.app_context():
        assert db.session.get(User, uid).table_names == ["events", "orders"]
    created = post(client, "/ui/users", {"username": "carl", "password": "another-long-passphrase",
                                         "role": "user", "permissions": ["events"]})
    assert created.status_code == 303
    weak = post(client, "/ui/users", {"username": "dora", "password": "password", "role": "user"})
    assert weak.status_code == 400 and "password" in text(weak).lower()


def test_admin_makes_a_user_an_admin_from_the_user_page(app, client, accounts):
    root = accounts.create("root", role="admin")
    uid = accounts.create("ann")
    login(client, "root")
    resp = post(client, f"/ui/users/{uid}", {"what": "account", "role": "admin", "active": "on"})
    assert resp.status_code == 303 and resp.headers["Location"] == f"/ui/users/{uid}?notice=saved"
    with app.app_context():
        user = db.session.get(User, uid)
        assert (user.role, user.active) == ("admin", True)
        (event,) = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "user.update")).scalars()
        assert (event.actor, event.actor_id, event.target, event.outcome) == ("root", root, f"user:{uid}", "success")
        assert event.details == {"username": "ann", "before": {"role": "user", "active": True},
                                 "after": {"role": "admin", "active": True}}
    assert "<option selected>admin</option>" in text(client.get(f"/ui/users/{uid}"))


def test_runs_page_and_the_progress_poll(app, client, accounts, orders):
    accounts.create("root", role="admin")
    login(client, "root")
    with app.app_context():
        from archiver.services import runs
        run_id = runs.start_run("archive", "orders", "cli")
    page = text(client.get("/ui/runs"))
    assert f'data-live="/ui/runs/{run_id}"' in page
    poll = client.get(f"/ui/runs/{run_id}", headers={"Accept": "application/json"})
    assert poll.status_code == 200 and poll.get_json()["status"] == "running"
    assert client.get("/ui/runs/999999").status_code == 404


def test_account_password_change_keeps_this_session_and_ends_the_others(app, client, accounts):
    accounts.create("ann")
    login(client, "ann")
    other = app.test_client()
    login(other, "ann")
    resp = post(client, "/ui/account", {"old_password": PASSWORD, "new_password": "a-brand-new-passphrase",
                                        "new_password_again": "a-brand-new-passphrase"})
    assert resp.status_code == 303 and "password_changed" in resp.headers["Location"]
    assert client.get("/ui/account").status_code == 200
    assert other.get("/ui/account").status_code == 302   # the other session has ended
    wrong = post(client, "/ui/account", {"old_password": "nope-nope-nope", "new_password": "x" * 20,
                                         "new_password_again": "x" * 20})
    assert wrong.status_code == 400 and "current password is wrong" in text(wrong)


# --- pages as pages -------------------------------------------------------------------------------------

def test_errors_under_ui_are_pages_and_the_api_stays_json(client, accounts):
    resp = client.get("/ui/no/such/page")
    assert resp.status_code == 404 and resp.mimetype == "text/html" and "Not found" in text(resp)
    assert client.get("/no/such/route").mimetype == "application/json"
    resp = client.get("/ui/no/such/page", headers={"Accept": "application/json"})
    assert resp.mimetype == "application/json" and resp.get_json()["error"]["code"] == "not_found"


def test_console_pages_keep_the_strict_csp_without_inline_code(client, accounts, orders):
    accounts.create("root", role="admin")
    for path in ("/ui/login",):
        resp = client.get(path)
        assert resp.headers["Content-Security-Policy"] == PAGE_CSP
    login(client, "root")
    for path in ("/ui/", "/ui/tables/orders", f"/ui/tables/orders/rows/{orders[0]}", "/ui/policies", "/ui/runs",
                 "/ui/users", "/ui/account", "/ui/policies/new?table=orders"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert resp.headers["Content-Security-Policy"] == PAGE_CSP, path
        html = text(resp)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path   # no inline script
        assert not re.search(r"\sstyle=", html) and "<style" not in html, path   # no inline style
        assert not re.search(r"\son[a-z]+=", html), path   # no inline event handlers
    static = client.get("/ui/static/console.js")
    assert static.status_code == 200 and static.mimetype in ("text/javascript", "application/javascript")


class _FormAudit:
    """Controls without a label, and data tables without header cells, in a page."""

    def __init__(self, html: str) -> None:
        from html.parser import HTMLParser

        self.controls: list[dict] = []
        self.labels: set[str] = set()
        self.tables: list[dict] = []
        audit = self

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                a = dict(attrs)
                if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
                    audit.controls.append(a)
                elif tag == "label" and a.get("for"):
                    audit.labels.add(a["for"])
                elif tag == "table":
                    audit.tables.append({"th": 0})
                elif tag == "th" and audit.tables:
                    audit.tables[-1]["th"] += 1

        Parser().feed(html)

    def unlabelled(self) -> list[dict]:
        return [c for c in self.controls if c.get("id") not in self.labels and not c.get("aria-label")]


def test_every_form_control_has_a_label_and_every_table_headers(client, accounts, orders):
    accounts.create("root", role="admin")
    uid = accounts.create("viewer", tables=["orders"])
    assert not _FormAudit(text(client.get("/ui/login"))).unlabelled()
    login(client, "root")
    for path in ("/ui/", "/ui/tables/orders", f"/ui/tables/orders/rows/{orders[0]}", "/ui/policies", "/ui/runs",
                 "/ui/users", f"/ui/users/{uid}", "/ui/account", "/ui/policies/new?table=orders"):
        page = _FormAudit(text(client.get(path)))
        assert not page.unlabelled(), (path, page.unlabelled())
        assert all(t["th"] > 0 for t in page.tables), path


def test_a_background_request_with_an_expired_token_does_not_rotate_the_session(app, client, accounts):
    """The script's fetch gets a 401 (it then reloads the page); only page views renew, so no new
    refresh token is ever lost with a background answer."""
    accounts.create("root", role="admin")
    login(client, "root")
    expire_access_cookie(app, client)
    refresh = client.get_cookie(REFRESH, path="/ui/").value
    resp = client.get("/ui/runs/1", headers={"Accept": "application/json", "X-Requested-With": "fetch"})
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_expired"
    assert REFRESH not in set_cookies(resp) and client.get_cookie(REFRESH, path="/ui/").value == refresh
    assert client.get("/ui/runs").status_code == 303      # the page view renews
    assert client.get("/ui/runs").status_code == 200


def _wait_for_run(client, run_id: int, timeout: float = 20) -> dict:
    import time
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/ui/runs/{run_id}", headers={"Accept": "application/json"}).get_json()
        if run["status"] != "running" or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def test_admin_starts_a_dry_run_and_cancels_from_the_console(app, client, accounts, orders, source_engine):
    with source_engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO orders (id, status, amount, created_at) VALUES "
                             "(100, 'closed', 1.50, '2020-01-01 00:00:00'), (101, 'open', 2.50, '2020-01-02 00:00:00')")
    accounts.create("root", role="admin")
    login(client, "root")
    with app.app_context():
        db.session.add(ArchivePolicy(table_name="orders", date_column="created_at", archive_after_days=30,
                                     delete_after_days=365))
        db.session.commit()
    page = text(client.get("/ui/policies/orders"))
    assert 'id="dry-run"' in page and 'id="archive-now"' in page
    resp = post(client, "/ui/runs", {"table_name": "orders", "kind": "archive", "dry_run": "on"})
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/ui/runs/")
    run_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    run = _wait_for_run(client, run_id)
    assert (run["status"], run["dry_run"], run["rows_read"], run["trigger"]) == ("succeeded", True, 2, "api:root")
    with source_engine.connect() as conn:   # a dry run moves nothing
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM orders").scalar() == 2
    # cancelling: a run over is a 409 page; a running one gets its stop request
    over = post(client, f"/ui/runs/{run_id}/cancel")
    assert over.status_code == 409 and "only a running run can be cancelled" in text(over)
    with app.app_context():
        from archiver.services import runs
        running = runs.start_run("archive", "events", "cli")
    assert post(client, f"/ui/runs/{running}/cancel").status_code == 303
    detail = client.get(f"/ui/runs/{running}", headers={"Accept": "application/json"}).get_json()
    assert detail["cancel_requested_by"] == "root"
    with app.app_context():
        actions = db.session.execute(sa.select(AuditEvent.action, AuditEvent.target, AuditEvent.details)
                                     .where(AuditEvent.action.like("run.%")).order_by(AuditEvent.id)).all()
    assert [(a, t) for a, t, _ in actions] == [("run.start", "orders"), ("run.cancel", "events")]
    assert actions[0][2] == {"run_id": run_id, "kind": "archive", "options": {"dry_run": True}}
    # a table without an enabled policy cannot be started
    assert post(client, "/ui/runs", {"table_name": "nothing", "kind": "archive"}).status_code == 404
    assert post(client, "/ui/runs", {"table_name": "orders", "kind": "restore"}).status_code == 400


def test_every_console_page_needs_a_session(app, client):
    """Every /ui/ route but the sign-in page and the static files: no cookie, or a forged one, and
    the answer is the sign-in page (a page view) or a 401 (the script's requests), never the page."""
    import jwt as pyjwt
    adapter = app.url_map.bind("localhost")
    forged = pyjwt.encode({"sub": "1", "type": "access", "jti": "x", "exp": 4102444800, "iat": 0, "ver": 0,
                           "fam": "f" * 32, "csrf": "c", "role": "admin", "permissions": []},
                          "not-the-secret-key-of-this-service-000", algorithm="HS256")
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("console.") or rule.endpoint in ("console.static", "console.login",
                                                                          "console.login_submit"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            path = adapter.build(rule.endpoint, dummy_path_values(rule), method=method)
            for cookie in (None, forged):
                fresh = app.test_client()
                if cookie:
                    fresh.set_cookie(ACCESS, cookie, path="/ui/")
                resp = fresh.open(path, method=method, data={"csrf_token": "c"})
                assert resp.status_code == 302 and resp.headers["Location"].startswith("/ui/login"), (method, path)
                resp = fresh.open(path, method=method, data={"csrf_token": "c"},
                                  headers={"Accept": "application/json"})
                assert resp.status_code == 401, (method, path)
            checked += 1
    assert checked >= 20
