"""History filters (type, target, success, since/until, measurement_id), their 400s, links that keep them,
the (user_id, created_at) index under them, and parameters_object (SQLite and PostgreSQL).

Probes are real pings to 127.0.0.1 (allowed in the tests' PROBE_ALLOWED_NETWORKS)."""
import json
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from app.probes.results import ProbeResult
from app.services.probe_jobs import complete_job, reserve_job
from app.utils.clock import utcnow

HISTORY = "/api/probes/history"


@pytest.fixture
def app_overrides():
    return {"TIER_QUOTAS": {"Free": (None, None), "Standard": (None, None), "Enterprise": (None, None)}}


def add_job(user, probe_type="ping", target="127.0.0.1", success=True, created_at=None, parameters=None):
    from app.extensions import db

    job, _ = reserve_job(user, probe_type, target, parameters or {"count": 1})
    if created_at is not None:
        job.created_at = created_at
        db.session.commit()
    complete_job(job, ProbeResult(success, "ok" if success else "failed", {}))
    return job.id


def listed(client, headers, **query):
    response = client.get(HISTORY, headers=headers, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def ids(body):
    return [job["id"] for job in body["jobs"]]


def test_each_filter_alone_and_together(client, user, make_user, auth_headers):
    now = utcnow()
    old_ping = add_job(user, created_at=now - timedelta(days=3))
    failed_dns = add_job(user, "dns", "example.com", success=False, created_at=now - timedelta(days=2),
                         parameters={"record_type": "A"})
    ok_dns = add_job(user, "dns", "example.com", created_at=now - timedelta(days=1), parameters={"record_type": "MX"})
    new_ping = add_job(user, target="127.0.0.2")
    add_job(make_user("other"), "dns", "example.com")
    headers = auth_headers(user)
    assert ids(listed(client, headers)) == [new_ping, ok_dns, failed_dns, old_ping]
    assert ids(listed(client, headers, type="dns")) == [ok_dns, failed_dns]
    assert ids(listed(client, headers, target="127.0.0.1")) == [old_ping]
    assert ids(listed(client, headers, success="false")) == [failed_dns]
    assert ids(listed(client, headers, success="TRUE")) == [new_ping, ok_dns, old_ping]
    since = (now - timedelta(days=2, hours=1)).isoformat()
    until = (now - timedelta(hours=12)).isoformat()
    assert ids(listed(client, headers, since=since)) == [new_ping, ok_dns, failed_dns]
    assert ids(listed(client, headers, until=until)) == [ok_dns, failed_dns, old_ping]
    assert ids(listed(client, headers, since=since, until=until, type="dns", success="true")) == [ok_dns]
    body = listed(client, headers, type="dns", target="example.com")
    assert body["pagination"]["total"] == 2  # the user's own, not the other user's


def test_since_is_inclusive_until_exclusive_and_a_naive_time_is_utc(client, user, auth_headers):
    moment = utcnow().replace(microsecond=0) - timedelta(hours=1)
    job = add_job(user, created_at=moment)
    headers = auth_headers(user)
    naive = moment.replace(tzinfo=None).isoformat()
    assert ids(listed(client, headers, since=naive)) == [job]
    assert ids(listed(client, headers, until=naive)) == []
    assert ids(listed(client, headers, since=moment.isoformat(), until=(moment + timedelta(seconds=1)).isoformat())) \
        == [job]
    shifted = moment.astimezone().isoformat()  # the same instant in another offset
    assert ids(listed(client, headers, since=shifted)) == [job]


def test_measurement_id_lists_its_results(client, user, auth_headers):
    headers = auth_headers(user)
    add_job(user)
    created = client.post("/api/measurements", headers=headers,
                          json={"type": "ping", "target": "127.0.0.1", "options": {"count": 1}})
    assert created.status_code == 202, created.get_json()
    measurement_id = created.get_json()["id"]
    give_up = time.monotonic() + 30
    while client.get(f"/api/measurements/{measurement_id}", headers=headers).get_json()["status"] != "finished":
        assert time.monotonic() < give_up
        time.sleep(0.05)
    body = listed(client, headers, measurement_id=measurement_id)
    assert len(body["jobs"]) == 1 and body["jobs"][0]["measurement_id"] == measurement_id
    assert body["jobs"][0]["success"] is True and body["pagination"]["total"] == 1
    assert listed(client, headers, measurement_id="nonexistent")["jobs"] == []


def test_pagination_links_keep_the_filters(client, user, auth_headers):
    for _ in range(5):
        add_job(user, "dns", "example.com")
    add_job(user)
    headers = auth_headers(user)
    since = (utcnow() - timedelta(hours=1)).isoformat()
    first = listed(client, headers, type="dns", success="true", since=since, limit=2)
    assert first["pagination"]["total"] == 5 and len(first["jobs"]) == 2
    query = parse_qs(urlsplit(first["pagination"]["next"]).query)
    assert query["type"] == ["dns"] and query["success"] == ["true"] and query["offset"] == ["2"]
    seen = ids(first)
    link = first["pagination"]["next"]
    while link:
        page = client.get(link, headers=headers).get_json()
        seen += ids(page)
        assert page["pagination"]["previous"] is not None and "type=dns" in page["pagination"]["previous"]
        link = page["pagination"]["next"]
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize("query,field", [
    ({"type": "ftp"}, "type"), ({"success": "yes"}, "success"), ({"success": ""}, "success"),
    ({"since": "yesterday"}, "since"), ({"until": "2026-13-01"}, "until"),
    ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "until"),
    ({"target": ""}, "target"), ({"target": "x" * 256}, "target"), ({"measurement_id": "m" * 33}, "measurement_id"),
])
def test_bad_filters_are_400_naming_the_field(client, user, auth_headers, query, field):
    response = client.get(HISTORY, headers=auth_headers(user), query_string=query)
    assert response.status_code == 400
    body = response.get_json()
    assert field in body["fields"] and body["code"] == "validation_error"


def test_parameters_is_the_contracts_string_and_parameters_object_the_same(client, user, auth_headers):
    headers = auth_headers(user)
    response = client.post("/api/probes/ping", headers=headers, json={"host": "127.0.0.1", "count": 1})
    assert response.status_code == 200
    [job] = listed(client, headers)["jobs"]
    assert job["parameters"] == '{"count":1}' and job["parameters_object"] == {"count": 1}
    assert json.loads(job["parameters"]) == job["parameters_object"]
    detail = client.get(f"{HISTORY}/{job['id']}", headers=headers).get_json()
    assert detail["parameters_object"] == {"count": 1}


def test_the_user_created_at_index_serves_the_filtered_query(app, user):
    """The plan of a filtered page walks ix_probe_jobs_user_id_created_at (PostgreSQL told not to seq-scan)."""
    from app.extensions import db
    from app.services.history import page_query

    for _ in range(3):
        add_job(user)
    filters = {"type": "ping", "target": "127.0.0.1", "success": True, "since": utcnow() - timedelta(days=1),
               "until": utcnow() + timedelta(days=1), "measurement_id": "abc"}
    statement = page_query(user.id, filters, 10, 0)
    compiled = statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True})
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execute(sa.text("SET enable_seqscan = off"))
            plan = "\n".join(row[0] for row in conn.execute(sa.text(f"EXPLAIN {compiled}")))
        else:
            plan = "\n".join(str(row[-1]) for row in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "ix_probe_jobs_user_id_created_at" in plan, plan
