"""The audit trail: each action's event (actor, target, address, request id), GET /api/admin/audit's
filters and pagination, admins only, and never a secret in an event."""
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD

AUDIT = "/api/admin/audit"


@pytest.fixture(autouse=True)
def empty_trail(app):
    """PostgreSQL tests share one database; the trail has no foreign key, so nothing cascades to it."""
    from app.extensions import db

    db.session.execute(sa.text("DELETE FROM audit_events"))
    db.session.commit()


def events(client, admin_headers, **query):
    response = client.get(AUDIT, headers=admin_headers, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def only(client, admin_headers, action, request_id=None):
    """The one ``action`` event (of the request ``request_id`` when given: fixtures record events too)."""
    found = [e for e in events(client, admin_headers, action=action, limit=100)["events"]
             if request_id is None or e["request_id"] == request_id]
    assert len(found) == 1, found
    return found[0]


def call(client, method, path, request_id, **kwargs):
    headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}
    return getattr(client, method)(path, headers=headers, **kwargs)


def assert_source(event, request_id):
    assert event["ip"] == "127.0.0.1"
    assert event["request_id"] == request_id
    assert datetime.fromisoformat(event["time"]) > datetime.now(UTC) - timedelta(minutes=5)


def test_register_and_logins(client, admin, auth_headers):
    body = {"username": "bob", "email": "bob@example.com", "password": PASSWORD}
    created = call(client, "post", "/api/users/register", "req-register", json=body)
    assert created.status_code == 201
    bob = created.get_json()["user"]["id"]
    assert call(client, "post", "/api/users/login", "req-ok",
                json={"email": "bob@example.com", "password": PASSWORD}).status_code == 200
    assert call(client, "post", "/api/users/login", "req-bad",
                json={"email": "bob@example.com", "password": "wrong password, twelve+"}).status_code == 401
    assert call(client, "post", "/api/users/login", "req-nobody",
                json={"email": "nobody@example.com", "password": "wrong password, twelve+"}).status_code == 401

    headers = auth_headers(admin)
    register = only(client, headers, "user.register", "req-register")
    assert (register["actor_id"], register["target_type"], register["target_id"]) == (bob, "user", bob)
    assert register["details"] == {"role": "user", "tier": "Free"}
    assert_source(register, "req-register")

    success = only(client, headers, "login.success")
    assert (success["actor_id"], success["target_id"]) == (bob, bob)
    assert_source(success, "req-ok")

    failures = {e["request_id"]: e for e in events(client, headers, action="login.failure")["events"]}
    assert set(failures) == {"req-bad", "req-nobody"}
    assert failures["req-bad"]["actor_id"] is None and failures["req-bad"]["target_id"] == bob
    assert failures["req-bad"]["details"] == {"reason": "invalid_credentials"}
    assert failures["req-nobody"]["target_id"] is None and failures["req-nobody"]["target_type"] is None
    assert_source(failures["req-bad"], "req-bad")


def test_deactivated_login_is_a_failure(client, admin, make_user, auth_headers):
    carol = make_user("carol")
    call(client, "post", f"/api/admin/users/{carol.id}/active", "req-off", headers=auth_headers(admin),
         json={"is_active": False})
    assert call(client, "post", "/api/users/login", "req-login",
                json={"username": "carol", "password": PASSWORD}).status_code == 403
    failure = only(client, auth_headers(admin), "login.failure")
    assert failure["target_id"] == carol.id and failure["details"] == {"reason": "account_disabled"}


def test_admin_changes(client, admin, user, auth_headers):
    headers = auth_headers(admin)
    base = f"/api/admin/users/{user.id}"
    assert call(client, "post", f"{base}/role", "req-role", headers=headers, json={"role": "admin"}).status_code == 200
    assert call(client, "post", f"{base}/tier", "req-tier", headers=headers,
                json={"subscription_tier": "Standard"}).status_code == 200
    assert call(client, "post", f"{base}/active", "req-active", headers=headers,
                json={"is_active": False}).status_code == 200
    expected = {"user.role": ("req-role", {"from": "user", "to": "admin"}),
                "user.tier": ("req-tier", {"from": "Free", "to": "Standard"}),
                "user.active": ("req-active", {"from": True, "to": False})}
    for action, (request_id, details) in expected.items():
        event = only(client, headers, action)
        assert (event["actor_id"], event["target_type"], event["target_id"]) == (admin.id, "user", user.id)
        assert event["details"] == details
        assert_source(event, request_id)


def test_refused_change_leaves_no_event(client, admin, auth_headers):
    """The event commits with the change: the last admin's refused demotion records nothing."""
    headers = auth_headers(admin)
    other = client.post("/api/users/register", json={"username": "other", "email": "o@example.com",
                                                    "password": PASSWORD}).get_json()["user"]["id"]
    assert client.post(f"/api/admin/users/{admin.id}/role", headers=headers, json={"role": "user"}).status_code == 400
    assert client.post(f"/api/admin/users/{other}/tier", headers=headers,
                       json={"subscription_tier": "Gold"}).status_code == 400
    assert events(client, headers, action="user.role")["events"] == []
    assert events(client, headers, action="user.tier")["events"] == []


def test_api_key_events(client, admin, user, auth_headers):
    headers = auth_headers(user)
    created = call(client, "post", "/api/apikeys", "req-create", headers=headers, json={"description": "ci"})
    key_id = created.get_json()["api_key"]["id"]
    call(client, "put", f"/api/apikeys/{key_id}", "req-update", headers=headers, json={"is_active": False})
    call(client, "delete", f"/api/apikeys/{key_id}", "req-delete", headers=headers)
    admin_headers = auth_headers(admin)
    expected = {"apikey.create": ("req-create", {"description": "ci"}),
                "apikey.update": ("req-update", {"fields": ["is_active"], "is_active": False}),
                "apikey.delete": ("req-delete", None)}
    for action, (request_id, details) in expected.items():
        event = only(client, admin_headers, action)
        assert (event["actor_id"], event["target_type"], event["target_id"]) == (user.id, "apikey", key_id)
        assert event["details"] == details
        assert_source(event, request_id)


def test_filters_and_pagination(client, admin, make_user, auth_headers):
    headers = auth_headers(admin)
    users = [make_user(f"u{n}") for n in range(5)]  # five user.register events (actor: themselves)
    everything = events(client, headers, limit=100)
    assert everything["pagination"]["total"] == 6  # and the admin's own registration
    ids = [e["id"] for e in everything["events"]]
    assert ids == sorted(ids, reverse=True), "newest first"

    first = events(client, headers, limit=2)
    assert [e["id"] for e in first["events"]] == ids[:2]
    assert first["pagination"]["previous"] is None
    second = client.get(first["pagination"]["next"], headers=headers).get_json()
    assert [e["id"] for e in second["events"]] == ids[2:4]
    assert second["pagination"]["offset"] == 2 and second["pagination"]["previous"] is not None

    mine = events(client, headers, actor_id=users[2].id)
    assert [e["target_id"] for e in mine["events"]] == [users[2].id]
    filtered = events(client, headers, action="user.register", limit=2)
    assert "action=user.register" in filtered["pagination"]["next"]

    latest = everything["events"][0]["time"]
    assert events(client, headers, since=latest)["pagination"]["total"] >= 1
    assert events(client, headers, until=everything["events"][-1]["time"])["pagination"]["total"] == 0
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert events(client, headers, since=future)["pagination"]["total"] == 0
    assert events(client, headers, action="login.success")["events"] == []


@pytest.mark.parametrize("query,field", [
    ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"offset": -1}, "offset"),
    ({"action": "user.delete"}, "action"), ({"actor_id": "abc"}, "actor_id"), ({"since": "yesterday"}, "since"),
    ({"since": "2026-11-26T10:00:00Z", "until": "2026-11-26T09:00:00Z"}, "until"),
])
def test_bad_filters_are_400_with_fields(client, admin, auth_headers, query, field):
    response = client.get(AUDIT, headers=auth_headers(admin), query_string=query)
    assert response.status_code == 400
    assert field in response.get_json()["fields"]


def test_admins_only(client, user, auth_headers):
    assert client.get(AUDIT).status_code == 401
    assert client.get(AUDIT, headers=auth_headers(user)).status_code == 403


def test_no_secret_in_any_event(client, admin, auth_headers):
    """Every action, then the whole trail (API answer and raw rows) scanned for each secret string."""
    from app.extensions import db

    new_password = "another long passphrase 42"
    reg = client.post("/api/users/register", json={"username": "dave", "email": "dave@example.com",
                                                    "password": new_password})
    dave = reg.get_json()["user"]["id"]
    login = client.post("/api/users/login", json={"username": "dave", "password": new_password}).get_json()
    token = login["token"]
    client.post("/api/users/login", json={"username": "dave", "password": new_password + "x"})
    client.post("/api/users/login", json={"username": new_password, "password": new_password})  # wrong field
    bearer = {"Authorization": f"Bearer {token}"}
    key = client.post("/api/apikeys", headers=bearer, json={"description": "d"}).get_json()["api_key"]
    client.put(f"/api/apikeys/{key['id']}", headers=bearer, json={"description": "e"})
    client.get("/api/users/me", headers={"X-API-Key": key["key"]})
    client.delete(f"/api/apikeys/{key['id']}", headers=bearer)
    headers = auth_headers(admin)
    client.post(f"/api/admin/users/{dave}/tier", headers=headers, json={"subscription_tier": "Standard"})
    password_hash = db.session.scalar(sa.text("SELECT password_hash FROM users WHERE id = :id"), {"id": dave})

    answer = json.dumps(events(client, headers, limit=100))
    rows = json.dumps([list(map(str, row)) for row in db.session.execute(sa.text("SELECT * FROM audit_events"))])
    assert len(json.loads(answer)["events"]) == 9
    for secret in (new_password, token, key["key"], password_hash, headers["Authorization"].split()[1]):
        assert secret not in answer and secret not in rows
