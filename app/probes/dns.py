"""DNS lookup (dnspython), dig-style text plus the sections as data.

One query (RD set, EDNS0 with a 1232-byte payload, like dig) to each configured server in turn
until one answers, all inside one deadline; a truncated UDP answer is retried over TCP.
NXDOMAIN, SERVFAIL, REFUSED (any rcode but NOERROR), timeouts and network errors give
``success: False`` with ``data.error`` naming the cause (``timeout``, ``network_unreachable``,
``connection_refused``, ``connection_closed``, ...) and ``data.attempts`` each server's failure.
"""
from __future__ import annotations

import errno
import ipaddress
import socket
import time
from datetime import UTC, datetime

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename

from . import limits as L
from .results import ProbeResult
from .targets import TargetError, normalize_domain


def _rr_list(section):
    out = []
    for rrset in section:
        for rd in rrset:
            out.append({"name": rrset.name.to_text(), "ttl": rrset.ttl,
                        "class": dns.rdataclass.to_text(rrset.rdclass),
                        "type": dns.rdatatype.to_text(rrset.rdtype), "value": rd.to_text()})
    return out


def _rr_lines(section):
    lines = []
    for rrset in section:
        for rd in rrset:
            name = rrset.name.to_text()
            lines.append(f"{name}\t{_tabs(name)}{rrset.ttl}\t{dns.rdataclass.to_text(rrset.rdclass)}\t"
                         f"{dns.rdatatype.to_text(rrset.rdtype)}\t{rd.to_text()}")
    return lines


def _tabs(name: str) -> str:
    # dig pads the owner name to 24 columns with tabs
    return "\t" * max(0, (24 - len(name) - 1) // 8) if len(name) < 23 else ""


_ERRNO_CODES = {errno.ENETUNREACH: "network_unreachable", errno.EHOSTUNREACH: "host_unreachable",
                errno.ECONNREFUSED: "connection_refused", errno.ECONNRESET: "connection_reset",
                errno.EACCES: "permission_denied", errno.EPERM: "permission_denied"}


def _failure(server, port, proto, exc) -> dict:
    """One server's failure as data: an error code and a message naming what happened."""
    if isinstance(exc, dns.exception.Timeout | socket.timeout | TimeoutError):
        code, message = "timeout", "timed out"
    elif isinstance(exc, EOFError):
        code, message = "connection_closed", "the server closed the connection without an answer"
    elif isinstance(exc, OSError):
        code = _ERRNO_CODES.get(exc.errno, "network_error")
        message = exc.strerror or str(exc) or code.replace("_", " ")
    else:
        code, message = "bad_response", f"{exc.__class__.__name__}: {exc}"
    if proto == "tcp":
        message = f"the UDP answer was truncated (TC=1) and the TCP retry failed: {message}"
    return {"server": server, "port": port, "protocol": proto, "error": code, "message": message}


def _connected_udp(server, port) -> socket.socket:
    """A non-blocking UDP socket connected to the server, so an ICMP port / host unreachable is
    reported as such (ECONNREFUSED, EHOSTUNREACH) instead of ending as a timeout - as dig does."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((server, port))
    except OSError:
        sock.close()
        raise
    return sock


def system_nameservers() -> list[str]:
    return list(dns.resolver.Resolver(configure=True).nameservers)


def dns_lookup(domain: str, *, record_type="A", nameservers: list[str] | None = None, port=53,
               timeout=L.DNS_TIMEOUT_DEFAULT) -> ProbeResult:
    """Query ``record_type`` for ``domain`` (an IP address queries PTR of its reverse name).

    ``nameservers``: IP addresses, already checked by the caller's guard; None = the system's
    resolv.conf.  Raises TargetError for a bad domain, ValueError for a bad type or bound.
    """
    rtype = str(record_type or "A").upper()
    if rtype not in L.DNS_RECORD_TYPES:
        raise ValueError(f"record_type must be one of {', '.join(L.DNS_RECORD_TYPES)}")
    timeout = L.check_range("timeout", timeout, L.DNS_TIMEOUT_MIN, L.DNS_TIMEOUT_MAX)
    port = L.check_range("port", port, 1, 65535, int)
    if not isinstance(domain, str):
        raise TargetError("domain must be a string")
    ptr_of = None
    try:
        ip = ipaddress.ip_address(domain.strip().strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        ptr_of = str(ip)
        qname = dns.reversename.from_address(str(ip))
        rtype = "PTR"
    else:
        qname = dns.name.from_text(normalize_domain(domain))
    servers = list(nameservers) if nameservers else system_nameservers()
    servers = [str(ipaddress.ip_address(s)) for s in servers][:L.DNS_MAX_NAMESERVERS]
    if not servers:
        raise ValueError("no nameserver configured")

    q = dns.message.make_query(qname, dns.rdatatype.from_text(rtype), use_edns=0,
                               payload=L.DNS_EDNS_PAYLOAD)
    q.flags |= dns.flags.RD
    deadline = time.monotonic() + timeout
    attempts: list[str] = []        # dig-style ";; communications error ..." lines
    failures: list[dict] = []       # the same, as data: server, protocol, error code, message
    response = server = None
    used_tcp = False
    elapsed = 0.0
    for i, srv in enumerate(servers):
        left = deadline - time.monotonic()
        if left <= 0.01:
            break
        share = left / (len(servers) - i)  # leave time for the servers after this one
        proto = "udp"
        try:
            t0 = time.monotonic()
            with _connected_udp(srv, port) as sock:
                reply = dns.query.udp(q, srv, timeout=share, port=port, ignore_unexpected=True, sock=sock)
            tcp = False
            if reply.flags & dns.flags.TC:  # truncated: ask again over TCP, same deadline
                proto = "tcp"
                left = deadline - time.monotonic()
                if left <= 0:
                    raise dns.exception.Timeout
                reply = dns.query.tcp(q, srv, timeout=left, port=port)
                tcp = True
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            failure = _failure(srv, port, proto, exc)
            failures.append(failure)
            attempts.append(f";; communications error to {srv}#{port}: {failure['message']}")
            continue
        response, server, used_tcp, elapsed = reply, srv, tcp, time.monotonic() - t0
        break
    qtext = f"; <<>> ProbeOps DNS <<>> @{servers[0]} {qname.to_text()} {rtype}"
    base = {"query": qname.to_text(), "record_type": rtype, "servers": servers, "port": port}
    if ptr_of:
        base["reverse_of"] = ptr_of
    if response is None:
        codes = {f["error"] for f in failures}
        code = codes.pop() if len(codes) == 1 else ("no_servers" if not failures else "servers_failed")
        detail = "; ".join(f"{f['server']}#{port} ({f['protocol'].upper()}): {f['message']}" for f in failures)
        message = "no servers could be reached" + (f": {detail}" if detail else " within the time bound")
        text = "\n".join([qtext, *attempts, ";; no servers could be reached"])
        return ProbeResult(False, text, {**base, "rcode": None, "flags": [], "answers": [],
                                         "authority": [], "additional": [], "server": None,
                                         "query_time_ms": None, "error": code, "message": message,
                                         "attempts": failures})
    rcode = dns.rcode.to_text(response.rcode())
    flags = [f.lower() for f in dns.flags.to_text(response.flags).split()]
    order = ["qr", "aa", "tc", "rd", "ra", "ad", "cd"]
    flags.sort(key=lambda f: order.index(f) if f in order else 99)
    query_ms = int(round(elapsed * 1000))
    wire = response.to_wire()
    lines = [qtext.replace(f"@{servers[0]}", f"@{server}"), ";; Got answer:"]
    lines.extend(attempts)
    lines.append(f";; ->>HEADER<<- opcode: {dns.opcode.to_text(response.opcode())}, status: {rcode}, "
                 f"id: {response.id}")
    nadd = sum(len(r) for r in response.additional) + (1 if response.edns >= 0 else 0)
    lines.append(f";; flags: {' '.join(flags)}; QUERY: {len(response.question)}, "
                 f"ANSWER: {sum(len(r) for r in response.answer)}, "
                 f"AUTHORITY: {sum(len(r) for r in response.authority)}, ADDITIONAL: {nadd}")
    if response.edns >= 0:
        lines += ["", ";; OPT PSEUDOSECTION:",
                  f"; EDNS: version: {response.edns}, flags:{' do' if response.ednsflags & dns.flags.DO else ''}; "
                  f"udp: {response.payload}"]
    lines += ["", ";; QUESTION SECTION:"]
    for rr in response.question:
        n = rr.name.to_text()
        lines.append(f";{n}\t{_tabs(n + ' ')}\t{dns.rdataclass.to_text(rr.rdclass)}\t"
                     f"{dns.rdatatype.to_text(rr.rdtype)}")
    for title, section in (("ANSWER", response.answer), ("AUTHORITY", response.authority),
                           ("ADDITIONAL", response.additional)):
        if section:
            lines += ["", f";; {title} SECTION:", *_rr_lines(section)]
    proto = "TCP" if used_tcp else "UDP"
    srv_text = f"{server}#{port}({server})"
    lines += ["", f";; Query time: {query_ms} msec", f";; SERVER: {srv_text} ({proto})",
              f";; WHEN: {datetime.now(UTC).strftime('%a %b %d %H:%M:%S UTC %Y')}",
              f";; MSG SIZE  rcvd: {len(wire)}"]
    answers = _rr_list(response.answer)
    data = {**base, "rcode": rcode, "flags": flags, "answers": answers,
            "authority": _rr_list(response.authority), "additional": _rr_list(response.additional),
            "query_time_ms": query_ms, "server": server, "protocol": proto.lower(),
            "truncated_udp": used_tcp, "size": len(wire), "attempts": failures}
    success = response.rcode() == dns.rcode.NOERROR
    if not success:
        data["error"] = rcode.lower()
        reason = {"NXDOMAIN": f"{qname.to_text()} does not exist (NXDOMAIN)",
                  "SERVFAIL": f"server {server} failed to answer (SERVFAIL)",
                  "REFUSED": f"server {server} refused the query (REFUSED)"}.get(rcode, f"status {rcode}")
        data["message"] = reason
        lines.insert(1, f";; {reason}")
    return ProbeResult(success, "\n".join(lines), data)
