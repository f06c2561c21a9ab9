"""Probe inputs through the API, no lab needed (issue 8 items 3, 4 and 18): degenerate names are a
400 naming the field before any job is reserved; a URL or host:port is told to send the host only;
a nameserver whose TCP retry fails after TC=1 is a failed probe, not a 500."""
import os

import pytest

from tests.conftest import count_rows
from tests.probes.tiny_nameserver import TruncatingNameserver


def probe(client, headers, kind, **body):
    return client.post(f"/api/probes/{kind}", headers=headers, json=body)


LONG_LABEL = "a" * 64 + ".com"
NAME_254 = ("a" * 63 + ".") * 3 + "a" * 62          # 254 characters, every label valid
DEGENERATE = [".", "..", "...", "a..b", "-", "-.com", "a-.com", "a.com..", ".a.com", LONG_LABEL, NAME_254,
              "a" * 300, "a b.com", "a\u0000.com", "a.\u00ad"]


def _field_error(response, field):
    body = response.get_json()
    assert response.status_code == 400, body
    assert body["code"] == "validation_error" and field in body["fields"], body
    assert count_rows("probe_jobs") == 0
    return body


@pytest.mark.parametrize("name", DEGENERATE)
@pytest.mark.parametrize("kind,field", [("ping", "host"), ("traceroute", "host"), ("dns", "domain"),
                                        ("whois", "domain")])
def test_degenerate_names_are_400_before_any_job(client, user, auth_headers, kind, field, name):
    if kind == "dns" and name == ".":
        pytest.skip("the root is a valid DNS query name (NS/SOA of '.')")
    _field_error(probe(client, auth_headers(user), kind, **{field: name}), field)


def test_whois_of_the_root_is_400_not_500(client, user, auth_headers):
    body = _field_error(probe(client, auth_headers(user), "whois", domain="."), "domain")
    assert "domain" in body["message"]


@pytest.mark.parametrize("host", ["http://x/", "https://example.com/a", "example.com:443", "8.8.8.8:53",
                                  "[2001:4860:4860::8888]:53", "user@example.com", "example.com/path"])
@pytest.mark.parametrize("kind,field", [("ping", "host"), ("traceroute", "host"), ("dns", "domain"),
                                        ("whois", "domain")])
def test_url_or_host_port_says_send_the_host_only(client, user, auth_headers, kind, field, host):
    body = _field_error(probe(client, auth_headers(user), kind, **{field: host}), field)
    assert "host name or address only" in body["message"] and "IPv6" not in body["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the API asks nameservers on port 53 (needs root to listen)")
@pytest.mark.parametrize("app_overrides", [{"PROBE_ALLOWED_NETWORKS": "127.53.0.0/16", "DNS_TIMEOUT": 1.0}])
@pytest.mark.parametrize("mode,code", [("refuse", "connection_refused"), ("close", "connection_closed")])
def test_truncated_answer_then_tcp_failure_through_the_api(client, user, auth_headers, mode, code, db_session):
    from app.db.models import ProbeJob

    address = f"127.53.{os.getpid() % 250}.{1 + os.getpid() % 7}"
    with TruncatingNameserver(mode, host=address, port=53):
        response = probe(client, auth_headers(user), "dns", domain="big.example.com", record_type="TXT",
                         nameserver=address)
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["success"] is False and body["data"]["error"] == code
    assert "truncated (TC=1)" in body["data"]["message"] and "truncated (TC=1)" in body["result"]
    job = db_session.get(ProbeJob, body["job_id"])
    assert (job.status, job.success) == ("failed", False)
