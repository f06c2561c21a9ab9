"""Target guard unit tests: no network (resolution tests use the lab and are marked so)."""
import ipaddress

import pytest

from app.probes.targets import (
    SPECIAL_USE_DOMAINS,
    SPECIAL_V4,
    SPECIAL_V6,
    Target,
    TargetError,
    TargetRefused,
    TargetUnresolvable,
    check_address,
    check_query_name,
    normalize_domain,
    parse_address,
    parse_domains,
    parse_networks,
    resolve_target,
    reverse_name_network,
    special_network,
    special_purpose,
    special_use_domain,
    validate_hostname,
)

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
                                  "metadata.google.internal", "router.home.arpa", "x.onion", "db.corp",
                                  "nas.lan", "wiki.intranet", "x.private", "box.home", "www.probeops.test",
                                  "x.invalid", "a.alt", "resolver.arpa", "ipv4only.arpa", "h.localdomain"])
def test_special_use_names_refused_unless_allowed(name):
    with pytest.raises(TargetRefused, match="special-use domain"):
        validate_hostname(name)
    with pytest.raises(TargetRefused):
        resolve_target(name, allowed_networks=[])  # refused before any resolution
    normal = normalize_domain(name)
    allowed = parse_domains(normal.split(".")[-1] if not normal.endswith("arpa") else normal)
    if "." in normal:
        assert validate_hostname(name, allowed) == normal
    else:  # allowed, but a probe target still needs a fully qualified name
        with pytest.raises(TargetError, match="single-label"):
            validate_hostname(name, allowed)


def test_every_special_use_row_has_a_source():
    assert all(why and "(" in why for _suffix, why in SPECIAL_USE_DOMAINS)
    for name in ("example.com", "internal.example.com", "corp.example", "localhost.example.com", "test.com"):
        assert special_use_domain(name) is None, name


@pytest.mark.parametrize("name", ["foo", "a..b", "-a.com", "a-.com", "exa mple.com", "a" * 64 + ".com",
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


LAB_DOMAINS = ("test",)  # the lab's names live under .test (RFC 6761), refused unless allowed


# ---- resolution, against the lab's DNS server only --------------------------------------------
@pytest.fixture
def lab_nets(lab_routes):
    return parse_networks(lab_routes.allowed_networks)


@pytest.mark.lab
def test_resolve_prefers_ipv4_and_checks_all(lab, lab_nets):
    t = resolve_target("www.probeops.test", allowed_networks=lab_nets, nameservers=[lab.dns],
                       allowed_domains=LAB_DOMAINS)
    assert t == Target("www.probeops.test", lab.target, 4)
    t6 = resolve_target("v6only.probeops.test", allowed_networks=lab_nets, nameservers=[lab.dns],
                       allowed_domains=LAB_DOMAINS)
    assert t6 == Target("v6only.probeops.test", lab.target6, 6)
    t = resolve_target("BÜCHER.probeops.test.", allowed_networks=lab_nets, nameservers=[lab.dns],
                       allowed_domains=LAB_DOMAINS)
    assert t.host == "xn--bcher-kva.probeops.test" and t.address == lab.target


@pytest.mark.lab
def test_resolve_refuses_private_and_rebinding(lab, lab_nets):
    with pytest.raises(TargetRefused, match="10.1.2.3"):
        resolve_target("private.probeops.test", allowed_networks=lab_nets, nameservers=[lab.dns],
                       allowed_domains=LAB_DOMAINS)
    # one good and one loopback address: refused as a whole (DNS rebinding / split answers)
    with pytest.raises(TargetRefused, match="127.0.0.1"):
        resolve_target("rebind.probeops.test", allowed_networks=lab_nets, nameservers=[lab.dns],
                       allowed_domains=LAB_DOMAINS)
    # without PROBE_ALLOWED_NETWORKS the lab itself (198.18.0.0/15, benchmarking) is refused
    with pytest.raises(TargetRefused, match="benchmarking"):
        resolve_target("www.probeops.test", allowed_networks=[], nameservers=[lab.dns],
                       allowed_domains=LAB_DOMAINS)


@pytest.mark.lab
def test_resolve_unresolvable(lab, lab_nets):
    with pytest.raises(TargetUnresolvable, match="NXDOMAIN"):
        resolve_target("nope.probeops.test", allowed_networks=lab_nets, nameservers=[lab.dns],
                       allowed_domains=LAB_DOMAINS)
    with pytest.raises(TargetUnresolvable):
        resolve_target("x.broken.test", allowed_networks=lab_nets, nameservers=[lab.dns],
                       allowed_domains=LAB_DOMAINS)
    with pytest.raises(TargetUnresolvable, match="timed out") as exc:
        resolve_target("www.probeops.test", allowed_networks=lab_nets, nameservers=[lab.silent],
                       timeout=0.5, allowed_domains=LAB_DOMAINS)
    assert exc.value.code == "timeout"


# ---- issue 8 item 14: every embedded IPv4 must pass, not just one ----------------------------
def _teredo(server, client):
    s, c = int(ipaddress.IPv4Address(server)), int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
    return str(ipaddress.IPv6Address((0x20010000 << 96) | (s << 64) | (0x8000 << 48) | (0x63BF << 32) | c))


@pytest.mark.parametrize("inner", ["169.254.169.254", "127.0.0.1", "10.0.0.1"])
def test_one_allowed_ipv4_does_not_open_the_other_embedded_one(inner):
    one = parse_networks("198.18.3.10/32")
    check_address(_teredo("198.18.3.10", "8.8.8.8"), one)           # server allowed, client ordinary
    for addr in (_teredo("198.18.3.10", inner), _teredo(inner, "198.18.3.10")):
        with pytest.raises(TargetRefused, match=f"inside Teredo .*{addr}"):
            check_address(addr, one)
        with pytest.raises(TargetRefused):
            resolve_target(addr, allowed_networks=one)
    # both embedded addresses allowed: probed
    check_address(_teredo("198.18.3.10", "198.18.3.10"), one)


@pytest.mark.parametrize("addr,label", [
    ("::ffff:169.254.169.254", "IPv4-mapped"), ("::127.0.0.1", "IPv4-compatible"),
    ("64:ff9b::a9fe:a9fe", "NAT64"), ("64:ff9b:1::7f00:1", "local-use NAT64"),
    ("2002:a9fe:a9fe::1", "6to4"), ("2a00:1450::200:5efe:a9fe:a9fe", "ISATAP"),
    ("2002:808:808::5efe:7f00:1", "ISATAP"),
])
def test_every_embedding_is_unwrapped(addr, label):
    assert label in special_purpose(addr)
    with pytest.raises(TargetRefused, match=label):
        check_address(addr, parse_networks("8.8.8.8/32"))
    with pytest.raises(TargetRefused):  # allowing the IPv6 prefix does not open the IPv4 inside
        check_address(addr, parse_networks("::/0"))


# ---- issue 8 item 13: reverse names and special-use names as DNS/WHOIS query names ------------
@pytest.mark.parametrize("name,network", [
    ("5.0.0.10.in-addr.arpa", "10.0.0.5/32"), ("10.in-addr.arpa", "10.0.0.0/8"),
    ("16.172.in-addr.arpa", "172.16.0.0/16"), ("x.168.192.in-addr.arpa", "192.168.0.0/16"),
    ("254.169.254.169.in-addr.arpa", "169.254.169.254/32"), ("0/25.1.0.127.in-addr.arpa", "127.0.1.0/24"),
    ("9.5.0.0.10.in-addr.arpa", "10.0.0.5/32"), ("010.in-addr.arpa", "0.0.0.0/0"),
    ("d.f.ip6.arpa", "fd00::/8"), ("0.8.e.f.ip6.arpa", "fe80::/16"),
    ("1." + "0." * 31 + "ip6.arpa", "::1/128"),
    ("a.0.2.0.0.2.ip6.arpa", "2002:a00::/24"),
])
def test_reverse_name_network(name, network):
    assert reverse_name_network(name) == ipaddress.ip_network(network)


@pytest.mark.parametrize("name", [
    "5.0.0.10.in-addr.arpa", "10.in-addr.arpa", "0.0.10.in-addr.arpa", "16.172.in-addr.arpa",
    "168.192.in-addr.arpa", "1.1.168.192.in-addr.arpa", "254.169.254.169.in-addr.arpa", "127.in-addr.arpa",
    "64.100.in-addr.arpa", "d.f.ip6.arpa", "2.1.d.f.ip6.arpa", "0.8.e.f.ip6.arpa", "1." + "0." * 31 + "ip6.arpa",
    # embedded: ::ffff:10.0.0.5 and 6to4 2002:a9fe:a9fe::/48 reverse names
    "5.0.0.0.0.0.a.0.f.f.f.f." + "0." * 20 + "ip6.arpa", "e.f.9.a.e.f.9.a.2.0.0.2.ip6.arpa",
    "x.internal", "internal", "db.corp", "printer.local", "_ldap._tcp.dc.home.arpa", "www.probeops.test",
    "nas.lan", "a.onion",
])
def test_private_query_names_refused(name):
    with pytest.raises(TargetRefused):
        check_query_name(normalize_domain(name), allowed_networks=[])


@pytest.mark.parametrize("name", [".", "arpa", "in-addr.arpa", "ip6.arpa", "192.in-addr.arpa", "8.8.8.8.in-addr.arpa",
                                  "2.0.0.2.ip6.arpa", "8.8.8.8.4.6.8.4.0.6.8.4.1.0.0.2.ip6.arpa", "example.com",
                                  "_sip._tcp.example.com", "com", "internal.example.com"])
def test_public_query_names_pass(name):
    check_query_name(normalize_domain(name), allowed_networks=[])


def test_query_name_allow_lists():
    nets = parse_networks("10.0.0.0/8")
    check_query_name("5.0.0.10.in-addr.arpa", allowed_networks=nets)
    check_query_name("10.in-addr.arpa", allowed_networks=nets)
    with pytest.raises(TargetRefused):
        check_query_name("16.172.in-addr.arpa", allowed_networks=nets)
    doms = parse_domains(" corp, .Example.INTERNAL. ")
    assert doms == ("corp", "example.internal")
    check_query_name("db.corp", allowed_networks=[], allowed_domains=doms)
    check_query_name("a.example.internal", allowed_networks=[], allowed_domains=doms)
    with pytest.raises(TargetRefused):
        check_query_name("other.internal", allowed_networks=[], allowed_domains=doms)
    with pytest.raises(ValueError):
        parse_domains("bad name, x")


def test_special_network_needs_every_address_special():
    assert special_network("10.0.0.0/8") and special_network("fd00::/8") and special_network("::/4")
    assert special_network("192.0.0.0/8") is None and special_network("2002::/16") is None
    assert special_network("0.0.0.0/0") is None and special_network("::/0") is None


# ---- issue 8 item 18: a URL or host:port where a host belongs --------------------------------
@pytest.mark.parametrize("text", ["http://x/", "https://example.com/path", "example.com:443", "x:80",
                                  "[2001:db8::1]:53", "[::1]:", "user@example.com", "example.com/", "8.8.8.8:53"])
def test_url_or_port_says_send_the_host_only(text):
    with pytest.raises(TargetError, match="host name or address only") as exc:
        validate_hostname(text)
    assert "IPv6" not in str(exc.value)


@pytest.mark.lab
def test_resolve_names_an_unreachable_resolver(lab, lab_nets):
    """Not "SERVFAIL or REFUSED": the resolver could not be reached, and the code says so."""
    with pytest.raises(TargetUnresolvable, match="No route to host") as exc:
        resolve_target("www.probeops.test", allowed_networks=lab_nets, nameservers=["198.19.0.53"],
                       timeout=1.0, allowed_domains=LAB_DOMAINS)
    assert exc.value.code == "host_unreachable"
    assert "SERVFAIL" not in str(exc.value) and "REFUSED" not in str(exc.value)
    assert "198.19.0.53#53" in str(exc.value) and "Do53" not in str(exc.value)
    with pytest.raises(TargetUnresolvable, match="SERVFAIL") as exc:
        resolve_target("x.broken.test", allowed_networks=lab_nets, nameservers=[lab.dns],
                       allowed_domains=LAB_DOMAINS)
    assert exc.value.code == "servfail"
