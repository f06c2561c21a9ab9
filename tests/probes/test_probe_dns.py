"""dns engine vs dig, at the same moment, against the lab's bind9."""
import re
import time

import pytest

from app.probes.dns import dns_lookup
from app.probes.targets import TargetError
from tests.probes.helpers import at_same_moment

pytestmark = pytest.mark.lab


def _dig_records(text, section="ANSWER"):
    """(name, type, value) from a dig section; TTL and class kept apart."""
    out = set()
    m = re.search(rf";; {section} SECTION:\n(.*?)(?:\n\n|\Z)", text, re.S)
    if not m:
        return out
    for line in m.group(1).splitlines():
        parts = line.split(None, 4)
        if len(parts) == 5:
            out.add((parts[0], parts[3], parts[4].strip()))
    return out


def _mine(records):
    return {(r["name"], r["type"], r["value"]) for r in records}


def _status(text):
    m = re.search(r"status: (\w+)", text)
    return m and m.group(1)


def _dig(lab, name, rtype, *extra):
    return ["dig", f"@{lab.dns}", "+norecurse", "+nocookie", "+time=1", "+tries=1", *extra, name, rtype]


@pytest.mark.parametrize("name,rtype", [
    ("www.probeops.test", "A"), ("www.probeops.test", "AAAA"), ("alias.probeops.test", "CNAME"),
    ("alias.probeops.test", "A"), ("probeops.test", "MX"), ("probeops.test", "NS"),
    ("probeops.test", "TXT"), ("probeops.test", "SOA"), ("_sip._tcp.probeops.test", "SRV"),
    ("probeops.test", "CAA"), ("www.probeops.test", "MX"),
])
def test_dns_matches_dig(lab_routes, name, rtype):
    lab = lab_routes
    res, tool = at_same_moment(lambda: dns_lookup(name, record_type=rtype, nameservers=[lab.dns], timeout=2),
                               _dig(lab, name, rtype))
    assert tool.returncode == 0
    assert res.data["rcode"] == _status(tool.stdout) == "NOERROR"
    for section, key in (("ANSWER", "answers"), ("AUTHORITY", "authority"), ("ADDITIONAL", "additional")):
        assert _mine(res.data[key]) == _dig_records(tool.stdout, section), (section, res.text, tool.stdout)
        assert _dig_records(res.text, section) == _dig_records(tool.stdout, section)
    assert "aa" in res.data["flags"] and "qr" in res.data["flags"]
    assert res.data["server"] == lab.dns and res.data["query_time_ms"] >= 0
    assert ";; Query time:" in res.text and f";; SERVER: {lab.dns}#53" in res.text
    assert res.success  # NOERROR (also with no records of the type: NODATA is an answer)
    for r in res.data["answers"]:
        assert set(r) == {"name", "ttl", "class", "type", "value"} and r["ttl"] == 300


def test_dns_ipv6_server_and_ptr(lab_routes):
    lab = lab_routes
    r = dns_lookup("www.probeops.test", record_type="AAAA", nameservers=[lab.dns6])
    assert r.success and _mine(r.data["answers"]) == {("www.probeops.test.", "AAAA", lab.target6)}
    for ip in (lab.target, lab.target6):
        res, tool = at_same_moment(lambda ip=ip: dns_lookup(ip, nameservers=[lab.dns]),
                                   ["dig", f"@{lab.dns}", "+norecurse", "+time=1", "+tries=1", "-x", ip])
        assert res.data["record_type"] == "PTR"
        assert _mine(res.data["answers"]) == _dig_records(tool.stdout) != set()
        assert res.data["answers"][0]["value"] == "www.probeops.test."


def test_dns_idn(lab_routes):
    lab = lab_routes
    r = dns_lookup("BÜCHER.probeops.test", nameservers=[lab.dns])
    assert r.success and r.data["query"] == "xn--bcher-kva.probeops.test."
    assert _mine(r.data["answers"]) == {("xn--bcher-kva.probeops.test.", "A", lab.target)}


@pytest.mark.parametrize("name,rcode", [("nope.probeops.test", "NXDOMAIN"), ("x.broken.test", "SERVFAIL"),
                                        ("example.com", "REFUSED")])
def test_dns_failures_match_dig(lab_routes, name, rcode):
    lab = lab_routes
    res, tool = at_same_moment(lambda: dns_lookup(name, nameservers=[lab.dns], timeout=2),
                               _dig(lab, name, "A"))
    assert _status(tool.stdout) == rcode == res.data["rcode"]
    assert res.success is False
    assert rcode in res.text and res.data["error"] == rcode.lower()
    if rcode == "NXDOMAIN":  # the SOA in the authority section, as dig shows it
        assert _mine(res.data["authority"]) == _dig_records(tool.stdout, "AUTHORITY") != set()


def test_dns_timeout_is_a_failure_within_bound(lab_routes):
    lab = lab_routes
    t0 = time.monotonic()
    res, tool = at_same_moment(lambda: dns_lookup("www.probeops.test", nameservers=[lab.silent], timeout=1.0),
                               ["dig", f"@{lab.silent}", "+time=1", "+tries=1", "www.probeops.test"])
    assert time.monotonic() - t0 < 2.5
    assert not res.success and res.data["error"] == "timeout" and res.data["rcode"] is None
    assert "no servers could be reached" in res.text and "no servers could be reached" in tool.stdout


def test_dns_second_server_used_when_first_silent(lab_routes):
    lab = lab_routes
    t0 = time.monotonic()
    r = dns_lookup("www.probeops.test", nameservers=[lab.silent, lab.dns], timeout=2.0)
    assert time.monotonic() - t0 < 2.5
    assert r.success and r.data["server"] == lab.dns
    assert "timed out" in r.text


def test_dns_truncation_falls_back_to_tcp(lab_routes):
    lab = lab_routes
    res, tool = at_same_moment(lambda: dns_lookup("big.probeops.test", record_type="TXT", nameservers=[lab.dns]),
                               _dig(lab, "big.probeops.test", "TXT"))
    assert "Truncated, retrying in TCP mode" in tool.stdout
    assert res.success and res.data["truncated_udp"] and res.data["protocol"] == "tcp"
    assert len(res.data["answers"]) == lab.big_txt_count
    assert _mine(res.data["answers"]) == _dig_records(tool.stdout)
    assert "(TCP)" in res.text


def test_dns_bounds_and_names():
    with pytest.raises(ValueError):
        dns_lookup("example.com", record_type="ANY", nameservers=["127.0.0.1"])
    with pytest.raises(ValueError):
        dns_lookup("example.com", nameservers=["127.0.0.1"], timeout=0)
    with pytest.raises(TargetError):
        dns_lookup("bad name.com", nameservers=["127.0.0.1"])
    with pytest.raises(ValueError):
        dns_lookup("example.com", nameservers=["not-an-ip"])


# 198.19.0.0/16 is inside the lab's guard route (`unreachable 198.18.0.0/15`) but not routed into
# the lab: a send there fails locally with "No route to host", a real unreachable resolver.
UNROUTED_RESOLVER = "198.19.0.53"


def test_dns_unreachable_server_is_named_not_called_a_timeout(lab_routes):
    lab = lab_routes
    res, tool = at_same_moment(lambda: dns_lookup("www.probeops.test", nameservers=[UNROUTED_RESOLVER], timeout=1.0),
                               ["dig", f"@{UNROUTED_RESOLVER}", "+time=1", "+tries=1", "www.probeops.test"])
    assert "no servers could be reached" in tool.stdout and "unreachable" in (tool.stdout + tool.stderr)
    assert not res.success and res.data["error"] == "host_unreachable"
    assert "No route to host" in res.data["message"] and "No route to host" in res.text
    assert "timed out" not in res.text and "SERVFAIL" not in res.text
    assert res.data["attempts"][0]["error"] == "host_unreachable"
    # the next server is still asked
    r = dns_lookup("www.probeops.test", nameservers=[UNROUTED_RESOLVER, lab.dns], timeout=2.0)
    assert r.success and r.data["server"] == lab.dns and r.data["attempts"][0]["error"] == "host_unreachable"
