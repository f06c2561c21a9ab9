"""The target guard through the API (issue 8 items 13 and 14): private names and reverse zones
stay private, and every IPv4 embedded in an IPv6 target must pass, refused before any job."""
import ipaddress

import pytest

from tests.conftest import count_rows


def probe(client, headers, kind, **body):
    return client.post(f"/api/probes/{kind}", headers=headers, json=body)


def _refused(response):
    body = response.get_json()
    assert response.status_code == 403, body
    assert body["code"] == "target_refused"
    assert count_rows("probe_jobs") == 0
    return body


# ---- item 13 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", [
    "5.0.0.10.in-addr.arpa", "10.in-addr.arpa", "0.0.10.in-addr.arpa", "1.1.168.192.in-addr.arpa",
    "16.172.in-addr.arpa", "254.169.254.169.in-addr.arpa", "2.0.0.127.in-addr.arpa", "64.100.in-addr.arpa",
    "d.f.ip6.arpa", "0.8.e.f.ip6.arpa", "2." + "0." * 31 + "ip6.arpa",
    "5.0.0.0.0.0.a.0.f.f.f.f." + "0." * 20 + "ip6.arpa",   # ::ffff:10.0.0.5
    "metadata.google.internal", "internal", "db.corp", "printer.local", "nas.lan", "wiki.intranet",
    "x.private", "router.home.arpa", "x.home", "app.localhost", "www.probeops.test", "a.onion", "a.alt",
])
@pytest.mark.parametrize("kind", ["dns", "whois"])
def test_private_names_and_reverse_zones_are_refused(client, user, auth_headers, kind, domain):
    body = _refused(probe(client, auth_headers(user), kind, domain=domain, record_type="PTR")
                    if kind == "dns" else probe(client, auth_headers(user), kind, domain=domain))
    assert body["message"].startswith("domain:")


def test_ptr_by_name_refused_like_ptr_by_address(client, user, auth_headers):
    headers = auth_headers(user)
    by_address = _refused(probe(client, headers, "dns", domain="10.0.0.5"))
    by_name = _refused(probe(client, headers, "dns", domain="5.0.0.10.in-addr.arpa", record_type="PTR"))
    assert "private use" in by_address["message"] and "private use" in by_name["message"]
    _refused(probe(client, headers, "whois", domain="10.0.0.5"))


@pytest.mark.parametrize("host", ["metadata.google.internal", "db.corp", "printer.local", "x.home.arpa"])
@pytest.mark.parametrize("kind", ["ping", "traceroute"])
def test_private_names_refused_as_probe_targets(client, user, auth_headers, kind, host):
    body = _refused(probe(client, auth_headers(user), kind, host=host))
    assert body["message"].startswith("host:") and "special-use" in body["message"]


@pytest.mark.parametrize("app_overrides", [{"PROBE_ALLOWED_DOMAINS": "corp",
                                            "PROBE_ALLOWED_NETWORKS": "10.0.0.0/8,127.0.0.1/32",
                                            "DNS_TIMEOUT": 0.5}])
def test_allow_lists_open_exactly_what_they_name(client, user, auth_headers):
    headers = auth_headers(user)
    # allowed: the probe runs (against DNS_NAMESERVERS = 127.0.0.1, which fails: still a job)
    for domain in ("db.corp", "5.0.0.10.in-addr.arpa", "10.in-addr.arpa"):
        response = probe(client, headers, "dns", domain=domain, record_type="PTR")
        assert response.status_code == 200, response.get_json()
    assert count_rows("probe_jobs") == 3
    for domain in ("db.internal", "1.168.192.in-addr.arpa"):
        response = probe(client, headers, "dns", domain=domain)
        assert response.status_code == 403 and response.get_json()["code"] == "target_refused"
    assert count_rows("probe_jobs") == 3


# ---- item 14 -----------------------------------------------------------------------------------
def _teredo(server, client):
    s, c = int(ipaddress.IPv4Address(server)), int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
    return str(ipaddress.IPv6Address((0x20010000 << 96) | (s << 64) | (0x8000 << 48) | (0x63BF << 32) | c))


ONE_ADDRESS = {"PROBE_ALLOWED_NETWORKS": "198.18.3.10/32"}


@pytest.mark.parametrize("app_overrides", [ONE_ADDRESS])
@pytest.mark.parametrize("host", [
    _teredo("198.18.3.10", "169.254.169.254"), _teredo("198.18.3.10", "127.0.0.1"),
    _teredo("169.254.169.254", "198.18.3.10"), _teredo("127.0.0.1", "198.18.3.10"),
    "2002:c612:30a::200:5efe:a9fe:a9fe",          # 6to4 of the allowed address, ISATAP id of metadata
    "64:ff9b:1::a9fe:a9fe", "::ffff:169.254.169.254", "64:ff9b::7f00:1",
])
@pytest.mark.parametrize("kind", ["ping", "traceroute"])
def test_one_allowed_ipv4_does_not_let_another_embedded_one_in(client, user, auth_headers, kind, host):
    body = _refused(probe(client, auth_headers(user), kind, host=host))
    assert "169.254.169.254" in body["message"] or "127.0.0.1" in body["message"] or "loopback" in body["message"] \
        or "metadata" in body["message"]


@pytest.mark.parametrize("app_overrides", [ONE_ADDRESS])
def test_teredo_nameserver_refused_too(client, user, auth_headers):
    response = probe(client, auth_headers(user), "dns", domain="example.com",
                     nameserver=_teredo("198.18.3.10", "169.254.169.254"))
    body = _refused(response)
    assert body["message"].startswith("nameserver:")


@pytest.mark.parametrize("spec", ["bad name", "a..b", "-x", "exa mple.com,corp"])
def test_malformed_allowed_domains_refused_at_start(spec):
    from app.config import ConfigError, check_probe_settings
    from tests.conftest import build_app

    with pytest.raises(ConfigError, match="PROBE_ALLOWED_DOMAINS"):
        build_app("sqlite://", PROBE_ALLOWED_DOMAINS=spec)
    app = build_app("sqlite://", PROBE_ALLOWED_DOMAINS="corp, .Example.INTERNAL.")
    check_probe_settings(app.config)
