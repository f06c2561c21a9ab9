"""Admin user management: search and pages, one user, PATCH with the POST endpoints' rules and audit
events, a user's jobs and keys, revoking any key (SQLite and PostgreSQL)."""
import pytest
import sqlalchemy as sa

from app.probes.results import ProbeResult
from app.services.probe_jobs import complete_job, reserve_job

USERS = "/api/admin/users"


@pytest.fixture
def app_overrides():
    return {"TIER_QUOTAS": {"Free": (None, None), "Standard": (None, None), "Enterprise": (None, None)}}


@pytest.fixture(autouse=True)
def empty_trail(app):
    """PostgreSQL tests share one database; the trail has no foreign key, so nothing cascades to it."""
    from app.extensions import db

    db.session.execute(sa.text("DELETE FROM audit_events"))
    db.session.commit()


def audit_events(client, headers, action):
    response = client.get("/api/admin/audit", headers=headers, query_string={"action": action, "limit": 100})
    return response.get_json()["events"]


def add_jobs(user, n, probe_type="ping", target="127.0.0.1", success=True):
    for _ in range(n):
        job, _ = reserve_job(user, probe_type, target, {"count": 1})
        complete_job(job, ProbeResult(success, "ok", {}))


@pytest.fixture
def people(make_user, admin):
    """An admin and six users: three Free (bob, BobBy, carol), two Standard, one deactivated."""
    from app.extensions import db

    made = {name: make_user(name, tier=tier) for name, tier in
            (("bob", "Free"), ("BobBy", "Free"), ("carol", "Free"), ("dave", "Standard"), ("erin", "Standard"),
             ("frank", "Free"))}
    made["frank"].is_active = False
    db.session.commit()
    made["root"] = admin
    return made


def names(body):
    return [u["username"] for u in body["users"]]


@pytest.mark.parametrize("path", [USERS, "/api/users"])
def test_list_paginates_with_links(client, people, auth_headers, path):
    headers = auth_headers(people["root"])
    first = client.get(path, headers=headers, query_string={"limit": 3}).get_json()
    assert len(first["users"]) == 3 and first["pagination"]["total"] == 7
    assert first["pagination"]["previous"] is None
    assert first["pagination"]["next"].endswith(f"{path}?limit=3&offset=3")
    second = client.get(first["pagination"]["next"], headers=headers).get_json()
    third = client.get(second["pagination"]["next"], headers=headers).get_json()
    assert third["pagination"]["next"] is None and len(third["users"]) == 1
    seen = names(first) + names(second) + names(third)
    assert sorted(seen) == sorted(people) and len(set(seen)) == 7
    assert set(first["users"][0]) == {"id", "username", "email", "is_active", "role", "subscription_tier",
                                      "created_at", "api_key_count", "probe_job_count"}


def test_search_is_a_case_insensitive_substring_of_username_or_email(client, people, auth_headers):
    headers = auth_headers(people["root"])
    assert sorted(names(client.get(USERS, headers=headers, query_string={"q": "BOB"}).get_json())) == ["BobBy", "bob"]
    assert names(client.get(USERS, headers=headers, query_string={"q": "carol@EXAMPLE"}).get_json()) == ["carol"]
    assert names(client.get(USERS, headers=headers, query_string={"q": "%"}).get_json()) == []  # no LIKE wildcard
    assert names(client.get(USERS, headers=headers, query_string={"q": "_"}).get_json()) == []


def test_filters_combine_and_links_keep_them(client, people, auth_headers):
    headers = auth_headers(people["root"])
    get = lambda **q: client.get(USERS, headers=headers, query_string=q).get_json()  # noqa: E731
    assert sorted(names(get(tier="Standard"))) == ["dave", "erin"]
    assert names(get(role="admin")) == ["root"]
    assert names(get(is_active="false")) == ["frank"]
    assert sorted(names(get(tier="Free", is_active="true"))) == ["BobBy", "bob", "carol"]
    page = get(tier="Free", is_active="true", limit=2)
    assert page["pagination"]["total"] == 3
    nxt = page["pagination"]["next"]
    assert "tier=Free" in nxt and "is_active=true" in nxt and "offset=2" in nxt
    assert len(client.get(nxt, headers=headers).get_json()["users"]) == 1


@pytest.mark.parametrize("query,field", [({"tier": "Gold"}, "tier"), ({"role": "root"}, "role"),
                                         ({"is_active": "yes"}, "is_active"), ({"limit": "0"}, "limit"),
                                         ({"limit": "101"}, "limit"), ({"offset": "-1"}, "offset")])
def test_bad_filters_are_400_naming_the_field(client, admin, auth_headers, query, field):
    response = client.get(USERS, headers=auth_headers(admin), query_string=query)
    assert response.status_code == 400
    assert field in response.get_json()["fields"]


def test_one_user_with_counts(client, admin, user, auth_headers):
    client.post("/api/apikeys", headers=auth_headers(user), json={"name": "k"})
    add_jobs(user, 2)
    body = client.get(f"{USERS}/{user.id}", headers=auth_headers(admin)).get_json()
    assert body["username"] == "alice" and body["api_key_count"] == 1 and body["probe_job_count"] == 2
    assert client.get(f"{USERS}/99999", headers=auth_headers(admin)).status_code == 404


def test_patch_changes_fields_with_the_post_audit_events(client, admin, user, auth_headers, db_session):
    headers = auth_headers(admin)
    response = client.patch(f"{USERS}/{user.id}", headers=headers,
                            json={"role": "admin", "subscription_tier": "Standard", "is_active": True})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["role"], body["subscription_tier"], body["is_active"]) == ("admin", "Standard", True)
    db_session.refresh(user)
    assert (user.role, user.subscription_tier) == ("admin", "Standard")
    for action, change in (("user.role", {"from": "user", "to": "admin"}),
                           ("user.tier", {"from": "Free", "to": "Standard"}),
                           ("user.active", {"from": True, "to": True})):
        [event] = audit_events(client, headers, action)
        assert event["actor_id"] == admin.id and event["target_id"] == user.id and event["details"] == change


def test_patch_only_given_fields_and_deactivation_stops_the_user(client, admin, user, auth_headers, db_session):
    user_headers = auth_headers(user)
    response = client.patch(f"{USERS}/{user.id}", headers=auth_headers(admin), json={"is_active": False})
    assert response.status_code == 200 and response.get_json()["is_active"] is False
    db_session.refresh(user)
    assert (user.role, user.subscription_tier, user.is_active) == ("user", "Free", False)
    assert client.get("/api/users/me", headers=user_headers).status_code == 401
    assert audit_events(client, auth_headers(admin), "user.role") == []


@pytest.mark.parametrize("body,field", [({}, None), ({"role": "root"}, "role"),
                                        ({"subscription_tier": "Gold"}, "subscription_tier"),
                                        ({"is_active": "false"}, "is_active"), ({"username": "x"}, "username")])
def test_patch_bad_body_is_400(client, admin, user, auth_headers, body, field):
    response = client.patch(f"{USERS}/{user.id}", headers=auth_headers(admin), json=body)
    assert response.status_code == 400
    if field:
        assert field in response.get_json()["fields"]


def test_patch_own_account_is_refused_and_nothing_changes(client, admin, auth_headers, db_session):
    headers = auth_headers(admin)
    for body, field in (({"subscription_tier": "Free", "role": "user"}, "role"),
                        ({"subscription_tier": "Free", "is_active": False}, "is_active")):
        response = client.patch(f"{USERS}/{admin.id}", headers=headers, json=body)
        assert response.status_code == 400 and field in response.get_json()["fields"]
    db_session.refresh(admin)
    assert (admin.role, admin.subscription_tier, admin.is_active) == ("admin", "Enterprise", True)


def test_patch_keeps_the_last_active_admin(app, make_user):
    """PATCH goes through the POST endpoints' guard: B authenticated, A demotes B, then B's PATCH of A is 409."""
    from app.auth.identity import Caller
    from app.errors import ApiError
    from app.services import admin_users

    a, b = make_user("admin_a", role="admin"), make_user("admin_b", role="admin")
    b_as_authenticated = Caller(b.id, b.username, b.email, True, "admin", b.subscription_tier, b.created_at, 0)
    admin_users.update(a, b.id, {"role": "user"})
    for body, field in (({"role": "user"}, "role"), ({"is_active": False}, "is_active")):
        with pytest.raises(ApiError) as refused:
            admin_users.update(b_as_authenticated, a.id, body)
        assert refused.value.status == 409 and refused.value.fields == {field: ["The last active admin must stay."]}


def test_two_admins_patching_each_other_at_once_leave_one(app, make_user, auth_headers):
    """Over HTTP, at the same moment: one demotion wins, the other is 409 (or 403 once the loser is demoted)."""
    import threading

    from app.db.models import User
    from app.extensions import db

    db.session.execute(sa.update(User).where(User.role == "admin").values(role="user"))
    db.session.commit()
    a, b = make_user("adm_a", role="admin"), make_user("adm_b", role="admin")
    calls = [(auth_headers(a), b.id), (auth_headers(b), a.id)]
    statuses, start = [], threading.Barrier(2)

    def demote(headers, target):
        client = app.test_client()
        start.wait()
        statuses.append(client.patch(f"{USERS}/{target}", headers=headers, json={"role": "user"}).status_code)

    threads = [threading.Thread(target=demote, args=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) in ([200, 403], [200, 409]), statuses
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)
                             .where(User.role == "admin", User.is_active.is_(True))) == 1


def test_a_users_jobs_paginate_and_filter(client, admin, user, make_user, auth_headers):
    add_jobs(user, 3)
    add_jobs(user, 2, probe_type="dns", target="example.com", success=False)
    add_jobs(make_user("other"), 4)
    headers = auth_headers(admin)
    path = f"{USERS}/{user.id}/jobs"
    body = client.get(path, headers=headers, query_string={"limit": 2}).get_json()
    assert body["pagination"]["total"] == 5 and len(body["jobs"]) == 2
    assert body["pagination"]["next"].endswith(f"{path}?limit=2&offset=2")
    dns = client.get(path, headers=headers, query_string={"type": "dns", "limit": 1}).get_json()
    assert dns["pagination"]["total"] == 2 and dns["jobs"][0]["target"] == "example.com"
    assert "type=dns" in dns["pagination"]["next"]
    assert client.get(f"{USERS}/99999/jobs", headers=headers).status_code == 404
    assert client.get(path, headers=headers, query_string={"type": "ftp"}).status_code == 400


def test_a_users_keys_are_masked(client, admin, user, auth_headers):
    created = client.post("/api/apikeys", headers=auth_headers(user), json={"name": "ci"}).get_json()["api_key"]
    body = client.get(f"{USERS}/{user.id}/apikeys", headers=auth_headers(admin)).get_json()
    [key] = body["api_keys"]
    assert key["id"] == created["id"] and key["name"] == "ci"
    assert key["key"] != created["key"] and created["key"] not in str(body)
    assert client.get(f"{USERS}/99999/apikeys", headers=auth_headers(admin)).status_code == 404


def test_admin_revokes_any_key(client, admin, user, auth_headers):
    created = client.post("/api/apikeys", headers=auth_headers(user), json={}).get_json()["api_key"]
    key_headers = {"X-API-Key": created["key"]}
    assert client.get("/api/users/me", headers=key_headers).status_code == 200
    response = client.post(f"/api/admin/apikeys/{created['id']}/revoke", headers=auth_headers(admin))
    assert response.status_code == 200 and response.get_json()["api_key"]["is_active"] is False
    assert client.get("/api/users/me", headers=key_headers).status_code == 401
    [event] = [e for e in audit_events(client, auth_headers(admin), "apikey.update")
               if e["target_id"] == created["id"]]
    assert event["actor_id"] == admin.id and event["details"]["owner_id"] == user.id
    assert created["key"] not in str(event)
    listed = client.get("/api/apikeys", headers=auth_headers(user)).get_json()["api_keys"]
    assert [k["is_active"] for k in listed] == [False]


def test_admin_deletes_any_key(client, admin, user, auth_headers):
    created = client.post("/api/apikeys", headers=auth_headers(user), json={}).get_json()["api_key"]
    response = client.delete(f"/api/admin/apikeys/{created['id']}", headers=auth_headers(admin))
    assert response.status_code == 200
    assert client.get("/api/users/me", headers={"X-API-Key": created["key"]}).status_code == 401
    assert client.get("/api/apikeys", headers=auth_headers(user)).get_json()["api_keys"] == []
    [event] = audit_events(client, auth_headers(admin), "apikey.delete")
    assert event["actor_id"] == admin.id and event["target_id"] == created["id"]
    assert client.delete(f"/api/admin/apikeys/{created['id']}", headers=auth_headers(admin)).status_code == 404
    assert client.post("/api/admin/apikeys/99999/revoke", headers=auth_headers(admin)).status_code == 404


ADMIN_ONLY = [("get", f"{USERS}/{{id}}", None), ("patch", f"{USERS}/{{id}}", {"subscription_tier": "Standard"}),
              ("get", f"{USERS}/{{id}}/jobs", None), ("get", f"{USERS}/{{id}}/apikeys", None),
              ("post", "/api/admin/apikeys/{key}/revoke", None), ("delete", "/api/admin/apikeys/{key}", None)]


@pytest.mark.parametrize("method,path,body", ADMIN_ONLY)
def test_non_admin_gets_403_anonymous_401(client, user, auth_headers, db_session, method, path, body):
    key = client.post("/api/apikeys", headers=auth_headers(user), json={}).get_json()["api_key"]
    url = path.format(id=user.id, key=key["id"])
    assert getattr(client, method)(url, headers=auth_headers(user), json=body).status_code == 403
    assert getattr(client, method)(url, json=body).status_code == 401
    assert client.get("/api/users/me", headers={"X-API-Key": key["key"]}).status_code == 200
    db_session.refresh(user)
    assert user.subscription_tier == "Free"
