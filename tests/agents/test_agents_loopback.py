"""Agents over a real broker on loopback: ./start.sh agent and ./start.sh worker as real Celery
processes, the API as the test app with CELERY_BROKER_URL set; probes to 127.0.0.1. SQLite and
PostgreSQL (the central worker writes the rows)."""
import os
import signal
import time

import pytest
import requests

from tests.agents.conftest import OFFLINE_SECONDS, SWEEP_SECONDS, create, headers_for, nice_of, wait_finished
from tests.support.servers import wait_for_port

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("filters, limit, expected", [
    ([{"name": "beta"}], 1, {"beta"}),
    ([{"country": "US"}], 1, {"beta"}),
    ([{"country": "de"}], 1, {"alpha"}),
    ([{"tag": "eu"}], 1, {"alpha"}),
    ([{"tag": "x"}], 2, {"alpha", "beta"}),
    ([{"city": "Ashburn"}], 1, {"beta"}),
    ([{"asn": 64500}], 1, {"alpha"}),
    ([{"name": "alpha"}, {"name": "beta"}], 2, {"alpha", "beta"}),
])
def test_location_filters_choose_the_right_agents(loop_api, filters, limit, expected):
    app, client = loop_api
    headers = headers_for(app)
    created = create(client, headers, type="ping", target="127.0.0.1", options={"count": 1},
                     locations=filters, limit=limit)
    body = wait_finished(client, headers, created["id"])
    assert {r["location"]["name"] for r in body["results"]} == expected
    assert all(r["status"] == "finished" and r["success"] for r in body["results"]), body
    assert all(r["started_at"] and r["completed_at"] >= r["started_at"] for r in body["results"]), body


def test_limit_spreads_over_the_agents_a_filter_matches(loop_api):
    """`limit` 2 over filters both agents match: one result from each, never two from one."""
    app, client = loop_api
    headers = headers_for(app)
    online = client.get("/api/locations", headers=headers).get_json()["locations"]
    assert {loc["name"] for loc in online} >= {"alpha", "beta"}
    created = create(client, headers, type="ping", target="127.0.0.1", options={"count": 1},
                     locations=[{"tag": "x"}], limit=2)
    names = [r["location"]["name"] for r in wait_finished(client, headers, created["id"])["results"]]
    assert sorted(names) == ["alpha", "beta"]


def test_the_central_worker_serves_the_probes_it_stored_as_metrics(loop_stack, loop_api):
    """With agents, results are stored by the central worker: its own /metrics counts them by
    type, outcome and location."""
    from prometheus_client.parser import text_string_to_metric_families

    app, client = loop_api
    headers = headers_for(app)
    url = f"http://127.0.0.1:{loop_stack.worker_metrics_port}/metrics"

    def stored(location):
        samples = [s for family in text_string_to_metric_families(requests.get(url, timeout=5).text)
                   for s in family.samples if s.name == "probeops_probes_total"]
        return sum(s.value for s in samples if s.labels == {"type": "ping", "outcome": "completed",
                                                             "location": location})

    wait_for_port(loop_stack.worker_metrics_port, seconds=30)  # the worker may still be starting
    before = stored("beta")
    created = create(client, headers, type="ping", target="127.0.0.1", options={"count": 1},
                     locations=[{"name": "beta"}])
    wait_finished(client, headers, created["id"])
    assert stored("beta") == before + 1


def test_a_filter_no_online_agent_matches_is_400(loop_api):
    app, client = loop_api
    response = client.post("/api/measurements", headers=headers_for(app),
                           json={"type": "ping", "target": "127.0.0.1", "locations": [{"country": "JP"}]})
    assert response.status_code == 400 and response.get_json()["code"] == "no_matching_location"


def test_the_synchronous_endpoint_runs_at_an_agent(loop_api):
    app, client = loop_api
    response = client.post("/api/probes/ping", headers=headers_for(app), json={"host": "127.0.0.1", "count": 2})
    assert response.status_code == 200, response.get_json()
    assert "127.0.0.1" in response.get_json()["result"]


def test_an_agent_killed_mid_measurement_ends_as_timeout_and_the_measurement_finishes(loop_stack, loop_api):
    app, client = loop_api
    doomed = loop_stack.start_agent("doomed", country="FR", tags="doomed")
    loop_stack.wait_online(app, ["doomed"])
    headers = headers_for(app)
    created = create(client, headers, type="ping", target="127.0.0.1", options={"count": 10},
                     locations=[{"name": "doomed"}, {"name": "beta"}], limit=2)
    from app.db.models import ProbeJob
    from app.extensions import db

    give_up = time.monotonic() + 20
    while True:  # wait until the doomed agent is running it (queued -> running), then kill -9
        db.session.expire_all()
        job = db.session.query(ProbeJob).filter_by(measurement_id=created["id"], location="doomed").one()
        if job.status == "running":
            break
        assert time.monotonic() < give_up, job.status
        time.sleep(0.05)
    doomed.kill(signal.SIGKILL)
    body = wait_finished(client, headers, created["id"], seconds=60)
    by_name = {r["location"]["name"]: r for r in body["results"]}
    assert by_name["doomed"]["status"] == "timeout" and by_name["doomed"]["success"] is False
    assert by_name["beta"]["status"] == "finished" and by_name["beta"]["success"]
    db.session.expire_all()
    job = db.session.get(ProbeJob, job.id)
    # Ended by the central worker's sweep after the deadline, within the sweep period (and slack).
    assert job.completed_at >= job.deadline_at
    assert (job.completed_at - job.deadline_at).total_seconds() <= SWEEP_SECONDS + 5


def test_an_agent_silent_for_its_offline_seconds_drops_out_of_locations(loop_stack, loop_api):
    app, client = loop_api
    quiet = loop_stack.start_agent("quiet", country="NL", tags="quiet")
    loop_stack.wait_online(app, ["quiet"])
    headers = headers_for(app)
    names = {loc["name"] for loc in client.get("/api/locations", headers=headers).get_json()["locations"]}
    assert "quiet" in names
    os.killpg(quiet.pid, signal.SIGSTOP)  # silent, not gone: no heartbeat, no goodbye
    try:
        give_up = time.monotonic() + OFFLINE_SECONDS + 10
        while "quiet" in names:
            assert time.monotonic() < give_up
            time.sleep(0.2)
            names = {loc["name"] for loc in client.get("/api/locations", headers=headers).get_json()["locations"]}
        response = client.post("/api/measurements", headers=headers,
                               json={"type": "ping", "target": "127.0.0.1", "locations": [{"name": "quiet"}]})
        assert response.status_code == 400 and response.get_json()["code"] == "no_matching_location"
    finally:
        os.killpg(quiet.pid, signal.SIGCONT)
        quiet.stop()


def test_redis_stopped_is_503_within_a_second_and_works_again_when_it_is_back(loop_stack, loop_broker, loop_api):
    app, client = loop_api
    headers = headers_for(app)
    body = {"type": "ping", "target": "127.0.0.1", "options": {"count": 1}, "locations": [{"name": "alpha"}]}
    loop_broker.halt()
    try:
        time.sleep(1.2)  # past the dispatcher's 1 s cache of the agents' list
        for _ in range(3):
            started = time.monotonic()
            response = client.post("/api/measurements", headers=headers, json=body)
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.get_json()
            assert response.get_json()["code"] == "service_unavailable"
            assert elapsed < 1.0, elapsed
        # nothing was started, so nothing is left: no measurement, no job, no quota used
        listed = client.get("/api/measurements", headers=headers).get_json()
        assert listed["pagination"]["total"] == 0, listed
        assert client.get("/api/probes/history", headers=headers).get_json()["pagination"]["total"] == 0
    finally:
        loop_broker.start()  # same port, empty: the agents announce and declare their queues again
    loop_stack.wait_online(app, ["alpha"], seconds=60)
    give_up = time.monotonic() + 60
    while True:  # the same app, no restart: accepted, run by the agent, stored by the central worker
        response = client.post("/api/measurements", headers=headers, json=body)
        if response.status_code == 202:
            break
        assert response.status_code in (400, 503) and time.monotonic() < give_up, response.get_json()
        time.sleep(0.5)
    result = wait_finished(client, headers, response.get_json()["id"], seconds=60)["results"][0]
    assert result["status"] == "finished" and result["success"], result


AGENT_ACL = ("on", ">acl-agent-Long-Random-Password-1", "resetchannels", "~probeops.loc.acl-1*",
             "~probeops.central*", "~probeops:agent:acl-1", "~_kombu.binding.*", "~_kombu.binding_permanent.*",
             "-@all", "+@connection", "+@read", "+@write", "+@list", "+@sortedset", "+@hash",
             "+@set", "+@string", "+@keyspace", "+@transaction", "+@scripting", "-@dangerous")


def test_an_agent_works_under_its_own_redis_acl_user(loop_stack, loop_broker, loop_api):
    """The ACL of deployment.md section 10: the agent announces itself, takes its probes, reports,
    without the broker-wide `unacked` keys (no ack emulation) or anyone else's."""
    import redis

    admin = redis.Redis(port=loop_broker.port)
    admin.execute_command("ACL", "SETUSER", "agent-acl-1", *AGENT_ACL)
    restricted = f"redis://agent-acl-1:acl-agent-Long-Random-Password-1@127.0.0.1:{loop_broker.port}/0"
    with pytest.raises(redis.exceptions.NoPermissionError):  # it cannot touch anyone else's keys
        redis.Redis.from_url(restricted).get("probeops:agent:alpha")
    app, client = loop_api
    agent = loop_stack.start_agent("acl-1", broker_url=restricted, country="SE", tags="acl")
    try:
        loop_stack.wait_online(app, ["acl-1"])
        headers = headers_for(app)
        created = create(client, headers, type="ping", target="127.0.0.1", options={"count": 1},
                         locations=[{"name": "acl-1"}])
        result = wait_finished(client, headers, created["id"])["results"][0]
        assert result["status"] == "finished" and result["success"], result
        assert "NOPERM" not in agent.output() and "NoPermissionError" not in agent.output()
    finally:
        agent.stop()


def test_default_location_serves_the_sync_endpoints_and_measurements_without_locations(loop_stack):
    from app.db.models import ProbeJob
    from app.extensions import db

    app = loop_stack.app(DEFAULT_LOCATION="beta")
    loop_stack.wait_online(app, ["alpha", "beta"])
    with app.app_context():
        client, headers = app.test_client(), headers_for(app)
        before = db.session.query(db.func.max(ProbeJob.id)).scalar() or 0
        for _ in range(3):
            response = client.post("/api/probes/ping", headers=headers, json={"host": "127.0.0.1", "count": 1})
            assert response.status_code == 200, response.get_json()
            created = create(client, headers, type="ping", target="127.0.0.1", options={"count": 1})
            assert [r["location"]["name"] for r in wait_finished(client, headers, created["id"])["results"]] == ["beta"]
        sync_jobs = db.session.query(ProbeJob).filter(ProbeJob.measurement_id.is_(None), ProbeJob.id > before).all()
        assert sync_jobs and {job.location for job in sync_jobs} == {"beta"}
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


def nice_when_started(pid, want, seconds=15):
    """nice_of(pid) once it is ``want`` or ``seconds`` have passed: a role lowers its priority as
    it starts (the central worker after building its app), a moment after the process exists."""
    give_up = time.monotonic() + seconds
    while (seen := nice_of(pid)) != want and time.monotonic() < give_up:
        time.sleep(0.1)
    return seen


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no kernel autogroup here")
def test_the_central_worker_yields_the_cpu_to_the_api_and_an_agent_runs_at_its_agent_nice(loop_stack, loop_api):
    """WORKER_NICE (10 by default) and AGENT_NICE (0 by default): each in its own session here, so its
    session's autogroup too (with autogroup, a nice value alone orders nothing across sessions)."""
    assert nice_when_started(loop_stack.worker.pid, (10, 10)) == (10, 10)
    assert nice_when_started(loop_stack.agents["alpha"].pid, (0, 0)) == (0, 0)
    app, client = loop_api
    agent = loop_stack.start_agent("niced", country="SE", tags="niced", nice=7)
    try:
        loop_stack.wait_online(app, ["niced"])
        assert nice_when_started(agent.pid, (7, 7)) == (7, 7)
        headers = headers_for(app)
        created = create(client, headers, type="ping", target="127.0.0.1", options={"count": 1},
                         locations=[{"name": "niced"}])
        result = wait_finished(client, headers, created["id"])["results"][0]
        assert result["status"] == "finished" and result["success"], result
    finally:
        agent.stop()


def test_an_agent_with_the_idle_cpu_policy_runs_every_thread_under_sched_idle(loop_stack, loop_api):
    """AGENT_CPU_POLICY=idle: the agent and every thread it started (Celery's pool, its heartbeat
    and notices) run under SCHED_IDLE, and it still serves measurements."""
    app, client = loop_api
    agent = loop_stack.start_agent("idler", country="SE", tags="idler", cpu_policy="idle")
    try:
        loop_stack.wait_online(app, ["idler"])
        headers = headers_for(app)
        created = create(client, headers, type="ping", target="127.0.0.1", options={"count": 1},
                         locations=[{"name": "idler"}])
        result = wait_finished(client, headers, created["id"])["results"][0]
        assert result["status"] == "finished" and result["success"], result
        threads = [int(tid) for tid in os.listdir(f"/proc/{agent.pid}/task")]
        assert len(threads) >= 3  # the main thread, the heartbeat, the pool's (started after the policy was set)
        assert {os.sched_getscheduler(tid) for tid in threads} == {os.SCHED_IDLE}
        assert os.sched_getscheduler(loop_stack.agents["alpha"].pid) == os.SCHED_OTHER
    finally:
        agent.stop()
