"""Admin endpoints and the role matrix."""
import pytest

from tests.conftest import PASSWORD

ADMIN_ROUTES = [
    ("get", "/api/admin/users", None),
    ("get", "/api/users", None),
    ("post", "/api/admin/users/{id}/role", {"role": "admin"}),
    ("post", "/api/admin/users/{id}/tier", {"subscription_tier": "Standard"}),
    ("post", "/api/admin/users/{id}/active", {"is_active": False}),
    ("get", "/api/admin/status", None),
    ("get", "/api/status", None),
]


@pytest.mark.parametrize("method,path,body", ADMIN_ROUTES)
def test_non_admin_gets_403_and_nothing_changes(client, user, auth_headers, db_session, method, path, body):
    response = getattr(client, method)(path.format(id=user.id), headers=auth_headers(user), json=body)
    assert response.status_code == 403
    assert response.get_json()["error"] == "Forbidden"
    db_session.refresh(user)
    assert (user.role, user.subscription_tier, user.is_active) == ("user", "Free", True)


@pytest.mark.parametrize("method,path,body", ADMIN_ROUTES)
def test_anonymous_gets_401(client, user, method, path, body):
    assert getattr(client, method)(path.format(id=user.id), json=body).status_code == 401


def test_list_users_with_counts(client, admin, user, auth_headers):
    client.post("/api/apikeys", headers=auth_headers(user), json={"description": "k"})
    for path in ("/api/admin/users", "/api/users"):
        users = client.get(path, headers=auth_headers(admin)).get_json()["users"]
        alice = next(u for u in users if u["username"] == "alice")
        assert alice["api_key_count"] == 1 and alice["probe_job_count"] == 0
        assert set(alice) == {"id", "username", "email", "is_active", "role", "subscription_tier", "created_at",
                              "api_key_count", "probe_job_count"}


def test_change_role_and_tier(client, admin, user, auth_headers, db_session):
    headers = auth_headers(admin)
    response = client.post(f"/api/admin/users/{user.id}/tier", headers=headers,
                           json={"subscription_tier": "Enterprise"})
    assert response.status_code == 200
    assert response.get_json()["message"] == "User subscription tier updated successfully"
    assert response.get_json()["user"]["subscription_tier"] == "Enterprise"
    response = client.post(f"/api/admin/users/{user.id}/role", headers=headers, json={"role": "admin"})
    assert response.get_json() == {"message": "User role updated successfully",
                                   "user": {**response.get_json()["user"], "role": "admin"}}
    db_session.refresh(user)
    assert (user.role, user.subscription_tier) == ("admin", "Enterprise")
    # the role is read from the database: the same old token is now an admin's
    assert client.get("/api/admin/users", headers=auth_headers(user)).status_code == 200


def test_role_change_applies_to_existing_tokens(client, admin, user, auth_headers):
    token_headers = auth_headers(admin)
    client.post(f"/api/admin/users/{admin.id}/role", headers=token_headers, json={"role": "user"})
    # refused: an admin cannot demote themself, so the token still works as admin
    assert client.get("/api/admin/users", headers=token_headers).status_code == 200


@pytest.mark.parametrize("path,body", [("role", {"role": "superuser"}), ("tier", {"subscription_tier": "Gold"}),
                                       ("active", {"is_active": "false"}), ("tier", {})])
def test_bad_values_are_400(client, admin, user, auth_headers, path, body):
    response = client.post(f"/api/admin/users/{user.id}/{path}", headers=auth_headers(admin), json=body)
    assert response.status_code == 400


def test_unknown_user_is_404(client, admin, auth_headers):
    response = client.post("/api/admin/users/9999/tier", headers=auth_headers(admin),
                           json={"subscription_tier": "Free"})
    assert response.status_code == 404


def test_deactivation_stops_tokens_and_keys_at_once(client, admin, user, auth_headers):
    user_headers = auth_headers(user)
    key = client.post("/api/apikeys", headers=user_headers, json={}).get_json()["api_key"]["key"]
    response = client.post(f"/api/admin/users/{user.id}/active", headers=auth_headers(admin), json={"is_active": False})
    assert response.status_code == 200
    assert response.get_json()["message"] == "User status updated successfully"
    assert response.get_json()["user"]["is_active"] is False
    assert client.get("/api/users/me", headers=user_headers).status_code == 401
    assert client.get("/api/users/me", headers={"X-API-Key": key}).status_code == 401
    assert client.post("/api/users/login", json={"username": "alice", "password": PASSWORD}).status_code == 403
    # reactivated: the key works again, the old token stays revoked, a new login works
    client.post(f"/api/admin/users/{user.id}/active", headers=auth_headers(admin), json={"is_active": True})
    assert client.get("/api/users/me", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/api/users/me", headers=user_headers).status_code == 401
    assert client.post("/api/users/login", json={"username": "alice", "password": PASSWORD}).status_code == 200


def test_admin_cannot_lock_themself_out(client, admin, auth_headers):
    headers = auth_headers(admin)
    answer = client.post(f"/api/admin/users/{admin.id}/active", headers=headers, json={"is_active": False})
    assert answer.status_code == 400
    assert client.post(f"/api/admin/users/{admin.id}/role", headers=headers, json={"role": "user"}).status_code == 400


def test_status_has_real_figures(client, admin, user, auth_headers):
    headers = auth_headers(admin)
    for _ in range(3):
        client.get("/api/health")
    body = client.get("/api/admin/status", headers=headers).get_json()
    assert set(body) == {"system", "database", "requests"}
    system, database, requests = body["system"], body["database"], body["requests"]
    assert system["version"] == "1.0.0"
    assert system["uptime"].endswith("s") and system["uptime_seconds"] >= 0
    assert " / " in system["memory_usage"] and system["cpu_usage"].endswith("%")
    assert database["status"] == "connected"
    assert database["users_count"] == 2 and database["api_keys_count"] == 0 and database["probe_jobs_count"] == 0
    assert database["size_bytes"] > 0
    assert requests["total_today"] >= 3 and requests["total_this_month"] >= requests["total_today"]
    assert requests["average_response_time"].endswith("ms")
    assert client.get("/api/status", headers=headers).status_code == 200


def test_create_admin_command(app, db_session):
    from app.db.models import User

    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-admin", "--username", "ops", "--email", "ops@example.com",
                                 "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    assert "created" in result.output
    ops = db_session.query(User).filter_by(username="ops").one()
    assert (ops.role, ops.subscription_tier) == ("admin", "Enterprise")
    again = runner.invoke(args=["create-admin", "--username", "ops", "--email", "ops@example.com",
                                "--password", PASSWORD])
    assert "unchanged" in again.output


def test_ensure_admin_from_environment_config(app, db_session):
    from app.db.models import User

    app.config.update(ADMIN_USERNAME="boss", ADMIN_EMAIL="boss@example.com", ADMIN_PASSWORD=PASSWORD)
    runner = app.test_cli_runner()
    assert "admin created" in runner.invoke(args=["ensure-admin"]).output
    assert "already exists" in runner.invoke(args=["ensure-admin"]).output
    assert db_session.query(User).filter_by(username="boss", role="admin").count() == 1
