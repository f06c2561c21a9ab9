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
    "SPECIAL_V4", "SPECIAL_V6", "parse_networks", "validate_hostname", "normalize_domain",
    "parse_address", "check_address", "special_purpose", "resolve_target",
]


class TargetError(ValueError):
    """Not a usable host: bad syntax, non-canonical numeric spelling or a refused name form (400)."""


class TargetRefused(Exception):
    """The target is, or resolves to, a special-purpose address outside PROBE_ALLOWED_NETWORKS (403)."""


class TargetUnresolvable(Exception):
    """A valid name with no A/AAAA record (NXDOMAIN, no data, timeout) - the probe ran and failed."""


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


def special_purpose(address) -> str | None:
    """Why ``address`` is special-purpose (a description), or None if it is ordinary global unicast.

    IPv4 addresses embedded in IPv4-mapped, NAT64 (64:ff9b::/96), 6to4 and Teredo (server and
    client) addresses are checked as IPv4.  IPv6 outside 2000::/3 that no row names is "reserved".
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
    """(IPv4Address, label) pairs embedded in a translation/tunnel IPv6 address."""
    n = int(ip)
    if ip in _MAPPED:
        yield ipaddress.IPv4Address(n & 0xFFFFFFFF), "IPv4-mapped"
    elif ip in _NAT64:
        yield ipaddress.IPv4Address(n & 0xFFFFFFFF), "NAT64"
    elif ip in _6TO4:
        yield ipaddress.IPv4Address((n >> 80) & 0xFFFFFFFF), "6to4"
    elif ip in _TEREDO:
        yield ipaddress.IPv4Address((n >> 64) & 0xFFFFFFFF), "Teredo (server)"
        yield ipaddress.IPv4Address((n & 0xFFFFFFFF) ^ 0xFFFFFFFF), "Teredo (client)"


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
    candidates = [ip]
    if ip.version == 6:
        candidates += [v4 for v4, _ in _embedded_v4(ip)]
    for net in allowed_networks or ():
        for c in candidates:
            if c.version == net.version and c in net:
                return True
    return False


def check_address(address, allowed_networks) -> None:
    """Raise TargetRefused if ``address`` is special-purpose and not inside ``allowed_networks``."""
    ip = ipaddress.ip_address(address) if not isinstance(
        address, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else address
    why = special_purpose(ip)
    if why and not _allowed(ip, allowed_networks):
        raise TargetRefused(f"target address {ip} is not allowed: {why}")


# --------------------------------------------------------------------------------------------
# Syntax
# --------------------------------------------------------------------------------------------
# Anything inet_aton() would accept: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x).
_NUMERIC = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.I)
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_REFUSED_SUFFIXES = ("localhost", "local", "internal", "home.arpa", "onion", "invalid", "lan",
                     "intranet", "corp", "private")


def parse_address(text: str):
    """The IP address ``text`` spells canonically, or None if it is not an address at all.

    Raises TargetError for numeric spellings that are not canonical addresses (``2130706433``,
    ``0x7f.1``, ``127.1``, ``0177.0.0.1``, ``127.000.0.1``) and for IPv6 scope ids.
    """
    s = text.strip()
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


def validate_hostname(host: str) -> str:
    """Syntax check of a probe target name; returns the normalized ASCII form.

    Refuses single-label names, ``localhost``/``*.localhost``, ``.local``, ``.internal`` and
    other private-use suffixes, numeric spellings and all-numeric top labels.
    """
    if not isinstance(host, str) or not host.strip():
        raise TargetError("host must be a non-empty string")
    h = host.strip()
    if len(h) > 1024:
        raise TargetError("host too long")
    if parse_address(h) is not None:  # raises on non-canonical numeric spellings
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
    if len(labels) < 2:
        raise TargetError(f"single-label hostname {name!r} is not accepted; use a fully qualified name")
    if labels[-1].isdigit() or _NUMERIC.match(name):
        raise TargetError(f"non-canonical numeric address {host!r}")
    for suffix in _REFUSED_SUFFIXES:
        if name == suffix or name.endswith("." + suffix):
            raise TargetError(f"hostname {name!r} is in a local-use or special domain (.{suffix})")
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


def resolve_target(host: str, *, allowed_networks, nameservers: list[str] | None = None,
                   timeout: float = RESOLVE_TIMEOUT_DEFAULT) -> Target:
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
    name = validate_hostname(host)
    deadline = time.monotonic() + timeout
    resolver = _resolver(nameservers, timeout)
    addresses: list = []
    errors = []
    for rdtype in ("A", "AAAA"):
        left = deadline - time.monotonic()
        if left <= 0:
            errors.append(f"{rdtype}: timeout")
            break
        resolver.lifetime = left
        try:
            answer = resolver.resolve(dns.name.from_text(name), rdtype, search=False,
                                      raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            raise TargetUnresolvable(f"cannot resolve {name}: NXDOMAIN (no such domain)") from None
        except dns.resolver.NoNameservers as exc:
            errors.append(f"{rdtype}: no nameserver answered (SERVFAIL or REFUSED)")
            continue
        except dns.exception.Timeout:
            errors.append(f"{rdtype}: timeout")
            continue
        except dns.exception.DNSException as exc:
            errors.append(f"{rdtype}: {exc.__class__.__name__}")
            continue
        if answer.rrset is not None:
            for rr in answer.rrset:
                addresses.append(ipaddress.ip_address(rr.address))
    if not addresses:
        detail = "; ".join(errors) if errors else "no A or AAAA records"
        raise TargetUnresolvable(f"cannot resolve {name}: {detail}")
    for ip in addresses:
        check_address(ip, allowed_networks)
    first = next((a for a in addresses if a.version == 4), addresses[0])
    return Target(host=name, address=str(first), family=first.version)
