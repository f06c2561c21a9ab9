"""The four probe endpoints end to end, against the network-namespace lab."""
import json

import pytest

from app.db.models import ProbeJob
from tests.conftest import count_rows

pytestmark = pytest.mark.lab


@pytest.fixture
def app_overrides(lab_routes):
    lab = lab_routes
    return {"DNS_NAMESERVERS": [lab.dns], "WHOIS_ROOT_SERVER": lab.whois_root,
            "PROBE_ALLOWED_DOMAINS": lab.allowed_domains,
            "RDAP_BOOTSTRAP_URL": lab.rdap_bootstrap, "TRACEROUTE_HOP_TIMEOUT": 1.0,
            "TRACEROUTE_TOTAL_TIMEOUT": 20.0, "WHOIS_TIMEOUT": 5.0}


def probe(client, headers, kind, **body):
    return client.post(f"/api/probes/{kind}", headers=headers, json=body)


def test_ping_by_name_with_an_api_key(client, user, auth_headers, lab, db_session):
    key = client.post("/api/apikeys", headers=auth_headers(user), json={}).get_json()["api_key"]["key"]
    response = probe(client, {"X-API-Key": key}, "ping", host=f"target.{lab.zone}", count=3)
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True and body["probe_type"] == "ping" and body["target"] == f"target.{lab.zone}"
    assert f"({lab.target})" in body["result"]
    assert "3 packets transmitted, 3 received, 0% packet loss" in body["result"]
    assert body["data"]["stats"]["received"] == 3 and len(body["data"]["packets"]) == 3
    assert body["timestamp"].endswith("+00:00")
    job = db_session.get(ProbeJob, body["job_id"])
    assert (job.user_id, job.probe_type, job.status, job.success) == (user.id, "ping", "completed", True)
    assert json.loads(job.parameters) == {"count": 3} and job.address == lab.target
    assert job.result == body["result"] and job.data["stats"]["transmitted"] == 3
    assert response.headers["X-RateLimit-Remaining-Day"] == "99"


def test_unreachable_host_is_a_failed_job_not_an_error(client, user, auth_headers, lab, db_session):
    response = probe(client, auth_headers(user), "ping", host=lab.silent, count=1)
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is False and "100% packet loss" in body["result"]
    job = db_session.get(ProbeJob, body["job_id"])
    assert (job.status, job.success) == ("failed", False)


def test_unknown_name_is_a_failed_job(client, user, auth_headers, lab):
    response = probe(client, auth_headers(user), "ping", host=f"nosuchhost.{lab.zone}", count=1)
    assert response.status_code == 200
    assert response.get_json()["success"] is False
    assert count_rows("probe_jobs") == 1


@pytest.mark.parametrize("host", ["127.0.0.2", "127.1", "2130706433", "localhost", "private.probeops.test",
                                  "169.254.169.254", "::ffff:127.0.0.2", "printer.local"])
@pytest.mark.parametrize("kind", ["ping", "traceroute"])
def test_special_purpose_targets_are_refused_without_a_job(client, user, auth_headers, lab, host, kind):
    response = probe(client, auth_headers(user), kind, host=host)
    assert response.status_code in (400, 403), response.get_json()
    assert "host" in response.get_json()["message"]
    assert count_rows("probe_jobs") == 0


def test_refusals_are_403(client, user, auth_headers, lab):
    assert probe(client, auth_headers(user), "ping", host="127.0.0.2").status_code == 403
    assert probe(client, auth_headers(user), "ping", host=f"private.{lab.zone}").status_code == 403
    assert probe(client, auth_headers(user), "dns", domain="x.test", nameserver="127.0.0.2").status_code == 403


def test_traceroute_finds_the_hops(client, user, auth_headers, lab):
    response = probe(client, auth_headers(user), "traceroute", host=lab.target, max_hops=8)
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    hops = body["data"]["hops"]
    seen = [next(p["address"] for p in hop["probes"] if p.get("address")) for hop in hops]
    assert seen == [*lab.hops, lab.target]
    assert body["data"]["reached"] is True
    assert lab.hops[0] in body["result"]


def test_dns_lookup_with_nameserver(client, user, auth_headers, lab):
    response = probe(client, auth_headers(user), "dns", domain=f"www.{lab.zone}", record_type="aaaa",
                     nameserver=lab.dns)
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert [a["value"] for a in body["data"]["answers"]] == [lab.target6]
    assert "ANSWER SECTION" in body["result"]


def test_dns_uses_configured_resolvers_and_reports_nxdomain(client, user, auth_headers, lab, db_session):
    response = probe(client, auth_headers(user), "dns", domain=f"missing.{lab.zone}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is False and "NXDOMAIN" in body["result"]
    job = db_session.get(ProbeJob, body["job_id"])
    assert json.loads(job.parameters) == {"record_type": "A"}


def test_whois_follows_referrals(client, user, auth_headers, lab):
    response = probe(client, auth_headers(user), "whois", domain="example.test")
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert body["data"]["registrar"]


def test_history_returns_structured_data(client, user, auth_headers, lab):
    headers = auth_headers(user)
    job_id = probe(client, headers, "ping", host=lab.target, count=2).get_json()["job_id"]
    listed = client.get("/api/probes/history", headers=headers).get_json()["jobs"]
    assert listed[0]["id"] == job_id and listed[0]["parameters"] == '{"count":2}'
    detail = client.get(f"/api/probes/history/{job_id}", headers=headers).get_json()
    assert detail["data"]["stats"]["received"] == 2 and detail["completed_at"] and detail["result"]


def test_engine_crash_is_a_500_and_a_failed_job(client, user, auth_headers, lab, db_session, monkeypatch):
    import app.probes.ping as ping_module

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ping_module, "ping", broken)
    response = probe(client, auth_headers(user), "ping", host=lab.target, count=1)
    assert response.status_code == 500 and "boom" not in response.get_data(as_text=True)
    job = db_session.query(ProbeJob).one()
    assert (job.status, job.success) == ("failed", False)


def test_unreachable_resolver_is_named_in_text_and_data(client, user, auth_headers, lab, app):
    """Issue 8 item 18: not "SERVFAIL or REFUSED" / "timeout" while the cause is "No route to host"
    (198.19.0.53 hits the lab's guard route)."""
    headers = auth_headers(user)
    app.config["DNS_NAMESERVERS"] = ["198.19.0.53"]
    body = probe(client, headers, "ping", host=f"www.{lab.zone}", count=1).get_json()
    assert body["success"] is False and body["data"]["error"] == "host_unreachable"
    assert "No route to host" in body["result"] and "No route to host" in body["data"]["message"]
    assert "SERVFAIL" not in body["result"] and "REFUSED" not in body["result"]
    body = probe(client, headers, "dns", domain=f"www.{lab.zone}", nameserver="198.19.0.53").get_json()
    assert body["success"] is False and body["data"]["error"] == "host_unreachable"
    assert "No route to host" in body["result"] and "timed out" not in body["result"]
