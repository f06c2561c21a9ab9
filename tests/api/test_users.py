"""Registration, login and /me."""
import pytest

from tests.conftest import PASSWORD, count_rows

USER_FIELDS = {"id", "username", "email", "is_active", "role", "subscription_tier", "created_at"}


def register(client, **body):
    data = {"username": "bob", "email": "bob@example.com", "password": PASSWORD, **body}
    return client.post("/api/users/register", json=data)


def test_register_creates_a_free_user(client):
    response = register(client, email="Bob@Example.COM")
    assert response.status_code == 201
    body = response.get_json()
    assert body["message"] == "User registered successfully"
    user = body["user"]
    assert set(user) == USER_FIELDS
    assert user["username"] == "bob" and user["email"] == "bob@example.com"
    assert user["role"] == "user" and user["subscription_tier"] == "Free" and user["is_active"] is True
    assert user["created_at"].endswith("+00:00")
    assert count_rows("users") == 1


@pytest.mark.parametrize("field,clash", [("username", {"username": "bob", "email": "other@example.com"}),
                                         ("email", {"username": "bobby", "email": "BOB@example.com"})])
def test_duplicates_are_409_naming_the_field(client, field, clash):
    assert register(client).status_code == 201
    response = register(client, **clash)
    assert response.status_code == 409
    assert response.get_json()["error"] == "Conflict"
    assert response.get_json()["message"].startswith(field)
    assert count_rows("users") == 1


@pytest.mark.parametrize("body,field", [
    ({"email": "not-an-email"}, "email"),
    ({"password": "short"}, "password"),
    ({"password": "x" * 129}, "password"),
    ({"username": "a b"}, "username"),
    ({"username": 5}, "username"),
    ({"email": None}, "email"),
])
def test_invalid_registration_is_400_naming_the_field(client, body, field):
    response = register(client, **body)
    assert response.status_code == 400
    assert field in response.get_json()["message"]
    assert count_rows("users") == 0


def test_password_min_length_is_configurable(app, client):
    app.config["PASSWORD_MIN_LENGTH"] = 20
    response = register(client, password="a" * 19)
    assert response.status_code == 400 and "20" in response.get_json()["message"]


def test_long_unicode_password_works(client):
    password = "пароль🔑" * 16  # 128 characters, far more than bcrypt's 72 bytes
    assert register(client, password=password).status_code == 201
    assert client.post("/api/users/login", json={"email": "bob@example.com", "password": password}).status_code == 200
    other = password[:-1] + "x"  # differs only past byte 72: must not log in
    assert client.post("/api/users/login", json={"email": "bob@example.com", "password": other}).status_code == 401


def test_login_by_email_or_username(client, user):
    for credentials in ({"email": "ALICE@example.com"}, {"username": "alice"}):
        response = client.post("/api/users/login", json={**credentials, "password": PASSWORD})
        assert response.status_code == 200
        body = response.get_json()
        assert body["message"] == "Login successful"
        assert body["user"]["username"] == "alice"
        assert body["token"].count(".") == 2


def test_wrong_password_and_unknown_email_look_the_same(client, user):
    wrong = client.post("/api/users/login", json={"email": "alice@example.com", "password": "wrong password!!"})
    unknown = client.post("/api/users/login", json={"email": "nobody@example.com", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()


def test_login_needs_email_or_username(client):
    response = client.post("/api/users/login", json={"password": PASSWORD})
    assert response.status_code == 400 and "email" in response.get_json()["message"]


def test_deactivated_user_login_is_403(client, user, db_session):
    user.is_active = False
    db_session.commit()
    response = client.post("/api/users/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 403


def test_token_from_login_reads_me(client, user):
    login = {"email": "alice@example.com", "password": PASSWORD}
    token = client.post("/api/users/login", json=login).get_json()["token"]
    response = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert set(response.get_json()) == USER_FIELDS
    assert response.get_json()["username"] == "alice"


def test_me_needs_auth(client):
    response = client.get("/api/users/me")
    assert response.status_code == 401
    assert response.get_json() == {"error": "Unauthorized", "message": "Authentication required",
                                   "code": "authentication_required"}


def test_login_rate_limit_is_tighter(app, client, user):
    app.config["RATELIMIT_AUTH"] = "3 per minute"
    wrong = {"email": "alice@example.com", "password": "bad password!!"}
    codes = [client.post("/api/users/login", json=wrong).status_code
             for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    response = client.post("/api/users/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "retry in" in response.get_json()["message"]
