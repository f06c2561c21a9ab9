"""Tokens that must not work, and secrets that must never leave the server."""
import base64
import json
import time

import jwt
import pytest

from tests.conftest import PASSWORD


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_token_is_401(client, user, auth_headers):
    token = auth_headers(user)["Authorization"].split()[1]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "999"
    forged = f"{header}.{_b64(claims)}.{signature}"
    assert client.get("/api/users/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_alg_none_is_401(client, user):
    now = int(time.time())
    claims = {"sub": str(user.id), "iat": now, "exp": now + 600, "ver": 0}
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_other_secret_or_algorithm_is_401(app, client, user):
    now = int(time.time())
    claims = {"sub": str(user.id), "iat": now, "exp": now + 600, "ver": 0}
    for token in (jwt.encode(claims, "x" * 40, algorithm="HS256"),
                  jwt.encode(claims, app.config["JWT_SECRET_KEY"] * 2, algorithm="HS512")):
        assert client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_expired_token_is_401(app, client, user):
    now = int(time.time())
    token = jwt.encode({"sub": str(user.id), "iat": now - 7200, "exp": now - 3600, "ver": 0},
                       app.config["JWT_SECRET_KEY"], algorithm="HS256")
    response = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.get_json()["error"] == "Unauthorized"


def test_token_without_required_claims_is_401(app, client, user):
    token = jwt.encode({"sub": str(user.id)}, app.config["JWT_SECRET_KEY"], algorithm="HS256")
    assert client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


@pytest.mark.parametrize("value", ["Basic abc", "Bearer", "Token xyz", "Bearer not.a.jwt"])
def test_malformed_authorization_is_401(client, value):
    response = client.get("/api/users/me", headers={"Authorization": value})
    assert response.status_code == 401
    assert response.is_json


def test_token_version_bump_revokes_tokens(client, user, auth_headers, db_session):
    headers = auth_headers(user)
    user.token_version += 1
    db_session.commit()
    assert client.get("/api/users/me", headers=headers).status_code == 401


def test_no_response_contains_a_password_or_key_hash(client, admin, user, auth_headers, db_session):
    from app.db.models import ApiKey, User

    bodies = []
    bodies.append(client.post("/api/users/register", json={"username": "carol", "email": "carol@example.com",
                                                           "password": PASSWORD}).get_data(as_text=True))
    answer = client.post("/api/users/login", json={"username": "alice", "password": PASSWORD})
    bodies.append(answer.get_data(as_text=True))
    created = client.post("/api/apikeys", headers=auth_headers(user), json={"description": "k"})
    bodies.append(created.get_data(as_text=True))
    key_id = created.get_json()["api_key"]["id"]
    for path in ("/api/users/me", "/api/apikeys", f"/api/apikeys/{key_id}"):
        bodies.append(client.get(path, headers=auth_headers(user)).get_data(as_text=True))
    for path in ("/api/admin/users", "/api/users", "/api/admin/status"):
        bodies.append(client.get(path, headers=auth_headers(admin)).get_data(as_text=True))
    bodies.append(client.post(f"/api/admin/users/{user.id}/tier", headers=auth_headers(admin),
                              json={"subscription_tier": "Standard"}).get_data(as_text=True))
    secrets = [u.password_hash for u in db_session.query(User)] + [k.key_hash for k in db_session.query(ApiKey)]
    secrets += ["password_hash", "key_hash", "$2b$"]
    for body in bodies:
        for secret in secrets:
            assert secret not in body
