"""Tier quotas counted from ProbeJob rows, per-user concurrency, and their headers."""
import threading
from datetime import timedelta

import pytest

from app.db.models import ProbeJob
from app.probes.results import ProbeResult
from app.services.probe_jobs import complete_job, reserve_job
from app.utils.clock import utcnow
from tests.conftest import count_rows

LOOPBACK_PING = {"host": "127.0.0.1", "count": 1}


@pytest.fixture
def app_overrides():
    return {"TIER_QUOTAS": {"Free": (3, 5), "Standard": (1000, 20000), "Enterprise": (None, None)}}


def ping(client, headers):
    return client.post("/api/probes/ping", headers=headers, json=LOOPBACK_PING)


def add_jobs(user, n, created_at=None):
    from app.extensions import db

    for _ in range(n):
        job, _ = reserve_job(user, "ping", "127.0.0.1", {"count": 1})
        if created_at is not None:
            job.created_at = created_at
            db.session.commit()
        complete_job(job, ProbeResult(True, "ok", {}))


def test_daily_quota_counts_down_then_429(client, user, auth_headers):
    headers = auth_headers(user)
    remaining = []
    for _ in range(3):
        response = ping(client, headers)
        assert response.status_code == 200
        remaining.append(response.headers["X-RateLimit-Remaining-Day"])
        assert response.headers["X-RateLimit-Limit-Day"] == "3"
        assert response.headers["X-RateLimit-Limit-Month"] == "5"
    assert remaining == ["2", "1", "0"]
    response = ping(client, headers)
    assert response.status_code == 429
    body = response.get_json()
    assert body["error"] == "Too Many Requests" and "Daily probe quota of 3" in body["message"]
    assert "resets at" in body["message"]
    retry = int(response.headers["Retry-After"])
    assert 0 < retry <= 86400
    reset = int(response.headers["X-RateLimit-Reset"])
    assert reset % 86400 == 0 and reset > utcnow().timestamp()
    assert count_rows("probe_jobs") == 3
    # other requests still work and carry the headers
    me = client.get("/api/users/me", headers=headers)
    assert me.status_code == 200 and me.headers["X-RateLimit-Remaining-Day"] == "0"


def test_monthly_quota_counts_earlier_days(client, user, auth_headers):
    now = utcnow()
    if now.day == 1:
        pytest.skip("on the 1st every earlier day is last month")
    add_jobs(user, 5, created_at=now - timedelta(days=1))
    response = ping(client, auth_headers(user))
    assert response.status_code == 429
    assert "Monthly probe quota of 5" in response.get_json()["message"]
    assert response.headers["X-RateLimit-Remaining-Month"] == "0"


def test_jobs_from_last_month_do_not_count(client, user, auth_headers):
    add_jobs(user, 5, created_at=utcnow() - timedelta(days=40))
    assert ping(client, auth_headers(user)).status_code == 200


def test_enterprise_is_unlimited_and_has_no_quota_headers(client, make_user, auth_headers):
    boss = make_user("boss", tier="Enterprise")
    for _ in range(4):
        response = ping(client, auth_headers(boss))
        assert response.status_code == 200
    assert "X-RateLimit-Limit-Day" not in response.headers


def test_tier_change_applies_at_once(client, user, admin, auth_headers):
    add_jobs(user, 3)
    assert ping(client, auth_headers(user)).status_code == 429
    client.post(f"/api/admin/users/{user.id}/tier", headers=auth_headers(admin), json={"subscription_tier": "Standard"})
    response = ping(client, auth_headers(user))
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit-Day"] == "1000"


@pytest.mark.parametrize("app_overrides", [{
    "TIER_QUOTAS": {"Free": (3, 5), "Standard": (1000, 20000), "Enterprise": (None, None)},
    "TIER_CONCURRENT_PROBES": {"Free": 100, "Standard": 100, "Enterprise": 100},
}])
def test_parallel_probes_one_below_quota_run_exactly_once(app, client, user, auth_headers):
    add_jobs(user, 2)
    headers = auth_headers(user)
    codes = []
    barrier = threading.Barrier(20)

    def worker():
        barrier.wait()
        codes.append(ping(app.test_client(), headers).status_code)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(codes) == [200] + [429] * 19
    assert count_rows("probe_jobs") == 3


@pytest.mark.parametrize("app_overrides", [{"TIER_CONCURRENT_PROBES": {"Free": 2, "Standard": 5, "Enterprise": 20},
                                            "PING_INTERVAL": 0.5}])
def test_concurrent_probe_cap_per_user(app, user, auth_headers):
    headers = auth_headers(user)
    results = []
    barrier = threading.Barrier(3)

    def worker():
        barrier.wait()
        response = app.test_client().post("/api/probes/ping", headers=headers, json={"host": "127.0.0.1", "count": 3})
        results.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    codes = sorted(code for code, _ in results)
    assert codes == [200, 200, 429]
    refused = next(body for code, body in results if code == 429)
    assert "running" in refused["message"]


def test_mark_stale_jobs_ends_only_jobs_past_their_deadline(app, user, db_session):
    overdue, _ = reserve_job(user, "ping", "127.0.0.1", {"count": 1})
    overdue.deadline_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    in_flight, _ = reserve_job(user, "ping", "127.0.0.1", {"count": 1})  # another live instance's probe
    result = app.test_cli_runner().invoke(args=["mark-stale-jobs"])
    assert "1 stale" in result.output
    db_session.expire_all()
    ended, running = db_session.get(ProbeJob, overdue.id), db_session.get(ProbeJob, in_flight.id)
    assert (ended.status, ended.success) == ("timeout", False) and ended.completed_at is not None
    assert ended.result == "The probe did not finish within its deadline"
    assert running.status == "queued" and running.completed_at is None


def test_overdue_running_rows_do_not_block_the_concurrency_cap(app, client, user, auth_headers, db_session):
    for _ in range(2):
        job, _ = reserve_job(user, "ping", "127.0.0.1", {"count": 1})
        job.deadline_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    assert ping(client, auth_headers(user)).status_code == 200


def test_running_rows_within_their_deadline_count_however_old(app, client, user, auth_headers, db_session):
    # A long probe started long ago but not yet due still holds its slot (the old 300 s cut-off did not).
    for _ in range(2):
        job, _ = reserve_job(user, "traceroute", "127.0.0.1", {"max_hops": 30})
        job.created_at = utcnow() - timedelta(hours=1)
    db_session.commit()
    response = ping(client, auth_headers(user))
    assert response.status_code == 429 and response.get_json()["code"] == "concurrency_limit"


@pytest.mark.parametrize("app_overrides", [{"PING_INTERVAL": 0.5, "PING_TIMEOUT": 2.0, "DNS_TIMEOUT": 3.0,
                                            "TRACEROUTE_TOTAL_TIMEOUT": 40.0, "WHOIS_TIMEOUT": 10.0,
                                            "PROBE_DEADLINE_MARGIN_SECONDS": 7.0}])
def test_each_job_gets_its_probes_bound_plus_the_margin_as_deadline(app, user, db_session):
    from app.services.job_deadlines import probe_bound_seconds

    assert probe_bound_seconds("ping", {"count": 6}, app.config) == 6 * 0.5 + 2.0
    assert probe_bound_seconds("traceroute", {"max_hops": 30}, app.config) == 40.0
    assert probe_bound_seconds("dns", {"record_type": "A"}, app.config) == 2 * 3.0  # UDP then TCP
    assert probe_bound_seconds("whois", {}, app.config) >= 10.0
    job, _ = reserve_job(user, "ping", "127.0.0.1", {"count": 6})
    db_session.expire_all()
    stored = db_session.get(ProbeJob, job.id)
    assert (stored.deadline_at - stored.created_at).total_seconds() == pytest.approx(5.0 + 7.0, abs=0.001)


def test_the_sweep_ends_overdue_jobs_and_leaves_the_others(app, make_user, db_session):
    from app.services.job_store import end_overdue_jobs

    user = make_user("sweepme", tier="Enterprise")

    overdue, _ = reserve_job(user, "ping", "127.0.0.1", {"count": 1})
    in_flight, _ = reserve_job(user, "ping", "127.0.0.1", {"count": 1})
    finished, _ = reserve_job(user, "ping", "127.0.0.1", {"count": 1})
    complete_job(finished, ProbeResult(True, "ok", {}))
    for job in (overdue, finished):
        job.deadline_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    assert end_overdue_jobs(utcnow()) == 1
    assert end_overdue_jobs(utcnow()) == 0
    db_session.expire_all()
    assert db_session.get(ProbeJob, overdue.id).status == "timeout"
    assert db_session.get(ProbeJob, in_flight.id).status == "queued"
    assert db_session.get(ProbeJob, finished.id).status == "completed"


@pytest.mark.parametrize("app_overrides", [{"JOB_SWEEP_SECONDS": 0.2}])
def test_a_running_server_sweeps_by_itself(app, client, user, auth_headers, db_session):
    import time

    stuck, _ = reserve_job(user, "ping", "127.0.0.1", {"count": 1})
    stuck.deadline_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    assert ping(client, auth_headers(user)).status_code == 200  # the first probe starts the sweep
    for _ in range(50):
        db_session.expire_all()
        if db_session.get(ProbeJob, stuck.id).status != "queued":
            break
        time.sleep(0.1)
    assert db_session.get(ProbeJob, stuck.id).status == "timeout"


def test_history_pages_newest_first_and_only_own_jobs(client, user, make_user, auth_headers, db_session):
    other = make_user("mallory", tier="Enterprise")
    add_jobs(other, 2)
    user.subscription_tier = "Enterprise"
    db_session.commit()
    add_jobs(user, 25)
    headers = auth_headers(user)
    first = client.get("/api/probes/history?limit=10", headers=headers).get_json()
    ids = [job["id"] for job in first["jobs"]]
    assert len(ids) == 10 and ids == sorted(ids, reverse=True)
    own = {j.id for j in db_session.query(ProbeJob).filter_by(user_id=user.id)}
    assert set(ids) <= own
    assert first["pagination"]["total"] == 25 and first["pagination"]["previous"] is None
    assert first["pagination"]["next"].endswith("/api/probes/history?limit=10&offset=10")
    assert set(first["jobs"][0]) == {"id", "probe_type", "target", "parameters", "parameters_object", "success",
                                     "status", "created_at", "started_at", "location", "measurement_id"}
    last = client.get("/api/probes/history?limit=10&offset=20", headers=headers).get_json()
    assert len(last["jobs"]) == 5 and last["pagination"]["next"] is None
    assert last["pagination"]["previous"].endswith("offset=10")
    mallorys = db_session.query(ProbeJob).filter_by(user_id=other.id).first()
    assert client.get(f"/api/probes/history/{mallorys.id}", headers=headers).status_code == 404
    assert client.get("/api/probes/history/99999", headers=headers).status_code == 404


def test_history_works_with_an_api_key(client, user, auth_headers):
    key = client.post("/api/apikeys", headers=auth_headers(user), json={}).get_json()["api_key"]["key"]
    add_jobs(user, 1)
    body = client.get("/api/probes/history", headers={"X-API-Key": key}).get_json()
    assert body["pagination"]["total"] == 1 and body["jobs"][0]["probe_type"] == "ping"


@pytest.mark.parametrize("app_overrides", [{"PROBE_MAX_CONCURRENT_PER_WORKER": 1, "PING_INTERVAL": 0.5,
                                            "TIER_CONCURRENT_PROBES": {"Free": 5, "Standard": 5, "Enterprise": 5}}])
def test_worker_probe_cap_answers_503(app, user, make_user, auth_headers):
    results = []
    barrier = threading.Barrier(2)
    users = [user, make_user("bob")]

    def worker(who):
        barrier.wait()
        response = app.test_client().post("/api/probes/ping", headers=auth_headers(who),
                                          json={"host": "127.0.0.1", "count": 3})
        results.append((response.status_code, response.headers.get("Retry-After")))

    threads = [threading.Thread(target=worker, args=(who,)) for who in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [(200, None), (503, "5")]
    assert count_rows("probe_jobs") == 1


def test_nul_characters_from_a_remote_server_are_stored_not_a_stuck_job(app, user, db_session):
    job, _ = reserve_job(user, "whois", "example.com", {})
    complete_job(job, ProbeResult(True, "Registrar: Evil\x00Corp", {"registrar": "Evil\x00Corp", "list": ["a\x00"]}))
    db_session.expire_all()
    stored = db_session.get(ProbeJob, job.id)
    assert (stored.status, stored.success) == ("completed", True)
    assert stored.result == "Registrar: Evil\ufffdCorp" and stored.data["registrar"] == "Evil\ufffdCorp"


def test_a_late_result_replaces_the_sweeps_overdue_mark(app, user, db_session):
    # Under load a completion write can queue past the deadline; the probe did finish, so its
    # real outcome wins over "did not finish within its deadline".
    from app.services.job_store import end_overdue_jobs

    job, _ = reserve_job(user, "ping", "127.0.0.1", {"count": 1})
    job.deadline_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    assert end_overdue_jobs(utcnow()) == 1
    complete_job(job, ProbeResult(True, "1 packets transmitted, 1 received", {"stats": {"received": 1}}))
    db_session.expire_all()
    stored = db_session.get(ProbeJob, job.id)
    assert (stored.status, stored.success, stored.result) == ("completed", True, "1 packets transmitted, 1 received")
