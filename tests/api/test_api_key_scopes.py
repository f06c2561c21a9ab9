"""API keys (issue 11): names, expiry, scopes (403 insufficient_scope naming the scope), rotation
with a grace period, and the checksum that refuses an invented key without a database query.
SQLite and PostgreSQL."""
import secrets
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.auth.api_keys import LEGACY_PREFIX, hash_key, looks_like_key
from app.db.models import ApiKey
from app.utils.clock import utcnow
from tests.support.sql import recorded_statements


def create(client, headers, **body):
    response = client.post("/api/apikeys", headers=headers, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def with_key(key):
    return {"X-API-Key": key}


def test_creation_has_name_expiry_scopes_and_says_the_key_is_shown_once(client, user, auth_headers):
    expires = (utcnow() + timedelta(days=7)).replace(microsecond=0)
    body = create(client, auth_headers(user), name="grafana", description="dashboards",
                  expires_at=expires.isoformat(), scopes=["history:read"])
    assert "only once" in body["warning"]
    key = body["api_key"]
    assert key["name"] == "grafana" and key["scopes"] == ["history:read"]
    assert key["expires_at"].startswith(expires.strftime("%Y-%m-%dT%H:%M:%S"))
    listed = client.get("/api/apikeys", headers=auth_headers(user)).get_json()["api_keys"][0]
    assert listed["name"] == "grafana" and listed["scopes"] == ["history:read"] and listed["key"].endswith("...")


def test_no_scopes_means_all_three(client, user, auth_headers):
    key = create(client, auth_headers(user))["api_key"]
    assert key["scopes"] == ["probes:run", "history:read", "account:read"]


@pytest.mark.parametrize("scopes", [["probes:run", "admin"], [], "probes:run", [1]])
def test_unknown_or_malformed_scopes_are_400_with_fields(client, user, auth_headers, scopes):
    response = client.post("/api/apikeys", headers=auth_headers(user), json={"scopes": scopes})
    assert response.status_code == 400
    assert any(name.split(".")[0] == "scopes" for name in response.get_json()["fields"])  # "scopes" or "scopes.1"


def test_expiry_in_the_past_is_400(client, user, auth_headers):
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    response = client.post("/api/apikeys", headers=auth_headers(user), json={"expires_at": past})
    assert response.status_code == 400 and "expires_at" in response.get_json()["fields"]


def test_a_call_outside_the_key_scopes_is_403_naming_the_scope(client, user, auth_headers):
    reader = create(client, auth_headers(user), scopes=["history:read"])["api_key"]["key"]
    assert client.get("/api/probes/history", headers=with_key(reader)).status_code == 200
    for method, path, scope in (("post", "/api/probes/ping", "probes:run"),
                                ("post", "/api/measurements", "probes:run"),
                                ("get", "/api/users/me", "account:read")):
        response = getattr(client, method)(path, headers=with_key(reader), json={"host": "127.0.0.1"})
        body = response.get_json()
        assert response.status_code == 403, (path, body)
        assert body["code"] == "insufficient_scope" and scope in body["message"], body
    runner = create(client, auth_headers(user), scopes=["probes:run"])["api_key"]["key"]
    for path in ("/api/probes/history", "/api/measurements"):
        response = client.get(path, headers=with_key(runner))
        assert response.status_code == 403 and "history:read" in response.get_json()["message"]
    account = create(client, auth_headers(user), scopes=["account:read"])["api_key"]["key"]
    assert client.get("/api/users/me", headers=with_key(account)).status_code == 200


def test_a_jwt_has_every_scope(client, user, auth_headers):
    assert client.get("/api/probes/history", headers=auth_headers(user)).status_code == 200
    assert client.get("/api/users/me", headers=auth_headers(user)).status_code == 200


def test_an_expired_key_is_401_invalid_credentials_like_an_unknown_one(client, user, auth_headers, db_session):
    body = create(client, auth_headers(user), expires_at=(utcnow() + timedelta(hours=1)).isoformat())
    key = body["api_key"]["key"]
    assert client.get("/api/users/me", headers=with_key(key)).status_code == 200
    db_session.execute(sa.update(ApiKey).where(ApiKey.id == body["api_key"]["id"])
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    expired = client.get("/api/users/me", headers=with_key(key))
    unknown = client.get("/api/users/me", headers=with_key(key[:-7] + "_" + key[-6:][::-1]))
    assert expired.status_code == unknown.status_code == 401
    assert expired.get_json() == unknown.get_json()
    assert expired.get_json()["code"] == "invalid_credentials"


def test_rotation_gives_a_new_key_and_the_old_one_works_for_the_grace_period(client, user, auth_headers, db_session):
    headers = auth_headers(user)
    old = create(client, headers, name="ci", scopes=["account:read"])["api_key"]
    response = client.post(f"/api/apikeys/{old['id']}/rotate", headers=headers)
    assert response.status_code == 201
    body = response.get_json()
    new = body["api_key"]
    assert "only once" in body["warning"]
    assert new["id"] == old["id"] and new["key"] != old["key"] and new["name"] == "ci"
    assert new["scopes"] == ["account:read"] and looks_like_key(new["key"])
    for key in (old["key"], new["key"]):  # both work during the grace period
        assert client.get("/api/users/me", headers=with_key(key)).status_code == 200
    row = db_session.get(ApiKey, old["id"])
    grace = row.previous_expires_at - utcnow()
    assert timedelta(hours=23) < grace <= timedelta(hours=24)  # API_KEY_ROTATION_GRACE_SECONDS default
    row.previous_expires_at = utcnow() - timedelta(seconds=1)  # the grace period is over
    db_session.commit()
    assert client.get("/api/users/me", headers=with_key(old["key"])).status_code == 401
    assert client.get("/api/users/me", headers=with_key(new["key"])).status_code == 200


def test_a_second_rotation_ends_the_first_old_secret(client, user, auth_headers):
    headers = auth_headers(user)
    first = create(client, headers)["api_key"]
    second = client.post(f"/api/apikeys/{first['id']}/rotate", headers=headers).get_json()["api_key"]
    third = client.post(f"/api/apikeys/{first['id']}/rotate", headers=headers).get_json()["api_key"]
    assert client.get("/api/users/me", headers=with_key(first["key"])).status_code == 401
    assert client.get("/api/users/me", headers=with_key(second["key"])).status_code == 200
    assert client.get("/api/users/me", headers=with_key(third["key"])).status_code == 200


def test_rotation_of_a_deactivated_key_keeps_it_off(client, user, auth_headers):
    headers = auth_headers(user)
    key = create(client, headers)["api_key"]
    client.put(f"/api/apikeys/{key['id']}", headers=headers, json={"is_active": False})
    new = client.post(f"/api/apikeys/{key['id']}/rotate", headers=headers).get_json()["api_key"]
    assert client.get("/api/users/me", headers=with_key(new["key"])).status_code == 401


def test_rotation_is_jwt_only_and_own_keys_only(client, user, make_user, auth_headers):
    key = create(client, auth_headers(user))["api_key"]
    assert client.post(f"/api/apikeys/{key['id']}/rotate", headers=with_key(key["key"])).status_code == 403
    other = make_user("mallory")
    assert client.post(f"/api/apikeys/{key['id']}/rotate", headers=auth_headers(other)).status_code == 404
    assert client.post("/api/apikeys/999999/rotate", headers=auth_headers(user)).status_code == 404


@pytest.fixture
def statements(app):
    """Every SQL statement the app runs, on each of its engines."""
    with recorded_statements() as seen:
        yield seen


def _flip(char):
    return "A" if char != "A" else "B"


def test_a_mistyped_or_invented_key_is_refused_without_a_database_query(client, user, auth_headers, statements):
    key = create(client, auth_headers(user))["api_key"]["key"]
    typo = key[:20] + _flip(key[20]) + key[21:]
    invented = "probeops_" + "a" * 43 + "_" + "000000"
    statements.clear()
    for bad in (typo, invented, key[:-1], "probeops.short", "ghp_" + "x" * 36):
        response = client.get("/api/users/me", headers=with_key(bad))
        assert response.status_code == 401 and response.get_json()["code"] == "invalid_credentials"
    # Refused on the checksum or the shape alone (the per-request statistics flush is not a lookup).
    assert [statement for statement in statements if "request_stats" not in statement] == []
    assert client.get("/api/users/me", headers=with_key(key)).status_code == 200
    assert any("api_keys" in statement for statement in statements)  # a good key is looked up


def test_old_format_keys_keep_working(client, user, db_session):
    legacy = LEGACY_PREFIX + secrets.token_urlsafe(32)
    db_session.add(ApiKey(user_id=user.id, key_hash=hash_key(legacy), prefix=legacy[:17], description="old"))
    db_session.commit()
    assert client.get("/api/users/me", headers=with_key(legacy)).status_code == 200
    listed = client.get("/api/users/me", headers=with_key(legacy)).get_json()
    assert listed["username"] == "alice"


def test_new_key_format_carries_a_valid_checksum(client, user, auth_headers):
    key = create(client, auth_headers(user))["api_key"]["key"]
    prefix, random_part, check = key.split("_")
    assert prefix == "probeops" and len(random_part) == 43 and len(check) == 6 and looks_like_key(key)


def test_the_rotate_endpoint_and_key_fields_are_in_the_openapi_document(client):
    spec = client.get("/api/openapi.json").get_json()
    assert "/api/apikeys/{key_id}/rotate" in spec["paths"]
    create_schema = spec["components"]["schemas"]["ApiKeyCreate"]["properties"]
    assert {"name", "expires_at", "scopes"} <= set(create_schema)


def test_the_hot_path_is_one_statement_with_scopes_expiry_rotation_and_sessions(client, user, auth_headers,
                                                                                  statements):
    """``/me`` with a key (scopes, expiry, the rotated secret) or a session JWT (its revocation):
    one statement identifies the caller, once last_used_at has moved (the quota headers' count and
    the statistics flush are other features' statements)."""
    headers = auth_headers(user)
    key = create(client, headers, scopes=["account:read"], expires_at=(utcnow() + timedelta(days=1)).isoformat())
    old = key["api_key"]["key"]
    new = client.post(f"/api/apikeys/{key['api_key']['id']}/rotate", headers=headers).get_json()["api_key"]["key"]
    session = client.post("/api/users/login", json={"username": "alice", "password": "correct horse battery staple"})
    for credential in (with_key(old), with_key(new), {"Authorization": f"Bearer {session.get_json()['token']}"}):
        client.get("/api/users/me", headers=credential)  # moves last_used_at once
        statements.clear()
        assert client.get("/api/users/me", headers=credential).status_code == 200
        identifying = [s for s in statements if any(table in s for table in ("api_keys", "refresh_tokens", "users"))
                       and "probe_jobs" not in s]
        # at most one: the worker's auth cache (app/auth/cache.py, <= 1 s) may answer without it
        assert len(identifying) <= 1 and all(s.lstrip().startswith("SELECT") for s in identifying), statements
