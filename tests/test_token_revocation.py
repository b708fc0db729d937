"""Revocable tokens: logout, refresh-token rotation with reuse detection, per-user token versions,
password change, and the claims every token must carry."""
from __future__ import annotations


import time
import uuid
from datetime import timedelta

import jwt as pyjwt
import pytest
import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import AuditEvent, TokenFamily, User
from archiver.models._types import utcnow
from archiver.services import tokens
from tests.app_support import JWT_SECRET, PASSWORD
from tests.archive_helpers import known_tables
from tests.auth_support import assert_error, bearer, decode, login

NEW_PASSWORD = "a-brand-new-passphrase"


def me(client, token):
    return client.get("/auth/me", headers=bearer(token))


def refresh(client, token):
    return client.post("/auth/refresh", headers=bearer(token))


@pytest.fixture
def alice(client, accounts):
    uid = accounts.create("alice", tables=["orders"])
    return uid, login(client, "alice").get_json()


# --- logout --------------------------------------------------------------------------------

def test_logout_then_refresh_is_401(client, alice):
    _, tokens_ = alice
    assert client.post("/auth/logout", headers=bearer(tokens_["refresh_token"])).status_code == 204
    assert_error(refresh(client, tokens_["refresh_token"]), 401, "token_revoked")
    assert_error(me(client, tokens_["access_token"]), 401, "token_revoked")  # its access tokens too


def test_logout_with_an_access_token_ends_that_session_only(client, alice):
    _, first = alice
    second = login(client, "alice").get_json()  # another device
    refreshed = refresh(client, first["refresh_token"]).get_json()
    assert client.post("/auth/logout", headers=bearer(refreshed["access_token"])).status_code == 204
    for token in (first["access_token"], refreshed["access_token"]):
        assert_error(me(client, token), 401, "token_revoked")
    assert_error(refresh(client, refreshed["refresh_token"]), 401, "token_revoked")
    assert me(client, second["access_token"]).status_code == 200
    assert refresh(client, second["refresh_token"]).status_code == 200


def test_logout_needs_a_valid_token(client, alice):
    assert_error(client.post("/auth/logout"), 401, "token_missing")
    assert_error(client.post("/auth/logout", headers=bearer("not.a.jwt")), 401)


# --- rotation and reuse --------------------------------------------------------------------------

def test_refresh_rotates_and_the_old_refresh_token_dies(client, alice):
    _, first = alice
    second = refresh(client, first["refresh_token"]).get_json()
    third = refresh(client, second["refresh_token"]).get_json()
    assert len({first["refresh_token"], second["refresh_token"], third["refresh_token"]}) == 3
    assert me(client, third["access_token"]).status_code == 200


def test_a_refresh_token_used_twice_revokes_the_family(app, client, alice):
    uid, stolen = alice
    legit = refresh(client, stolen["refresh_token"]).get_json()  # the owner refreshes
    assert_error(refresh(client, stolen["refresh_token"]), 401, "token_reused")  # the thief replays
    # every token of that login is dead now, the rotated ones included
    assert_error(refresh(client, legit["refresh_token"]), 401, "token_revoked")
    assert_error(me(client, legit["access_token"]), 401, "token_revoked")
    assert_error(me(client, stolen["access_token"]), 401, "token_revoked")
    # a fresh login works
    assert me(client, login(client, "alice").get_json()["access_token"]).status_code == 200
    with app.app_context():
        fam = decode(stolen["refresh_token"])["fam"]
        family = db.session.get(TokenFamily, fam)
        assert family.revoked_reason == "reuse" and family.revoked_at is not None
        events = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "auth.token_reuse")).scalars().all()
        assert len(events) == 1
        assert events[0].actor_id == uid and events[0].outcome == "failure" and events[0].details == {"family": fam}


# --- version bumps --------------------------------------------------------------------------------

def test_password_change_makes_older_tokens_401(client, alice):
    _, old = alice
    other_device = login(client, "alice").get_json()
    resp = client.post("/auth/password", headers=bearer(old["access_token"]),
                       json={"old_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert resp.status_code == 200
    new = resp.get_json()
    assert set(new) == {"access_token", "token_type", "expires_in", "refresh_token"}
    for token in (old["access_token"], other_device["access_token"]):
        assert_error(me(client, token), 401, "token_revoked")
    for token in (old["refresh_token"], other_device["refresh_token"]):
        assert_error(refresh(client, token), 401, "token_revoked")
    assert me(client, new["access_token"]).status_code == 200
    assert refresh(client, new["refresh_token"]).status_code == 200
    assert_error(login(client, "alice"), 401, "invalid_credentials")
    assert login(client, "alice", NEW_PASSWORD).status_code == 200


@pytest.mark.parametrize("body, field", [
    ({"old_password": "not-the-password", "new_password": NEW_PASSWORD}, "old_password"),
    ({"old_password": PASSWORD, "new_password": "short"}, "new_password"),
    ({"old_password": PASSWORD, "new_password": "password1234"}, "new_password"),
    ({"old_password": PASSWORD, "new_password": "my-name-is-alice"}, "new_password"),
    ({"old_password": PASSWORD, "new_password": PASSWORD}, "new_password"),
    ({"old_password": PASSWORD}, "new_password"),
    ({"old_password": PASSWORD, "new_password": NEW_PASSWORD, "username": "bob"}, "username"),
])
def test_password_change_refusals_change_nothing(client, alice, body, field):
    _, old = alice
    error = assert_error(client.post("/auth/password", headers=bearer(old["access_token"]), json=body), 400)
    assert field in error["details"]
    assert me(client, old["access_token"]).status_code == 200
    assert login(client, "alice").status_code == 200


def test_password_change_needs_an_access_token(client, alice):
    _, old = alice
    body = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert_error(client.post("/auth/password", json=body), 401, "token_missing")
    assert_error(client.post("/auth/password", json=body, headers=bearer(old["refresh_token"])), 401)


def test_password_reset_by_create_admin_makes_older_tokens_401(client, runner, accounts):
    accounts.create("root", role="admin")
    old = login(client, "root").get_json()
    result = runner.invoke(args=["create-admin", "root"], input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert_error(me(client, old["access_token"]), 401, "token_revoked")
    assert_error(refresh(client, old["refresh_token"]), 401, "token_revoked")
    assert me(client, login(client, "root", NEW_PASSWORD).get_json()["access_token"]).status_code == 200


def test_deactivation_makes_older_tokens_401_and_reactivation_does_not_revive_them(client, accounts, alice):
    uid, old = alice
    admin = accounts.admin("root")
    assert client.delete(f"/users/{uid}", headers=admin).status_code == 200
    assert_error(me(client, old["access_token"]), 401, "user_inactive")
    assert_error(refresh(client, old["refresh_token"]), 401)
    assert_error(login(client, "alice"), 401, "invalid_credentials")
    assert client.patch(f"/users/{uid}", json={"active": True}, headers=admin).status_code == 200
    assert_error(me(client, old["access_token"]), 401, "token_revoked")
    assert_error(refresh(client, old["refresh_token"]), 401, "token_revoked")
    assert me(client, login(client, "alice").get_json()["access_token"]).status_code == 200


def test_role_change_makes_older_tokens_401(client, accounts, alice):
    uid, old = alice
    admin = accounts.admin("root")
    assert client.patch(f"/users/{uid}", json={"role": "admin"}, headers=admin).status_code == 200
    assert_error(me(client, old["access_token"]), 401, "token_revoked")
    assert_error(refresh(client, old["refresh_token"]), 401, "token_revoked")


def test_grant_changes_and_no_op_patches_keep_sessions(app, client, accounts, alice):
    uid, old = alice
    admin = accounts.admin("root")
    known_tables(app, "invoices")
    assert client.put(f"/users/{uid}/permissions", json={"permissions": ["invoices"]}, headers=admin).status_code == 200
    assert client.patch(f"/users/{uid}", json={"role": "user", "active": True}, headers=admin).status_code == 200
    body = me(client, old["access_token"])
    assert body.status_code == 200 and body.get_json()["permissions"] == ["invoices"]


# --- claims every token must carry ------------------------------------------------------------------

def _signed_like(token: str, drop: str | None = None, **changes) -> str:
    claims = decode(token)
    if drop:
        claims.pop(drop)
    claims.update(changes)
    return pyjwt.encode(claims, JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize("claim", ["exp", "type", "jti", "sub", "iat", "ver", "fam"])
def test_signed_token_without_a_required_claim_is_401(client, alice, claim):
    _, good = alice
    assert me(client, _signed_like(good["access_token"])).status_code == 200  # the baseline re-signed as is
    assert_error(me(client, _signed_like(good["access_token"], drop=claim)), 401, "token_invalid")
    assert_error(refresh(client, _signed_like(good["refresh_token"], drop=claim)), 401, "token_invalid")


@pytest.mark.parametrize("changes", [{"type": "admin"}, {"ver": True}, {"ver": "0"}, {"ver": -1}, {"fam": 1},
                                     {"fam": "short"}, {"jti": ""}, {"jti": 5}])
def test_signed_token_with_a_malformed_claim_is_401(client, alice, changes):
    _, good = alice
    assert_error(me(client, _signed_like(good["access_token"], **changes)), 401, "token_invalid")


def test_signed_token_of_another_session_or_version_is_401(client, alice):
    _, good = alice
    assert_error(me(client, _signed_like(good["access_token"], fam=uuid.uuid4().hex)), 401, "token_revoked")
    assert_error(me(client, _signed_like(good["access_token"], ver=1)), 401, "token_revoked")


# --- stored revocations expire with the tokens -----------------------------------------------------------

def test_expired_sessions_are_pruned_and_live_ones_kept(app, client, runner, alice):
    uid, good = alice
    login(client, "alice")
    with app.app_context():
        expiry = db.session.execute(sa.select(sa.func.max(TokenFamily.expires_at))).scalar_one()
        lifetime = app.config["JWT_REFRESH_TOKEN_EXPIRES"]
        created = utcnow()
        assert timedelta(0) < (expiry.replace(tzinfo=created.tzinfo) if expiry.tzinfo is None else expiry) - created \
            <= lifetime
        old = TokenFamily(id=uuid.uuid4().hex, user_id=uid, refresh_jti=str(uuid.uuid4()),
                          expires_at=created - timedelta(seconds=1), revoked_at=created - timedelta(days=2),
                          revoked_reason="logout")
        db.session.add(old)
        db.session.commit()
        assert db.session.execute(sa.select(sa.func.count()).select_from(TokenFamily)).scalar_one() == 3
    result = runner.invoke(args=["prune-security"])
    assert result.exit_code == 0 and "1 expired login session" in result.output
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count()).select_from(TokenFamily)).scalar_one() == 2
    assert me(client, good["access_token"]).status_code == 200


def test_prune_expired_is_a_service_call_too(app):
    with app.app_context():
        assert tokens.prune_expired(utcnow()) == 0


def test_tokens_carry_version_and_session(client, alice):
    uid, good = alice
    access, refresh_ = decode(good["access_token"]), decode(good["refresh_token"])
    assert access["ver"] == refresh_["ver"] == 0
    assert access["fam"] == refresh_["fam"] and len(access["fam"]) == 32
    assert access["type"] == "access" and refresh_["type"] == "refresh"
    assert access["jti"] and refresh_["jti"] and access["jti"] != refresh_["jti"]
    assert access["exp"] > time.time() and refresh_["exp"] > access["exp"]


def test_deleted_user_rows_cascade_their_sessions(app, alice):
    uid, _ = alice
    with app.app_context():
        db.session.delete(db.session.get(User, uid))
        db.session.commit()
        assert db.session.execute(sa.select(sa.func.count()).select_from(TokenFamily)).scalar_one() == 0
