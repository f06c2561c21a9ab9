"""Sessions (issue 11): login with a refresh token, refresh rotation and reuse detection, logout,
password change, profile change, expired tokens. SQLite and PostgreSQL."""
import threading
from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa

from app.db.models import RefreshToken
from app.utils.clock import utcnow
from tests.conftest import PASSWORD

NEW_PASSWORD = "a brand new passphrase 42"


def login(client, password=PASSWORD):
    response = client.post("/api/users/login", json={"username": "alice", "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def refresh(client, refresh_token):
    return client.post("/api/users/refresh", json={"refresh_token": refresh_token})


def test_login_answers_expires_in_and_a_refresh_token(app, client, user, db_session):
    body = login(client)
    assert body["expires_in"] == app.config["JWT_EXPIRES_MINUTES"] * 60
    assert body["refresh_token"] and body["token"].count(".") == 2
    row = db_session.scalars(sa.select(RefreshToken)).one()
    assert body["refresh_token"] not in (row.token_hash, row.family_id)  # stored hashed only
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sid"] == row.family_id
    assert client.get("/api/users/me", headers=bearer(body["token"])).status_code == 200


def test_refresh_rotates_and_the_old_refresh_token_is_spent(client, user):
    first = login(client)
    response = refresh(client, first["refresh_token"])
    assert response.status_code == 200
    second = response.get_json()
    assert set(second) == {"token", "expires_in", "refresh_token"}
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/api/users/me", headers=bearer(second["token"])).status_code == 200
    third = refresh(client, second["refresh_token"])
    assert third.status_code == 200


def test_reuse_of_a_spent_refresh_token_revokes_the_whole_family(client, user):
    first = login(client)
    second = refresh(client, first["refresh_token"]).get_json()
    reuse = refresh(client, first["refresh_token"])
    assert reuse.status_code == 401 and reuse.get_json()["code"] == "token_revoked"
    assert reuse.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    # The descendant refresh token and the family's access tokens are revoked too.
    assert refresh(client, second["refresh_token"]).get_json()["code"] == "token_revoked"
    for token in (first["token"], second["token"]):
        response = client.get("/api/users/me", headers=bearer(token))
        assert response.status_code == 401 and response.get_json()["code"] == "token_revoked"


def test_reuse_revokes_only_that_family(client, user):
    laptop, phone = login(client), login(client)
    refresh(client, laptop["refresh_token"])
    refresh(client, laptop["refresh_token"])  # reuse: the laptop's session ends
    assert client.get("/api/users/me", headers=bearer(phone["token"])).status_code == 200
    assert refresh(client, phone["refresh_token"]).status_code == 200


def test_parallel_refreshes_of_one_token_one_wins_and_the_family_is_revoked(app, client, user):
    """Two clients present the same refresh token at once: exactly one gets a pair, the other
    is reuse and revokes the family — including the pair the winner just got."""
    first = login(client)
    for _ in range(5):  # a few rounds, each with a fresh session
        start = login(client)
        barrier = threading.Barrier(2)
        answers = []

        def present(token=start["refresh_token"], barrier=barrier, answers=answers):
            own_client = app.test_client()
            barrier.wait()
            answers.append(refresh(own_client, token))

        threads = [threading.Thread(target=present) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 401], [answer.get_json() for answer in answers]
        winner = next(answer.get_json() for answer in answers if answer.status_code == 200)
        loser = next(answer.get_json() for answer in answers if answer.status_code == 401)
        assert loser["code"] == "token_revoked"
        assert refresh(client, winner["refresh_token"]).get_json()["code"] == "token_revoked"
        assert client.get("/api/users/me", headers=bearer(winner["token"])).status_code == 401
    assert client.get("/api/users/me", headers=bearer(first["token"])).status_code == 200  # other session


def test_unknown_and_expired_refresh_tokens(client, user, db_session):
    unknown = refresh(client, "probeops_rt_invented")
    assert unknown.status_code == 401 and unknown.get_json()["code"] == "invalid_credentials"
    body = login(client)
    db_session.execute(sa.update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    expired = refresh(client, body["refresh_token"])
    assert expired.status_code == 401 and expired.get_json()["code"] == "token_expired"
    assert refresh(client, "").status_code == 400


def test_a_login_clears_the_users_expired_refresh_tokens(client, user, db_session):
    login(client)
    db_session.execute(sa.update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    body = login(client)
    rows = db_session.scalars(sa.select(RefreshToken)).all()
    assert len(rows) == 1 and rows[0].expires_at > utcnow()
    assert refresh(client, body["refresh_token"]).status_code == 200


def test_refresh_of_a_deactivated_user_is_refused(client, user, db_session):
    body = login(client)
    user.is_active = False
    db_session.commit()
    response = refresh(client, body["refresh_token"])
    assert response.status_code == 401 and response.get_json()["code"] == "account_disabled"


def test_logout_revokes_the_access_token_and_its_refresh_family(client, user):
    body, other = login(client), login(client)
    response = client.post("/api/users/logout", headers=bearer(body["token"]), json={})
    assert response.status_code == 200
    gone = client.get("/api/users/me", headers=bearer(body["token"]))
    assert gone.status_code == 401 and gone.get_json()["code"] == "token_revoked"
    assert gone.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert refresh(client, body["refresh_token"]).status_code == 401
    assert client.get("/api/users/me", headers=bearer(other["token"])).status_code == 200


def test_logout_also_ends_the_session_of_a_given_refresh_token(client, user):
    body, other = login(client), login(client)
    client.post("/api/users/logout", headers=bearer(body["token"]), json={"refresh_token": other["refresh_token"]})
    assert refresh(client, other["refresh_token"]).status_code == 401
    assert client.get("/api/users/me", headers=bearer(other["token"])).status_code == 401


def test_logout_needs_a_jwt(client, user, auth_headers):
    assert client.post("/api/users/logout", json={}).status_code == 401
    key = client.post("/api/apikeys", headers=auth_headers(user), json={}).get_json()["api_key"]["key"]
    assert client.post("/api/users/logout", headers={"X-API-Key": key}, json={}).status_code == 403


def test_password_change_revokes_other_sessions_but_not_api_keys(client, user, auth_headers):
    key = client.post("/api/apikeys", headers=auth_headers(user), json={}).get_json()["api_key"]["key"]
    this, other = login(client), login(client)
    legacy = auth_headers(user)  # a token without a session
    response = client.post("/api/users/me/password", headers=bearer(this["token"]),
                           json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["token"] and answer["expires_in"] > 0
    # This session goes on with the answer's token and its own refresh token.
    assert client.get("/api/users/me", headers=bearer(answer["token"])).status_code == 200
    assert refresh(client, this["refresh_token"]).status_code == 200
    # Every other token stops working at once.
    for headers in (bearer(other["token"]), legacy, bearer(this["token"])):
        assert client.get("/api/users/me", headers=headers).status_code == 401
    assert refresh(client, other["refresh_token"]).get_json()["code"] == "token_revoked"
    # API keys keep working; the new password logs in, the old one does not.
    assert client.get("/api/users/me", headers={"X-API-Key": key}).status_code == 200
    assert login(client, NEW_PASSWORD)["token"]
    assert client.post("/api/users/login", json={"username": "alice", "password": PASSWORD}).status_code == 401


def test_password_change_without_a_session_starts_one(client, user, auth_headers):
    response = client.post("/api/users/me/password", headers=auth_headers(user),
                           json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    answer = response.get_json()
    assert response.status_code == 200 and answer["refresh_token"]
    assert refresh(client, answer["refresh_token"]).status_code == 200


def test_password_change_needs_the_current_password_and_a_valid_new_one(client, user):
    token = login(client)["token"]
    wrong = client.post("/api/users/me/password", headers=bearer(token),
                        json={"current_password": "not my password", "new_password": NEW_PASSWORD})
    assert wrong.status_code == 401 and "current_password" in wrong.get_json()["fields"]
    short = client.post("/api/users/me/password", headers=bearer(token),
                        json={"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 400 and "new_password" in short.get_json()["fields"]
    assert client.get("/api/users/me", headers=bearer(token)).status_code == 200  # nothing changed


def test_patch_me_changes_username_and_email_with_the_password(client, user, make_user):
    token = login(client)["token"]
    response = client.patch("/api/users/me", headers=bearer(token),
                            json={"username": "alice2", "email": "Alice2@Example.com", "current_password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["username"] == "alice2" and response.get_json()["email"] == "alice2@example.com"
    assert client.get("/api/users/me", headers=bearer(token)).get_json()["username"] == "alice2"
    no_password = client.patch("/api/users/me", headers=bearer(token), json={"email": "x@example.com"})
    assert no_password.status_code == 400 and "current_password" in no_password.get_json()["fields"]
    wrong = client.patch("/api/users/me", headers=bearer(token),
                         json={"email": "x@example.com", "current_password": "wrong password"})
    assert wrong.status_code == 401
    make_user("bob")
    for field, value in (("username", "BOB"), ("email", "bob@example.com")):
        clash = client.patch("/api/users/me", headers=bearer(token), json={field: value, "current_password": PASSWORD})
        assert clash.status_code == 409 and field in clash.get_json()["fields"]
    nothing = client.patch("/api/users/me", headers=bearer(token), json={"current_password": PASSWORD})
    assert nothing.status_code == 400


def test_expired_jwt_is_token_expired_with_the_challenge(app, client, user):
    from app.auth.tokens import issue_token

    token = issue_token(user, app.config["JWT_SECRET_KEY"], 1, utcnow() - timedelta(minutes=5))
    response = client.get("/api/users/me", headers=bearer(token))
    assert response.status_code == 401 and response.get_json()["code"] == "token_expired"
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    malformed = client.get("/api/users/me", headers=bearer("not.a.token"))
    assert malformed.get_json()["code"] == "invalid_credentials"


@pytest.mark.parametrize("path", ["/api/users/refresh", "/api/users/logout", "/api/users/me/password"])
def test_new_endpoints_are_in_the_openapi_document(client, path):
    spec = client.get("/api/openapi.json").get_json()
    assert path in spec["paths"]


# -- three Gunicorn workers (./start.sh) -----------------------------------------------------------
def _connections_on_every_worker(port, workers, headers):
    """One keep-alive connection served by each worker (found from the server's sockets)."""
    import http.client

    from tests.api.test_measurements import _call, _worker_serving

    found = {}
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, raw = _call(conn, "GET", "/api/users/me", headers)
        assert status == 200, raw
        pid = _worker_serving(workers, conn)
        if pid is not None and pid not in found:
            found[pid] = conn
        else:
            conn.close()
        if len(found) == len(workers):
            return list(found.values())
    pytest.fail(f"connections reached only {len(found)} of {len(workers)} workers")


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_logout_and_refresh_reuse_hold_on_every_gunicorn_worker(tmp_path, database, request, redis_server):
    """Logout in one worker: the token is refused by all three on their next request. Two parallel
    refreshes of one token over HTTP: one pair, one token_revoked, and the winner's pair is dead."""
    import json

    import psutil
    import requests

    from tests.api.test_measurements import _call
    from tests.e2e.test_start_sh import register_and_login, workers_of
    from tests.support.gunicorn import StartedServer

    env = {"RATELIMIT_STORAGE_URI": redis_server.url, "WORKERS": "3", "THREADS": "4",
           "RATELIMIT_DEFAULT": "1000 per minute", "RATELIMIT_AUTH": "1000 per minute"}
    if database == "postgresql":
        env["DATABASE_URL"] = request.getfixturevalue("postgres").create_database(f"probeops_sessions_{database}")
    srv = StartedServer(env, tmp_path).start()
    connections = []
    try:
        workers = [psutil.Process(w.pid) for w in workers_of(srv, expected=3)]
        assert len(workers) == 3
        register_and_login(srv.url)

        def new_login():
            answer = requests.post(f"{srv.url}/api/users/login", json={"username": "alice", "password": PASSWORD},
                                   timeout=10)
            assert answer.status_code == 200, answer.text
            return answer.json()

        session = new_login()
        headers = bearer(session["token"])
        connections.extend(_connections_on_every_worker(srv.port, workers, headers))
        status, raw = _call(connections[0], "POST", "/api/users/logout", headers, {})
        assert status == 200, raw
        for conn in connections:  # at once, on every worker
            status, raw = _call(conn, "GET", "/api/users/me", headers)
            assert status == 401 and json.loads(raw)["code"] == "token_revoked", raw

        for _ in range(3):
            start = new_login()
            barrier = threading.Barrier(2)
            answers = []

            def present(token=start["refresh_token"], barrier=barrier, answers=answers):
                barrier.wait()
                answers.append(requests.post(f"{srv.url}/api/users/refresh", json={"refresh_token": token},
                                             timeout=30))

            threads = [threading.Thread(target=present) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert sorted(answer.status_code for answer in answers) == [200, 401], [a.text for a in answers]
            winner = next(answer.json() for answer in answers if answer.status_code == 200)
            assert next(a.json() for a in answers if a.status_code == 401)["code"] == "token_revoked"
            again = requests.get(f"{srv.url}/api/users/me", headers=bearer(winner["token"]), timeout=10)
            assert again.status_code == 401 and again.json()["code"] == "token_revoked"
    finally:
        for conn in connections:
            conn.close()
        srv.stop()
