"""Target guard shared by every probe engine.

A target is a hostname (IDN allowed, converted with IDNA 2008 / UTS 46), an IPv4 address in
canonical dotted-quad form, or an IPv6 address.  Names are resolved exactly once; every address
they resolve to is checked against an explicit table of the IANA special-purpose registries, and
the engine then probes exactly the address that was checked (no second resolution, so DNS
rebinding cannot slip a private address in between the check and the probe).

Python's ``ipaddress`` ``is_global``/``is_private`` flags are deliberately not used: they call
multicast, fec0::/10 and ::/96 global, and they do not look inside IPv4-mapped, NAT64, 6to4 or
Teredo addresses.  See docs/probes.md for the table with its sources.
"""
from __future__ import annotations

import errno
import ipaddress
import re
import time
from dataclasses import dataclass

import dns.exception
import dns.inet
import dns.name
import dns.rdatatype
import dns.resolver
import idna

from .limits import RESOLVE_TIMEOUT_DEFAULT

__all__ = [
    "TargetError", "TargetRefused", "TargetUnresolvable", "Target",
    "SPECIAL_V4", "SPECIAL_V6", "SPECIAL_USE_DOMAINS", "parse_networks", "parse_domains", "validate_hostname",
    "normalize_domain", "parse_address", "check_address", "special_purpose", "special_network",
    "special_use_domain", "reverse_name_network", "check_query_name", "resolve_target",
]


class TargetError(ValueError):
    """Not a usable host: bad syntax, non-canonical numeric spelling or a refused name form (400)."""


class TargetRefused(Exception):
    """The target is, or resolves to, a special-purpose address outside PROBE_ALLOWED_NETWORKS, or is a
    special-use domain name outside PROBE_ALLOWED_DOMAINS (403)."""


class TargetUnresolvable(Exception):
    """A valid name with no A/AAAA record (NXDOMAIN, no data, timeout) - the probe ran and failed.

    ``code`` names the cause for ``data.error``: nxdomain, no_address, timeout, servfail, refused,
    network_unreachable, host_unreachable, connection_refused, resolver_error.
    """

    def __init__(self, message, code="resolver_error"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    host: str      # normalized (IDNA ASCII, lower case, no trailing dot) name, or the address
    address: str   # the one checked address every engine must use
    family: int    # 4 or 6


# --------------------------------------------------------------------------------------------
# The table.  IANA IPv4 / IPv6 Special-Purpose Address Registries (RFC 6890 and updates),
# the IPv4 / IPv6 address-space registries' "reserved" blocks, and cloud metadata addresses.
# Every block here is refused, whatever its "globally reachable" column says (AS112, AMT and
# similar anycast service blocks are not something a user needs to ping through us).
# --------------------------------------------------------------------------------------------
_V4 = [
    ("0.0.0.0/8", "this network (RFC 791)"),
    ("10.0.0.0/8", "private use (RFC 1918)"),
    ("100.64.0.0/10", "shared address space / CGNAT (RFC 6598)"),
    ("100.100.100.200/32", "cloud metadata (Alibaba Cloud)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.169.254/32", "cloud metadata (AWS, GCP, Azure, OpenStack)"),
    ("169.254.0.0/16", "link-local (RFC 3927)"),
    ("172.16.0.0/12", "private use (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.31.196.0/24", "AS112-v4 (RFC 7535)"),
    ("192.52.193.0/24", "AMT (RFC 7450)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private use (RFC 1918)"),
    ("192.175.48.0/24", "direct delegation AS112 service (RFC 7534)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
]
_V6 = [
    ("::/128", "unspecified address (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::ffff:0:0/96", "IPv4-mapped (RFC 4291)"),            # unwrapped before the table is used
    ("::/96", "IPv4-compatible, deprecated (RFC 4291)"),
    ("64:ff9b::/96", "NAT64 well-known prefix (RFC 6052)"),  # unwrapped before the table is used
    ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
    ("2001::/32", "Teredo (RFC 4380)"),                     # unwrapped before the table is used
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("2002::/16", "6to4 (RFC 3056)"),                       # unwrapped before the table is used
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "SRv6 SIDs (RFC 9602)"),
    ("fd00:ec2::254/128", "cloud metadata (AWS IPv6)"),
    ("fc00::/7", "unique local (RFC 4193)"),
    ("fe80::/10", "link-local unicast (RFC 4291)"),
    ("fec0::/10", "site-local, deprecated (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
]
SPECIAL_V4 = [(ipaddress.IPv4Network(n), why) for n, why in _V4]
SPECIAL_V6 = [(ipaddress.IPv6Network(n), why) for n, why in _V6]
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_6TO4 = ipaddress.IPv6Network("2002::/16")
_UNWRAPPED = (_MAPPED, _NAT64, _TEREDO, _6TO4)
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")   # stays refused; its embedded IPv4 is checked too
_COMPAT = ipaddress.IPv6Network("::/96")                  # stays refused; its embedded IPv4 is checked too
_ISATAP_IIDS = (0x00005EFE, 0x02005EFE)                   # interface id 0[02]00:5efe:a.b.c.d (RFC 5214)


def special_purpose(address) -> str | None:
    """Why ``address`` is special-purpose (a description), or None if it is ordinary global unicast.

    IPv4 addresses embedded in IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96 and the
    local-use 64:ff9b:1::/48), 6to4, Teredo (server and client) and ISATAP addresses are checked
    as IPv4.  IPv6 outside 2000::/3 that no row names is "reserved".
    """
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        for net, why in SPECIAL_V4:
            if ip in net:
                return why
        return None
    for inner, label in _embedded_v4(ip):
        why = special_purpose(inner)
        if why:
            return f"{why}, inside {label} {ip}"
    if any(ip in n for n in _UNWRAPPED):
        return None  # every embedded IPv4 is ordinary
    for net, why in SPECIAL_V6:
        if ip in net:
            return why
    if ip not in _GLOBAL_UNICAST_V6:
        return "reserved by IETF (outside 2000::/3 global unicast)"
    return None


def _embedded_v4(ip: ipaddress.IPv6Address):
    """(IPv4Address, label) pairs embedded in a translation/tunnel IPv6 address (every one is checked)."""
    n = int(ip)
    low32 = ipaddress.IPv4Address(n & 0xFFFFFFFF)
    if ip in _MAPPED:
        yield low32, "IPv4-mapped"
    elif ip in _NAT64:
        yield low32, "NAT64"
    elif ip in _NAT64_LOCAL:
        yield low32, "local-use NAT64 (/96 layout)"
    elif ip in _COMPAT:
        if n > 1:  # :: and ::1 are the unspecified and loopback addresses, not IPv4-compatible ones
            yield low32, "IPv4-compatible"
    else:
        if ip in _6TO4:
            yield ipaddress.IPv4Address((n >> 80) & 0xFFFFFFFF), "6to4"
        elif ip in _TEREDO:
            yield ipaddress.IPv4Address((n >> 64) & 0xFFFFFFFF), "Teredo (server)"
            yield ipaddress.IPv4Address((n & 0xFFFFFFFF) ^ 0xFFFFFFFF), "Teredo (client)"
        if (n >> 32) & 0xFFFFFFFF in _ISATAP_IIDS:  # any prefix, 6to4 included (RFC 5214)
            yield low32, "ISATAP"


def _embedded_v4_networks(net: ipaddress.IPv6Network):
    """(IPv4Network, label) pairs that every address of ``net`` embeds (partial reverse zones)."""
    n, plen = int(net.network_address), net.prefixlen

    def v4(value, bits):
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF if bits else 0
        return ipaddress.IPv4Network((value & mask, bits))

    if (net.subnet_of(_MAPPED) or net.subnet_of(_NAT64)) and plen > 96:
        yield v4(n & 0xFFFFFFFF, plen - 96), "IPv4-mapped" if net.subnet_of(_MAPPED) else "NAT64"
    elif net.subnet_of(_6TO4) and plen > 16:
        yield v4((n >> 80) & 0xFFFFFFFF, min(plen, 48) - 16), "6to4"
    elif net.subnet_of(_TEREDO):
        if plen > 32:
            yield v4((n >> 64) & 0xFFFFFFFF, min(plen, 64) - 32), "Teredo (server)"
        if plen > 96:
            yield v4((n & 0xFFFFFFFF) ^ 0xFFFFFFFF, plen - 96), "Teredo (client)"


def special_network(net) -> str | None:
    """Why every address of ``net`` is special-purpose, or None when some address in it is not.

    Used for partial reverse zones (``10.in-addr.arpa`` is 10.0.0.0/8); a network that merely
    contains special blocks (``192.in-addr.arpa``) is public delegation and passes.
    """
    net = ipaddress.ip_network(net)
    if net.num_addresses == 1:
        return special_purpose(net.network_address)
    if net.version == 4:
        return next((why for block, why in SPECIAL_V4 if net.subnet_of(block)), None)
    for inner, label in _embedded_v4_networks(net):
        why = special_network(inner)
        if why:
            return f"{why}, inside {label} {net}"
    if any(net.subnet_of(u) for u in _UNWRAPPED):
        return None
    for block, why in SPECIAL_V6:
        if net.subnet_of(block):
            return why
    if not net.overlaps(_GLOBAL_UNICAST_V6):
        return "reserved by IETF (outside 2000::/3 global unicast)"
    return None


def _network_allowed(net, allowed_networks) -> bool:
    candidates = [net] + ([v4 for v4, _ in _embedded_v4_networks(net)] if net.version == 6 else [])
    return any(c.version == a.version and c.subnet_of(a) for a in allowed_networks or () for c in candidates)


def parse_networks(spec: str | None) -> list:
    """``"198.18.0.0/15, ::1/128"`` -> list of networks.  Raises ValueError on a bad CIDR."""
    if not spec:
        return []
    if not isinstance(spec, str):  # already a list
        return [n if isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network))
                else ipaddress.ip_network(str(n).strip()) for n in spec]
    out = []
    for part in spec.split(","):
        part = part.strip()
        if part:
            try:
                out.append(ipaddress.ip_network(part, strict=True))
            except ValueError as exc:
                raise ValueError(f"invalid network in PROBE_ALLOWED_NETWORKS: {part!r} ({exc})") from None
    return out


def _allowed(ip, allowed_networks) -> bool:
    """Allowed when every address the guard looks at (the address, each embedded IPv4) is either
    ordinary or inside ``allowed_networks``: allowing one IPv4 must not let a Teredo address in
    whose other embedded IPv4 (server or client) is metadata or loopback."""
    candidates = [ip]
    if ip.version == 6:
        candidates += [v4 for v4, _ in _embedded_v4(ip)]
    if not any(c.version == net.version and c in net for net in allowed_networks or () for c in candidates):
        return False
    return all(special_purpose(c) is None or any(c.version == net.version and c in net
                                                 for net in allowed_networks or ())
               for c in candidates if c is not ip)


def check_address(address, allowed_networks) -> None:
    """Raise TargetRefused if ``address`` is special-purpose and not inside ``allowed_networks``."""
    ip = ipaddress.ip_address(address) if not isinstance(
        address, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else address
    why = special_purpose(ip)
    if not why or _allowed(ip, allowed_networks):
        return
    for inner, label in _embedded_v4(ip) if ip.version == 6 else ():
        inner_why = special_purpose(inner)
        if inner_why and not _allowed(inner, allowed_networks):  # name the address that is not allowed
            why = f"{inner_why}, inside {label} {ip}"
            break
    raise TargetRefused(f"target address {ip} is not allowed: {why}")


# --------------------------------------------------------------------------------------------
# Special-use domain names: names the operator's resolver answers from local or private data
# (or must never send on).  IANA "Special-Use Domain Names" registry (RFC 6761) plus the
# private-use TLDs networks actually use.  Sub-domains are refused with their parent.
# --------------------------------------------------------------------------------------------
SPECIAL_USE_DOMAINS = [
    ("localhost", "loopback names (RFC 6761 section 6.3)"),
    ("invalid", "never exists (RFC 6761 section 6.4)"),
    ("test", "testing names (RFC 6761 section 6.2)"),
    ("local", "multicast DNS link-local names (RFC 6762)"),
    ("onion", "Tor onion services (RFC 7686)"),
    ("home.arpa", "home networks (RFC 8375)"),
    ("alt", "non-DNS name spaces (RFC 9476)"),
    ("resolver.arpa", "the resolver's own designation (RFC 9462)"),
    ("ipv4only.arpa", "NAT64 prefix discovery, answered locally (RFC 8880)"),
    ("6tisch.arpa", "6TiSCH local networks (RFC 9031)"),
    ("internal", "private-use TLD (ICANN resolution 2024.07.29.06, draft-davies-internal-tld)"),
    ("intranet", "private-use name seen on internal networks (RFC 6762 appendix G)"),
    ("private", "private-use name seen on internal networks (RFC 6762 appendix G)"),
    ("corp", "private-use name seen on internal networks (RFC 6762 appendix G)"),
    ("home", "private-use name seen on internal networks (RFC 6762 appendix G)"),
    ("lan", "private-use name seen on internal networks (RFC 6762 appendix G)"),
    ("localdomain", "local default domain of many systems (answered locally, not delegated)"),
]


def special_use_domain(name: str) -> str | None:
    """Why the normalized ``name`` is (under) a special-use domain, or None."""
    name = name.rstrip(".")
    for suffix, why in SPECIAL_USE_DOMAINS:
        if name == suffix or name.endswith("." + suffix):
            return f".{suffix}: {why}"
    return None


def parse_domains(spec) -> tuple[str, ...]:
    """``"probeops.test, corp"`` -> normalized suffixes (PROBE_ALLOWED_DOMAINS).  Raises ValueError."""
    if not spec:
        return ()
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for part in parts:
        part = str(part).strip().lstrip(".")
        if not part:
            continue
        try:
            out.append(normalize_domain(part))
        except TargetError as exc:
            raise ValueError(f"invalid domain in PROBE_ALLOWED_DOMAINS: {part!r} ({exc})") from None
    return tuple(out)


def _domain_allowed(name: str, allowed_domains) -> bool:
    name = name.rstrip(".")
    return any(name == d or name.endswith("." + d) for d in allowed_domains or ())


def check_domain(name: str, allowed_domains=()) -> None:
    """Raise TargetRefused if the normalized ``name`` is a special-use domain not in ``allowed_domains``."""
    why = special_use_domain(name)
    if why and not _domain_allowed(name, allowed_domains):
        raise TargetRefused(f"{name} is a special-use domain name ({why}); not allowed")


_OCTET = re.compile(r"^(0|[1-9][0-9]{0,2})$")
_NIBBLE = re.compile(r"^[0-9a-f]$")


def reverse_name_network(name: str):
    """The network a name under in-addr.arpa / ip6.arpa stands for, or None for other names.

    ``5.0.0.10.in-addr.arpa`` -> 10.0.0.5/32, ``10.in-addr.arpa`` -> 10.0.0.0/8,
    ``d.f.ip6.arpa`` -> fd00::/8.  Labels left of the address part (RFC 2317 ``0/25``, a 5th
    octet) only narrow it further, so the name is inside the network returned.
    """
    labels = name.lower().rstrip(".").split(".")
    if labels[-2:] == ["in-addr", "arpa"]:
        octets = []
        for label in reversed(labels[:-2]):
            if len(octets) == 4 or not _OCTET.match(label) or int(label) > 255:
                break
            octets.append(int(label))
        value = sum(o << (24 - 8 * i) for i, o in enumerate(octets))
        return ipaddress.IPv4Network((value, 8 * len(octets)))
    if labels[-2:] == ["ip6", "arpa"]:
        nibbles = []
        for label in reversed(labels[:-2]):
            if len(nibbles) == 32 or not _NIBBLE.match(label):
                break
            nibbles.append(int(label, 16))
        value = sum(v << (124 - 4 * i) for i, v in enumerate(nibbles))
        return ipaddress.IPv6Network((value, 4 * len(nibbles)))
    return None


def check_query_name(name: str, *, allowed_networks, allowed_domains=()) -> None:
    """Guard a DNS/WHOIS query name (normalized): special-use domains and reverse names inside
    special-purpose ranges raise TargetRefused, unless PROBE_ALLOWED_DOMAINS / _NETWORKS allow them."""
    if name == "." or _domain_allowed(name, allowed_domains):
        return
    check_domain(name, allowed_domains)
    net = reverse_name_network(name)
    if net is not None:
        why = special_network(net)
        if why and not _network_allowed(net, allowed_networks):
            raise TargetRefused(f"{name} is the reverse name of {net}: {why}")


# --------------------------------------------------------------------------------------------
# Syntax
# --------------------------------------------------------------------------------------------
# Anything inet_aton() would accept: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x).
_NUMERIC = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.I)
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
# "http://x/", "x:80", "[::1]:53", "user@x", "x/path": a URL or host:port where a bare host belongs
_NOT_A_HOST = re.compile(r"://|[/@?#]|^\[.*\]:\d*$|^[^:]*:\d*$")
_HOST_ONLY = "send the host name or address only, without a scheme, port, path or user"


def parse_address(text: str):
    """The IP address ``text`` spells canonically, or None if it is not an address at all.

    Raises TargetError for numeric spellings that are not canonical addresses (``2130706433``,
    ``0x7f.1``, ``127.1``, ``0177.0.0.1``, ``127.000.0.1``) and for IPv6 scope ids.
    """
    s = text.strip()
    if _NOT_A_HOST.search(s):
        raise TargetError(f"{text!r} is not a host: {_HOST_ONLY}")
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    if ":" in s:
        if "%" in s:
            raise TargetError(f"IPv6 scope ids are not accepted: {text!r}")
        try:
            return ipaddress.IPv6Address(s)
        except ValueError:
            raise TargetError(f"invalid IPv6 address: {text!r}") from None
    try:
        return ipaddress.IPv4Address(s)
    except ValueError:
        pass
    if _NUMERIC.match(s):
        raise TargetError(f"non-canonical numeric address {text!r}: write IPv4 as four decimal "
                          "octets without leading zeros")
    return None


def _to_ascii_labels(host: str) -> list[str]:
    try:
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
    except idna.IDNAError as exc:
        raise TargetError(f"invalid hostname {host!r}: {exc}") from None
    labels = mapped.split(".")
    out = []
    for label in labels:
        if label.isascii():
            out.append(label.lower())
            continue
        try:
            out.append(idna.alabel(label).decode("ascii"))
        except (idna.IDNAError, UnicodeError) as exc:
            raise TargetError(f"invalid internationalized label {label!r}: {exc}") from None
    for label in out:
        if label.startswith("xn--"):
            try:
                idna.ulabel(label)  # the A-label must decode to a valid IDNA 2008 U-label
            except (idna.IDNAError, UnicodeError) as exc:
                raise TargetError(f"invalid A-label {label!r}: {exc}") from None
    return out


def normalize_domain(domain: str) -> str:
    """Normalize a DNS query name (dns probe): IDNA 2008, lower case, no trailing dot.

    Looser than :func:`validate_hostname`: single labels ("com"), underscores ("_sip._tcp")
    and the root (".") are valid query names.  Raises TargetError.
    """
    if not isinstance(domain, str) or not domain.strip():
        raise TargetError("domain must be a non-empty string")
    d = domain.strip()
    if d == ".":
        return "."
    if d.endswith("."):
        d = d[:-1]
    labels = _to_ascii_labels(d)
    if any(not _LABEL.match(lb) for lb in labels):
        raise TargetError(f"invalid domain name {domain!r}")
    name = ".".join(labels)
    if len(name) > 253:
        raise TargetError(f"domain name too long ({len(name)} > 253)")
    return name


def validate_hostname(host: str, allowed_domains=()) -> str:
    """Syntax check of a probe target name; returns the normalized ASCII form.

    Refuses (TargetError) single-label names, numeric spellings and all-numeric top labels, and
    (TargetRefused) special-use domain names not in ``allowed_domains``.
    """
    if not isinstance(host, str) or not host.strip():
        raise TargetError("host must be a non-empty string")
    h = host.strip()
    if len(h) > 1024:
        raise TargetError("host too long")
    if parse_address(h) is not None:  # raises on non-canonical numeric spellings and URLs
        return str(parse_address(h))
    if h.endswith("."):
        h = h[:-1]
    labels = _to_ascii_labels(h)
    for lb in labels:
        if not _LABEL.match(lb):
            raise TargetError(f"invalid hostname {host!r}: bad label {lb!r}")
    name = ".".join(labels)
    if len(name) > 253:
        raise TargetError(f"hostname too long ({len(name)} > 253)")
    if len(labels) < 2 and not special_use_domain(name):
        raise TargetError(f"single-label hostname {name!r} is not accepted; use a fully qualified name")
    if labels[-1].isdigit() or _NUMERIC.match(name):
        raise TargetError(f"non-canonical numeric address {host!r}")
    check_domain(name, allowed_domains)
    if len(labels) < 2:
        raise TargetError(f"single-label hostname {name!r} is not accepted; use a fully qualified name")
    return name


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------
def _resolver(nameservers, timeout):
    if nameservers:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [str(ipaddress.ip_address(n)) for n in nameservers]
    else:
        r = dns.resolver.Resolver(configure=True)
    r.timeout = min(timeout, 2.0)
    r.lifetime = timeout
    r.cache = None
    return r


_ERRNO_CODES = {errno.ENETUNREACH: "network_unreachable", errno.EHOSTUNREACH: "host_unreachable",
                errno.ECONNREFUSED: "connection_refused"}


def _server_error(err) -> tuple[str, str]:
    """(code, text) for one entry of dnspython's per-nameserver error list."""
    server, _tcp, port, what = err[0], err[1], err[2], err[3]
    if server.startswith("Do53:"):  # dnspython names a nameserver "Do53:<ip>@<port>"
        server = server[5:].rsplit("@", 1)[0]
    if isinstance(what, str):  # an rcode: the server answered
        return what.lower(), f"{server}#{port} answered {what}"
    if isinstance(what, dns.exception.Timeout):
        return "timeout", f"{server}#{port} timed out"
    if isinstance(what, OSError):
        return _ERRNO_CODES.get(what.errno, "network_error"), f"{server}#{port}: {what.strerror or what}"
    if isinstance(what, EOFError):
        return "connection_closed", f"{server}#{port} closed the connection"
    return "resolver_error", f"{server}#{port}: {what.__class__.__name__}"


def _nameserver_failure(rdtype, exc) -> tuple[str, str]:
    """What really happened when no nameserver answered (not a blanket "SERVFAIL or REFUSED")."""
    found = [_server_error(e) for e in (exc.kwargs.get("errors") or [])]
    if not found:
        return "resolver_error", f"{rdtype}: no nameserver answered"
    codes = {c for c, _ in found}
    return (codes.pop() if len(codes) == 1 else "resolver_error",
            f"{rdtype}: " + ", ".join(dict.fromkeys(t for _, t in found)))


def _timeout_text(exc) -> str:
    found = [_server_error(e)[1] for e in (exc.kwargs.get("errors") or [])] if hasattr(exc, "kwargs") else []
    return "timed out" + (f" ({', '.join(dict.fromkeys(found))})" if found else "")


def resolve_target(host: str, *, allowed_networks, nameservers: list[str] | None = None,
                   timeout: float = RESOLVE_TIMEOUT_DEFAULT, allowed_domains=()) -> Target:
    """Validate ``host``, resolve it once (A then AAAA), check every address, return the first.

    IPv4 is preferred when the name has both.  Raises TargetError (syntax), TargetRefused (a
    resolved address is special-purpose and not allowed) or TargetUnresolvable.
    """
    if not isinstance(host, str):
        raise TargetError("host must be a string")
    ip = parse_address(host)
    if ip is not None:
        check_address(ip, allowed_networks)
        return Target(host=str(ip), address=str(ip), family=ip.version)
    name = validate_hostname(host, allowed_domains)
    deadline = time.monotonic() + timeout
    resolver = _resolver(nameservers, timeout)
    addresses: list = []
    errors: list[tuple[str, str]] = []   # (code, text)
    for rdtype in ("A", "AAAA"):
        left = deadline - time.monotonic()
        if left <= 0:
            errors.append(("timeout", f"{rdtype}: timed out"))
            break
        resolver.lifetime = left
        try:
            answer = resolver.resolve(dns.name.from_text(name), rdtype, search=False,
                                      raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            raise TargetUnresolvable(f"cannot resolve {name}: NXDOMAIN (no such domain)", "nxdomain") from None
        except dns.resolver.NoNameservers as exc:
            errors.append(_nameserver_failure(rdtype, exc))
            continue
        except dns.exception.Timeout as exc:
            errors.append(("timeout", f"{rdtype}: {_timeout_text(exc)}"))
            continue
        except dns.exception.DNSException as exc:
            errors.append(("resolver_error", f"{rdtype}: {exc.__class__.__name__}"))
            continue
        if answer.rrset is not None:
            for rr in answer.rrset:
                addresses.append(ipaddress.ip_address(rr.address))
    if not addresses:
        if not errors:
            raise TargetUnresolvable(f"cannot resolve {name}: no A or AAAA records", "no_address")
        codes = [c for c, _ in errors]
        raise TargetUnresolvable(f"cannot resolve {name}: " + "; ".join(t for _, t in errors), codes[0])
    for ip in addresses:
        check_address(ip, allowed_networks)
    first = next((a for a in addresses if a.version == 4), addresses[0])
    return Target(host=name, address=str(first), family=first.version)
