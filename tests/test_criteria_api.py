"""POST /config with bad custom_criteria: 400 naming what is not allowed, nothing stored."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

TABLE = "crit_orders"
POLICY = {"table_name": TABLE, "archive_after_days": 30, "delete_after_days": 365}

# (criteria, a phrase the custom_criteria message must contain)
BAD = [
    ("id IN (SELECT id FROM users)", "subqueries are not allowed"),
    ("EXISTS (SELECT 1 FROM users)", "subqueries are not allowed"),
    ("sleep(10) = 0", "function calls are not allowed: SLEEP"),
    ("pg_sleep(1) IS NULL", "function calls are not allowed: PG_SLEEP"),
    ("lower(status) = 'x'", "function calls are not allowed: LOWER"),
    ("users.password_hash = 'x'", "columns of other tables are not allowed"),
    ("other.id = 1", "columns of other tables are not allowed"),
    ("password_hash = 'x'", "unknown column: password_hash"),
    ("1=1; DROP TABLE users", "only one expression is allowed (found ';')"),
    ("status = 'a' -- '", "comments are not allowed"),
    ("status = 'a' /* */ OR 1=1", "comments are not allowed"),
    ("(" * 10_000 + "id = 1" + ")" * 10_000, "long"),
    ("(" * 40 + "id = 1" + ")" * 40, "too deeply nested"),
    ("status = '" + "x" * 100_000 + "'", "long"),
    ("status = '" + "x" * 2_500 + "'", "too long"),
    ("1=1 UNION SELECT password_hash FROM users", "UNION is not allowed"),
    ("CAST(amount AS int) = 1", "casts are not allowed"),
    ("amount::int = 1", "casts are not allowed"),
    ("amount + 1 = 2", "arithmetic is not allowed"),
    ("amount & 1 = 1", "bitwise operators are not allowed"),
    ("id = ?", "placeholders are not allowed"),
    ("id = :x", "placeholders are not allowed"),
    ("status = %s", "'%' is only allowed inside a string"),
    ("id = $1", "placeholders and variables are not allowed"),
    ("id = @x", "variables are not allowed"),
    ("`id` = 1", "backtick quoting is not allowed"),
    ("[id] = 1", "brackets are not allowed"),
    ("* = 1", "'*' is not allowed"),
    ("status = NULL", "NULL can only be used as IS NULL or IS NOT NULL"),
    ("amount", "expected a condition"),
    ("1", "expected a condition"),
    ("1=1 OR 1=1", "a comparison needs a column on at least one side"),
    ("amount = 'lots'", "column amount expects a number"),
    ("created_at < 'last week'", "column created_at expects an ISO date/time string"),
    ("status = 'a' # x", "comments are not allowed"),
]

# The request layer may refuse these before the policy is validated (any 400 will do);
# compile_criteria rejects them too ("control characters are not allowed").
BAD_BODY = ["status = 'a\x00'", "status = '\ud800'"]

GOOD = [
    "status = 'closed' AND amount < 100",
    "kind IN ('a','b')",
    "amount BETWEEN 1 AND 5",
    "note LIKE 'x%'",
    "deleted_at IS NOT NULL",
    "NOT (status = 'open' OR status = 'new')",
    "amount > -5",
    "note = 'it''s'",
]


@pytest.fixture
def source_table(source_engine):
    md = sa.MetaData()
    sa.Table(TABLE, md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("status", sa.String(20)), sa.Column("kind", sa.String(20)),
             sa.Column("amount", sa.Numeric(10, 2)), sa.Column("note", sa.Text),
             sa.Column("created_at", sa.DateTime, nullable=False), sa.Column("deleted_at", sa.DateTime))
    md.create_all(source_engine)


def post_policy(client, headers, criteria):
    # json.dumps escapes a lone surrogate as \ud800, which the server decodes back to one.
    body = json.dumps({**POLICY, "custom_criteria": criteria})
    return client.post("/config", data=body, content_type="application/json", headers=headers)


def test_every_bad_criteria_is_a_400_naming_it_and_nothing_is_stored(client, accounts, source_table):
    admin = accounts.admin()
    problems = {}
    for criteria, phrase in BAD:
        resp = post_policy(client, admin, criteria)
        body = resp.get_json()
        messages = (((body or {}).get("error") or {}).get("details") or {}).get("custom_criteria")
        label = repr(criteria[:50])
        if resp.status_code != 400 or not messages:
            problems[label] = (resp.status_code, body)
            continue
        text = " ".join(messages)
        if phrase.lower() not in text.lower() or len(text) > 200 or "sqlglot" in text.lower() or "Traceback" in text:
            problems[label] = text
        if client.get(f"/config/{TABLE}", headers=admin).status_code != 404:
            problems[label] = "policy was stored"
    for criteria in BAD_BODY:
        resp = post_policy(client, admin, criteria)
        if resp.status_code != 400 or client.get(f"/config/{TABLE}", headers=admin).status_code != 404:
            problems[repr(criteria)] = (resp.status_code, resp.get_json())
    assert problems == {}


def test_good_criteria_are_stored(client, accounts, source_table):
    admin = accounts.admin()
    for number, criteria in enumerate(GOOD):
        resp = post_policy(client, admin, criteria)
        assert resp.status_code == (201 if number == 0 else 200), (criteria, resp.get_json())
        assert resp.get_json()["custom_criteria"] == criteria
        stored = client.get(f"/config/{TABLE}", headers=admin)
        assert stored.status_code == 200
        assert stored.get_json()["custom_criteria"] == criteria


def test_bad_criteria_on_update_keeps_the_stored_policy(client, accounts, source_table):
    admin = accounts.admin()
    assert post_policy(client, admin, "status = 'closed'").status_code == 201
    resp = post_policy(client, admin, "status = 'closed' OR pg_sleep(5) IS NULL")
    assert resp.status_code == 400
    assert resp.get_json()["error"]["details"]["custom_criteria"] == ["function calls are not allowed: PG_SLEEP"]
    assert client.get(f"/config/{TABLE}", headers=admin).get_json()["custom_criteria"] == "status = 'closed'"
