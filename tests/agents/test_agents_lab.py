"""Agents as vantage points, in the probe lab: real Redis, real Celery processes (./start.sh agent
and ./start.sh worker), real probes inside 198.18.0.0/15. Root only (network namespaces)."""
from pathlib import Path

import pytest

from tests.agents.conftest import create, headers_for, wait_finished

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def path_of(result):
    return [hop["probes"][0]["address"] for hop in result["data"]["hops"]]


def test_the_same_traceroute_takes_a_different_path_from_each_location(api, lab_routes):
    app, client = api
    headers = headers_for(app)
    created = create(client, headers, type="traceroute", target=lab_routes.target,
                     options={"max_hops": 8}, locations=[{"name": "svc"}, {"name": "late"}, {"name": "home"}],
                     limit=3)
    body = wait_finished(client, headers, created["id"])
    by_name = {r["location"]["name"]: r for r in body["results"]}
    assert set(by_name) == {"svc", "late", "home"}
    for result in by_name.values():
        assert result["status"] == "finished" and result["success"], result
    target = lab_routes.target
    assert path_of(by_name["svc"]) == ["198.18.10.1", "198.18.1.2", "198.18.2.2", target]
    assert path_of(by_name["late"]) == ["198.18.4.1", target]
    assert path_of(by_name["home"]) == [*lab_routes.hops, target]
    svc = by_name["svc"]["location"]
    assert (svc["country"], svc["city"], svc["asn"], svc["tags"]) == ("DE", "Frankfurt", 64500, ["eu", "lab"])
    assert svc["version"] and svc["last_seen"]


def test_agents_run_without_any_database_setting(stack, api):
    """The agents were started with a scrubbed environment and served the test above: no DB at all."""
    for name, agent in stack.agents.items():
        if agent.proc.poll() is not None:
            continue
        environ = Path(f"/proc/{agent.pid}/environ").read_bytes().split(b"\0")
        keys = {item.split(b"=", 1)[0].decode() for item in environ if item}
        assert not {k for k in keys if "DATABASE" in k or "SQLALCHEMY" in k or "POSTGRES" in k}, (name, keys)
    app, client = api
    headers = headers_for(app)
    body = wait_finished(client, headers, create(client, headers, type="ping", target="198.18.3.10",
                                                 options={"count": 1}, locations=[{"name": "late"}])["id"])
    assert body["results"][0]["status"] == "finished" and body["results"][0]["success"]


def test_an_agent_refuses_what_its_own_policy_refuses(stack, api):
    """The API lets the lab's names through (PROBE_ALLOWED_DOMAINS=test); the agent resolves
    private.probeops.test with the lab DNS to 10.1.2.3, which its own policy refuses: a failed
    result with code target_refused, and no quota used."""
    app, client = api
    headers = headers_for(app)
    body = wait_finished(client, headers, create(client, headers, type="ping", target="private.probeops.test",
                                                 options={"count": 1}, locations=[{"name": "svc"}])["id"])
    result = body["results"][0]
    assert result["status"] == "failed" and not result["success"], result
    assert "10.1.2.3" in result["result"] or "not allowed" in result["result"], result
    from app.db.models import ProbeJob
    from app.extensions import db

    assert db.session.get(ProbeJob, result["job_id"]).error_code == "target_refused"
