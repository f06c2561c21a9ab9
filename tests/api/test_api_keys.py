"""API key management and use."""
from datetime import timedelta

import pytest

from app.db.models import ApiKey
from tests.conftest import count_rows

KEY_FIELDS = {"id", "key", "name", "description", "is_active", "created_at", "last_used_at", "expires_at", "scopes"}


def create_key(client, headers, description="ci"):
    return client.post("/api/apikeys", headers=headers, json={"description": description})


def test_create_shows_the_whole_key_once(client, user, auth_headers, db_session):
    headers = auth_headers(user)
    response = create_key(client, headers)
    assert response.status_code == 201
    body = response.get_json()
    assert body["message"] == "API key created successfully"
    key = body["api_key"]
    assert set(key) == KEY_FIELDS
    assert key["key"].startswith("probeops_") and len(key["key"]) > 40
    assert key["last_used_at"] is None and key["is_active"] is True and key["description"] == "ci"
    row = db_session.get(ApiKey, key["id"])
    assert key["key"] not in (row.key_hash, row.prefix)  # only a hash and a prefix are stored
    listed = client.get("/api/apikeys", headers=headers).get_json()["api_keys"]
    assert listed[0]["key"] == row.prefix + "..." and key["key"].startswith(row.prefix)
    assert client.get(f"/api/apikeys/{key['id']}", headers=headers).get_json()["key"].endswith("...")


def test_key_authenticates_all_header_spellings_and_moves_last_used(client, user, auth_headers, db_session):
    full = create_key(client, auth_headers(user)).get_json()["api_key"]
    for header in ("X-API-Key", "ApiKey", "Api-Key"):
        response = client.get("/api/users/me", headers={header: full["key"]})
        assert response.status_code == 200 and response.get_json()["username"] == "alice"
    row = db_session.get(ApiKey, full["id"])
    db_session.refresh(row)
    assert row.last_used_at is not None


def test_last_used_at_is_written_at_most_once_a_minute(client, user, auth_headers, db_session):
    full = create_key(client, auth_headers(user)).get_json()["api_key"]
    client.get("/api/users/me", headers={"X-API-Key": full["key"]})
    row = db_session.get(ApiKey, full["id"])
    db_session.refresh(row)
    first = row.last_used_at
    client.get("/api/users/me", headers={"X-API-Key": full["key"]})
    db_session.refresh(row)
    assert row.last_used_at == first
    row.last_used_at = first - timedelta(minutes=2)
    db_session.commit()
    client.get("/api/users/me", headers={"X-API-Key": full["key"]})
    db_session.refresh(row)
    assert row.last_used_at > first - timedelta(minutes=2)


def test_update_and_deactivate(client, user, auth_headers):
    headers = auth_headers(user)
    full = create_key(client, headers).get_json()["api_key"]
    response = client.put(f"/api/apikeys/{full['id']}", headers=headers,
                          json={"description": "new", "is_active": False})
    assert response.status_code == 200
    body = response.get_json()
    assert body["message"] == "API key updated successfully"
    assert body["api_key"]["description"] == "new" and body["api_key"]["is_active"] is False
    assert body["api_key"]["key"].endswith("...")
    response = client.get("/api/users/me", headers={"X-API-Key": full["key"]})
    assert response.status_code == 401


def test_delete_revokes(client, user, auth_headers):
    headers = auth_headers(user)
    full = create_key(client, headers).get_json()["api_key"]
    response = client.delete(f"/api/apikeys/{full['id']}", headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"message": "API key deleted successfully"}
    assert count_rows("api_keys") == 0
    assert client.get("/api/users/me", headers={"X-API-Key": full["key"]}).status_code == 401
    assert client.delete(f"/api/apikeys/{full['id']}", headers=headers).status_code == 404


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_another_users_key_is_404(client, user, make_user, auth_headers, method):
    theirs = create_key(client, auth_headers(make_user("mallory"))).get_json()["api_key"]
    kwargs = {"json": {"description": "mine now"}} if method == "put" else {}
    response = getattr(client, method)(f"/api/apikeys/{theirs['id']}", headers=auth_headers(user), **kwargs)
    assert response.status_code == 404
    assert count_rows("api_keys") == 1


def test_keys_cannot_manage_keys(client, user, auth_headers):
    full = create_key(client, auth_headers(user)).get_json()["api_key"]
    response = client.get("/api/apikeys", headers={"X-API-Key": full["key"]})
    assert response.status_code == 403
    response = client.post("/api/apikeys", headers={"X-API-Key": full["key"]}, json={"description": "x"})
    assert response.status_code == 403
    assert count_rows("api_keys") == 1


def test_list_only_shows_own_keys(client, user, make_user, auth_headers):
    create_key(client, auth_headers(make_user("mallory")))
    create_key(client, auth_headers(user), "a")
    create_key(client, auth_headers(user), "b")
    keys = client.get("/api/apikeys", headers=auth_headers(user)).get_json()["api_keys"]
    assert [k["description"] for k in keys] == ["a", "b"]
    assert all(set(k) == KEY_FIELDS for k in keys)


@pytest.mark.parametrize("body", [{}, {"is_active": "no"}, {"description": 7}, {"description": "x" * 256}])
def test_bad_updates_are_400(client, user, auth_headers, body):
    headers = auth_headers(user)
    full = create_key(client, headers).get_json()["api_key"]
    response = client.put(f"/api/apikeys/{full['id']}", headers=headers, json=body)
    assert response.status_code == 400


@pytest.mark.parametrize("value", ["probeops.nope", "garbage", "probeops." + "A" * 43])
def test_unknown_keys_are_401(client, value):
    response = client.get("/api/users/me", headers={"X-API-Key": value})
    assert response.status_code == 401
    assert response.get_json()["message"] == "Invalid API key"
