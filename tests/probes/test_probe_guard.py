"""Target guard unit tests: no network (resolution tests use the lab and are marked so)."""
import ipaddress

import pytest

from app.probes.targets import (SPECIAL_V4, SPECIAL_V6, Target, TargetError, TargetRefused,
                                TargetUnresolvable, check_address, normalize_domain, parse_address,
                                parse_networks, resolve_target, special_purpose, validate_hostname)

REFUSED = [
    # IPv4 special-purpose registry and friends
    "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
    "100.100.100.200", "127.0.0.1", "127.255.255.254", "169.254.0.1", "169.254.169.254",
    "172.16.0.1", "172.31.255.255", "192.0.0.1", "192.0.0.9", "192.0.2.1", "192.31.196.1",
    "192.52.193.1", "192.88.99.1", "192.168.1.1", "192.175.48.1", "198.18.0.1", "198.19.255.255",
    "198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    # IPv6
    "::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
    "::8.8.8.8",  # IPv4-compatible: deprecated, refused whatever is inside
    "64:ff9b::127.0.0.1", "64:ff9b::a00:1", "64:ff9b:1::1", "100::1", "100:0:0:1::1",
    "2001:2::1", "2001:10::1", "2001:20::1", "2001:db8::1", "2002:7f00:1::1", "2002:c0a8:101::1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",   # Teredo, client 127.0.0.1
    "2001:0:c0a8:101:8000:63bf:3fff:fdd2",    # Teredo, server 192.168.1.1
    "3fff::1", "5f00::1", "fc00::1", "fd00:ec2::254", "fd12:3456::1", "fe80::1", "febf::1",
    "fec0::1", "ff02::1", "ff0e::1", "4000::1", "::2:3:4:5", "1::1", "e000::1",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0", "172.32.0.1",
           "192.169.0.1", "198.17.255.255", "198.20.0.0", "223.255.255.255",
           "2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808",
           "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7"]


@pytest.mark.parametrize("addr", REFUSED)
def test_special_purpose_refused(addr):
    assert special_purpose(addr)
    with pytest.raises(TargetRefused):
        check_address(addr, [])
    with pytest.raises(TargetRefused):
        resolve_target(addr, allowed_networks=[])


@pytest.mark.parametrize("addr", ALLOWED)
def test_global_allowed(addr):
    assert special_purpose(addr) is None
    check_address(addr, [])
    t = resolve_target(addr, allowed_networks=[])  # an address is never resolved: no network
    assert t == Target(str(ipaddress.ip_address(addr)), str(ipaddress.ip_address(addr)),
                       ipaddress.ip_address(addr).version)


def test_python_flags_disagree_where_expected():
    # the reasons the table exists: ipaddress calls these global or misses them
    for a in ("fec0::1", "::1.2.3.4", "ff0e::1", "64:ff9b::7f00:1", "2002:7f00:1::1"):
        assert special_purpose(a)
    assert ipaddress.ip_address("ff0e::1").is_global  # python: multicast counts as global
    assert special_purpose("169.254.169.254") == "cloud metadata (AWS, GCP, Azure, OpenStack)"


def test_table_is_well_formed():
    assert len(SPECIAL_V4) >= 20 and len(SPECIAL_V6) >= 18
    assert all(why for _n, why in SPECIAL_V4 + SPECIAL_V6)


def test_allowed_networks_override():
    nets = parse_networks("198.18.0.0/15, 127.0.0.0/8 ,fd00:198:18::/48")
    check_address("198.18.3.10", nets)
    check_address("127.0.0.1", nets)
    check_address("::ffff:127.0.0.1", nets)          # the IPv4 inside is allowed
    check_address("fd00:198:18:3::10", nets)
    with pytest.raises(TargetRefused):
        check_address("10.0.0.1", nets)
    with pytest.raises(TargetRefused):
        check_address("fd00:198:19::1", nets)
    assert parse_networks("") == [] and parse_networks(None) == []
    for bad in ("10.0.0.1/8", "nonsense", "10.0.0.0/33"):
        with pytest.raises(ValueError):
            parse_networks(bad)


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f.1", "0x7f000001", "127.1", "127.0.1",
                                      "0177.0.0.1", "127.000.0.1", "017700000001", "0x7F.0.0.1",
                                      "1.2.3.4.", "08.8.8.8", "0", "0x", "1.2.3.4.5",
                                      "example.123"])
def test_non_canonical_numeric_refused(spelling):
    with pytest.raises(TargetError):
        validate_hostname(spelling)
    with pytest.raises(TargetError):
        resolve_target(spelling, allowed_networks=parse_networks("0.0.0.0/0,::/0"))


@pytest.mark.parametrize("name", ["localhost", "LOCALHOST.", "foo.localhost", "printer.local",
                                  "metadata.google.internal", "router.home.arpa", "x.onion",
                                  "foo", "a..b", "-a.com", "a-.com", "exa mple.com", "a" * 64 + ".com",
                                  ("a" * 60 + ".") * 5 + "com", "", "   ", "fe80::1%eth0",
                                  "[::1", "1:2:3", "xn--a.com", "bad_ünïcode!.com"])
def test_refused_names(name):
    with pytest.raises(TargetError):
        validate_hostname(name)


@pytest.mark.parametrize("name,expected", [
    ("Example.COM", "example.com"), ("example.com.", "example.com"),
    ("bücher.example", "xn--bcher-kva.example"), ("BÜCHER.example", "xn--bcher-kva.example"),
    ("faß.de", "xn--fa-hia.de"),             # IDNA 2008 (non-transitional): ß kept
    ("xn--bcher-kva.example", "xn--bcher-kva.example"), ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ("ｅｘａｍｐｌｅ．ｃｏｍ", "example.com"),  # full-width forms mapped (UTS 46)
    ("_sip._tcp.example.com", "_sip._tcp.example.com"), ("8.8.8.8", "8.8.8.8"),
    ("[2001:4860:4860::8888]", "2001:4860:4860::8888"),
])
def test_normalization(name, expected):
    assert validate_hostname(name) == expected


def test_parse_address():
    assert str(parse_address("1.2.3.4")) == "1.2.3.4"
    assert str(parse_address("2001:DB8::1")) == "2001:db8::1"
    assert parse_address("example.com") is None
    with pytest.raises(TargetError):
        parse_address("127.1")


def test_normalize_domain_is_looser():
    assert normalize_domain("com") == "com"
    assert normalize_domain("_dmarc.Example.com.") == "_dmarc.example.com"
    assert normalize_domain(".") == "."
    with pytest.raises(TargetError):
        normalize_domain("a b.com")


def test_exceptions_map_to_http_codes():
    assert issubclass(TargetError, ValueError)
    assert not issubclass(TargetRefused, ValueError)
    assert not issubclass(TargetUnresolvable, ValueError)


# ---- resolution, against the lab's DNS server only --------------------------------------------
@pytest.fixture
def lab_nets(lab_routes):
    return parse_networks(lab_routes.allowed_networks)


@pytest.mark.lab
def test_resolve_prefers_ipv4_and_checks_all(lab, lab_nets):
    t = resolve_target("www.probeops.test", allowed_networks=lab_nets, nameservers=[lab.dns])
    assert t == Target("www.probeops.test", lab.target, 4)
    t6 = resolve_target("v6only.probeops.test", allowed_networks=lab_nets, nameservers=[lab.dns])
    assert t6 == Target("v6only.probeops.test", lab.target6, 6)
    t = resolve_target("BÜCHER.probeops.test.", allowed_networks=lab_nets, nameservers=[lab.dns])
    assert t.host == "xn--bcher-kva.probeops.test" and t.address == lab.target


@pytest.mark.lab
def test_resolve_refuses_private_and_rebinding(lab, lab_nets):
    with pytest.raises(TargetRefused, match="10.1.2.3"):
        resolve_target("private.probeops.test", allowed_networks=lab_nets, nameservers=[lab.dns])
    # one good and one loopback address: refused as a whole (DNS rebinding / split answers)
    with pytest.raises(TargetRefused, match="127.0.0.1"):
        resolve_target("rebind.probeops.test", allowed_networks=lab_nets, nameservers=[lab.dns])
    # without PROBE_ALLOWED_NETWORKS the lab itself (198.18.0.0/15, benchmarking) is refused
    with pytest.raises(TargetRefused, match="benchmarking"):
        resolve_target("www.probeops.test", allowed_networks=[], nameservers=[lab.dns])


@pytest.mark.lab
def test_resolve_unresolvable(lab, lab_nets):
    with pytest.raises(TargetUnresolvable, match="NXDOMAIN"):
        resolve_target("nope.probeops.test", allowed_networks=lab_nets, nameservers=[lab.dns])
    with pytest.raises(TargetUnresolvable):
        resolve_target("x.broken.test", allowed_networks=lab_nets, nameservers=[lab.dns])
    with pytest.raises(TargetUnresolvable, match="timeout"):
        resolve_target("www.probeops.test", allowed_networks=lab_nets, nameservers=[lab.silent],
                       timeout=0.5)
