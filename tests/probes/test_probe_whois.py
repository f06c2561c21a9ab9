"""whois engine vs Debian whois (asked at each server of the chain), and RDAP, on the lab."""
import json
import subprocess
import time

import pytest

from app.probes.targets import TargetRefused, TargetUnresolvable
from app.probes.whois import parse_whois, whois_lookup

pytestmark = pytest.mark.lab


def _whois(server, query):
    p = subprocess.run(["whois", "-h", server, query], capture_output=True, text=True, timeout=10)
    return p.stdout


def _body(text):
    """The raw answer part of the engine's text (after the % header lines)."""
    return text.split("\n\n", 1)[1]


def _norm(s):
    return "\n".join(line.rstrip() for line in s.strip().splitlines())


def test_whois_follows_referrals_to_registrar(lab_routes):
    lab = lab_routes
    res = whois_lookup("example.test", root_server=lab.whois_root, guard=lab.guard(), timeout=5)
    chain = res.data["server_chain"]
    assert [h["address"] for h in chain] == [lab.whois_root, lab.whois_registry, lab.whois_registrar]
    assert [h["server"] for h in chain[1:]] == ["whois.nic.probeops.test", "whois.registrar.probeops.test"]
    # the reference tool, asked at the same servers: the root refers as the engine understood,
    # and the authoritative (registrar) answer is kept verbatim
    assert "refer:        whois.nic.probeops.test" in _whois(lab.whois_root, "example.test")
    ref = _whois(lab.whois_registrar, "example.test")
    assert _norm(_body(res.text)) == _norm(ref)
    assert res.success and res.data["source"] == "whois"
    d = res.data
    assert d["registrar"] == "ProbeOps Lab Registrar, Inc."
    assert (d["creation_date"], d["expiry_date"], d["updated_date"]) == (
        "2001-02-03T04:05:06Z", "2030-02-03T04:05:06Z", "2025-03-04T05:06:07Z")
    assert d["status"] == ["clientDeleteProhibited", "clientTransferProhibited"]
    assert d["name_servers"] == ["ns1.probeops.test", "ns2.probeops.test"]
    # the same facts as the reference tool's registry answer says
    reg = parse_whois(_whois(lab.whois_registry, "example.test"))
    assert (reg["registrar"], reg["creation_date"], reg["expiry_date"]) == (
        d["registrar"], d["creation_date"], d["expiry_date"])


def test_whois_thin_registry_is_final(lab_routes):
    lab = lab_routes
    res = whois_lookup("thin.test", root_server=lab.whois_root, guard=lab.guard(), timeout=5)
    assert len(res.data["server_chain"]) == 2
    assert _norm(_body(res.text)) == _norm(_whois(lab.whois_registry, "thin.test"))
    assert res.data["registrar"] == "Thin Registrar GmbH" and res.data["status"] == ["ok"]


def test_whois_not_found(lab_routes):
    lab = lab_routes
    res = whois_lookup("nonexistent.test", root_server=lab.whois_root, guard=lab.guard(), timeout=5)
    assert not res.success and res.data["error"] == "not_found"
    assert "No match for" in _whois(lab.whois_registry, "nonexistent.test")
    assert _norm(_body(res.text)) == _norm(_whois(lab.whois_registry, "nonexistent.test"))


def test_whois_ip_goes_to_rir(lab_routes):
    lab = lab_routes
    res = whois_lookup(lab.target, root_server=lab.whois_root, guard=lab.guard(), timeout=5)
    assert [h["address"] for h in res.data["server_chain"]] == [lab.whois_root, lab.whois_rir]
    assert _norm(_body(res.text)) == _norm(_whois(lab.whois_rir, lab.target))
    assert res.success


def test_whois_refused_referral_is_not_contacted(lab_routes):
    lab = lab_routes
    before = len(lab.server_requests())
    res = whois_lookup("evil.test", root_server=lab.whois_root, guard=lab.guard(), timeout=5)
    assert len(res.data["server_chain"]) == 2  # registrar 10.1.2.3 refused by the guard
    assert any("10.1.2.3" in n and "not allowed" in n for n in res.data["notes"])
    assert res.success and res.data["registrar"] == "Evil Registrar"  # the registry's answer
    assert len(lab.server_requests()) - before == 2


def test_whois_loop_detected(lab_routes):
    lab = lab_routes
    res = whois_lookup("loop.test", root_server=lab.whois_root, guard=lab.guard(), timeout=5)
    assert [h["address"] for h in res.data["server_chain"]] == [lab.whois_root, lab.whois_registry]
    assert any("loop" in n for n in res.data["notes"])
    res = whois_lookup("x.selfref", root_server=lab.whois_root, guard=lab.guard(), timeout=5)
    assert len(res.data["server_chain"]) == 1 and any("loop" in n for n in res.data["notes"])


def test_whois_hop_bound(lab_routes):
    lab = lab_routes
    res = whois_lookup("example.test", root_server=lab.whois_root, guard=lab.guard(), timeout=5, max_hops=2)
    assert len(res.data["server_chain"]) == 2
    assert any("hop bound" in n for n in res.data["notes"])


def test_whois_root_by_name_and_ipv6(lab_routes):
    lab = lab_routes
    res = whois_lookup("thin.test", root_server="whois.probeops.test", guard=lab.guard(), timeout=5)
    assert res.data["server_chain"][0]["address"] == lab.whois_root and res.success
    res = whois_lookup("thin.test", root_server=lab.whois_root6, guard=lab.guard(), timeout=5)
    assert res.data["server_chain"][0]["address"] == lab.whois_root6 and res.success


def test_whois_silent_root_fails_within_bound(lab_routes):
    lab = lab_routes
    t0 = time.monotonic()
    res = whois_lookup("example.test", root_server=lab.silent, guard=lab.guard(), timeout=1.0)
    assert time.monotonic() - t0 < 1.5
    assert not res.success and res.data["error"] == "timeout"


def test_whois_guard_refuses_root():
    def guard(host):
        raise TargetRefused(f"target address 127.0.0.1 is not allowed: loopback ({host})")
    res = whois_lookup("example.com", root_server="localhost.example", guard=guard, timeout=1)
    assert not res.success and res.data["error"] == "refused" and res.data["server_chain"] == []

    def unresolvable(host):
        raise TargetUnresolvable("NXDOMAIN")
    assert whois_lookup("example.com", guard=unresolvable, timeout=1).data["error"] == "unresolvable"


def test_whois_max_bytes(lab_routes):
    lab = lab_routes
    res = whois_lookup("example.test", root_server=lab.whois_root, guard=lab.guard(), timeout=5,
                       max_bytes=1024, max_hops=3)
    assert all(h["bytes"] <= 1024 for h in res.data["server_chain"])


def test_whois_bounds():
    g = lambda h: "192.0.2.1"  # noqa: E731 - never reached: bounds are checked first
    for kw in ({"max_hops": 0}, {"max_hops": 9}, {"timeout": 0}, {"max_bytes": 10}):
        with pytest.raises(ValueError):
            whois_lookup("example.com", guard=g, **kw)


# ---- RDAP ---------------------------------------------------------------------------------------
def test_rdap_preferred_and_matches_whois(lab_routes):
    lab = lab_routes
    rdap = whois_lookup("example.test", root_server=lab.whois_root, guard=lab.guard(),
                        rdap_bootstrap_url=lab.rdap_bootstrap, timeout=5)
    port43 = whois_lookup("example.test", root_server=lab.whois_root, guard=lab.guard(), timeout=5)
    assert rdap.success and rdap.data["source"] == "rdap"
    assert rdap.data["rdap_url"] == "http://rdap.probeops.test/domain/example.test"
    obj = json.loads(_body(rdap.text))  # the server's raw JSON is kept
    assert obj["objectClassName"] == "domain"
    for key in ("registrar", "creation_date", "expiry_date", "updated_date", "name_servers"):
        assert rdap.data[key] == port43.data[key], key
    # file:// form of the bootstrap URL works too
    again = whois_lookup("example.test", root_server=lab.whois_root, guard=lab.guard(),
                         rdap_bootstrap_url="file://" + lab.rdap_bootstrap, timeout=5)
    assert again.data["source"] == "rdap"


def test_rdap_not_found_is_authoritative(lab_routes):
    lab = lab_routes
    res = whois_lookup("nonexistent.test", root_server=lab.whois_root, guard=lab.guard(),
                       rdap_bootstrap_url=lab.rdap_bootstrap, timeout=5)
    assert not res.success and res.data["source"] == "rdap" and res.data["error"] == "not_found"


def test_rdap_falls_back_to_port43(lab_routes, tmp_path):
    lab = lab_routes
    # IPv6 bootstrap lists no server: the RIR is asked over port 43
    res = whois_lookup(lab.target6, root_server=lab.whois_root, guard=lab.guard(),
                       rdap_bootstrap_url=lab.rdap_bootstrap, timeout=5)
    assert res.data["source"] == "whois" and res.success
    # a bootstrap naming a silent RDAP server: timeout bounded, then port 43
    boot = tmp_path / "dns.json"
    boot.write_text(json.dumps({"services": [[["test"], [f"http://{lab.silent}/"]]]}))
    t0 = time.monotonic()
    res = whois_lookup("thin.test", root_server=lab.whois_root, guard=lab.guard(),
                       rdap_bootstrap_url=str(boot), timeout=2)
    assert time.monotonic() - t0 < 2.5
    assert res.success and res.data["source"] == "whois" and any("RDAP" in n for n in res.data["notes"])
    # a bootstrap naming a private RDAP host: refused by the guard, never contacted
    boot.write_text(json.dumps({"services": [[["test"], ["http://private.probeops.test/"]]]}))
    res = whois_lookup("thin.test", root_server=lab.whois_root, guard=lab.guard(),
                       rdap_bootstrap_url=str(boot), timeout=5)
    assert res.data["source"] == "whois" and any("guard" in n for n in res.data["notes"])


@pytest.mark.parametrize("obj", [{"events": ["oops"]}, {"nameservers": [{"ldhName": 5}]}, {"status": "active"},
                                 {"entities": [7]}])
def test_malformed_rdap_objects_raise_so_the_engine_falls_back(obj):
    from app.probes.whois import parse_rdap

    with pytest.raises((TypeError, AttributeError)):
        parse_rdap(obj)
