"""traceroute over IPv4 and IPv6, output like Debian's ``traceroute -n``.

Modes:
  * ``udp`` (default, like traceroute's default): UDP datagrams to ports 33434, 33435, ... with
    increasing TTL, one probe port per probe.  The ICMP time-exceeded / port-unreachable answers
    are read from the UDP socket's error queue (``IP_RECVERR`` / ``IPV6_RECVERR``, the technique
    tracepath and traceroute's default method use): no privilege needed, and the kernel hands each
    socket only the errors for its own datagrams.  ``reader="raw"`` reads them from a raw ICMP
    socket instead (root / CAP_NET_RAW), matching on the quoted UDP ports.
  * ``icmp``: ICMP echo requests with increasing TTL (traceroute -I); raw ICMP socket, or the
    unprivileged ICMP datagram socket plus its error queue when ping_group_range allows.

Up to 16 probes are in flight at once (traceroute -N 16), each waits at most ``timeout``; once the
destination (or an unreachable) answers at TTL n, nothing beyond n is sent.  The whole trace never
runs past ``total_timeout``.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
import time

from . import limits as L
from .icmp import (
    ICMP6_DEST_UNREACH,
    ICMP6_ECHO_REPLY,
    ICMP6_ECHO_REQUEST,
    ICMP6_TIME_EXCEEDED,
    ICMP_DEST_UNREACH,
    ICMP_ECHO,
    ICMP_ECHOREPLY,
    ICMP_TIME_EXCEEDED,
    IP_RECVERR,
    IPV6_RECVERR,
    IPV6_UNICAST_HOPS,
    MSG_ERRQUEUE,
    SO_TIMESTAMPNS,
    SOL_IP,
    UNREACH_V4,
    UNREACH_V6,
    PrivilegeError,
    attach_bpf,
    echo_filter,
    echo_request,
    next_identifier,
    open_icmp_socket,
    parse_cmsgs,
    parse_sock_extended_err,
    rtt_ms,
    sockaddr,
    udp_error_filter,
    wait_readable,
)
from .results import ProbeResult
from .targets import Target

DATA_LEN = 32  # traceroute's default packet size: 60-byte IPv4 / 80-byte IPv6
_PENDING_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED, errno.EPROTO,
                   errno.EACCES, errno.EMSGSIZE, errno.ENOPROTOOPT, errno.EOPNOTSUPP}


class _Probe:
    __slots__ = ("index", "ttl", "port", "seq", "sent_real", "sent_mono", "done", "address", "rtt",
                 "note", "final")

    def __init__(self, index, ttl):
        self.index, self.ttl = index, ttl
        self.port = L.TRACE_BASE_PORT + index
        self.seq = index + 1
        self.sent_real = self.sent_mono = None
        self.done = False
        self.address = self.rtt = None
        self.note = ""
        self.final = False


def traceroute(target: Target, *, max_hops=L.TRACE_MAX_HOPS_DEFAULT, probes_per_hop=L.TRACE_PROBES_DEFAULT,
               timeout=L.TRACE_TIMEOUT_DEFAULT, mode="udp", total_timeout=L.TRACE_TOTAL_DEFAULT,
               reader: str = "auto") -> ProbeResult:
    max_hops = L.check_range("max_hops", max_hops, L.TRACE_MAX_HOPS_MIN, L.TRACE_MAX_HOPS_MAX, int)
    probes_per_hop = L.check_range("probes_per_hop", probes_per_hop, L.TRACE_PROBES_MIN,
                                   L.TRACE_PROBES_MAX, int)
    timeout = L.check_range("timeout", timeout, L.TRACE_TIMEOUT_MIN, L.TRACE_TIMEOUT_MAX)
    total_timeout = L.check_range("total_timeout", total_timeout, L.TRACE_TOTAL_MIN, L.TRACE_TOTAL_MAX)
    if mode not in ("udp", "icmp"):
        raise ValueError("mode must be udp or icmp")
    if reader not in ("auto", "recverr", "raw"):
        raise ValueError("reader must be auto, recverr or raw")
    family, addr = target.family, target.address
    size = (20 if family == 4 else 40) + 8 + DATA_LEN
    head = f"traceroute to {target.host} ({addr}), {max_hops} hops max, {size} byte packets"
    base = {"address": addr, "host": target.host, "family": family, "max_hops": max_hops,
            "probes_per_hop": probes_per_hop, "timeout": timeout, "mode": mode}
    try:
        tracer = (_UdpTracer if mode == "udp" else _IcmpTracer)(family, addr, reader)
    except PrivilegeError as exc:
        return ProbeResult(False, f"{head}\ntraceroute: {exc.strerror}",
                           {**base, "hops": [], "reached": False, "error": "insufficient_privilege",
                            "message": exc.strerror})
    try:
        probes, reached_ttl, stopped = _run(tracer, max_hops, probes_per_hop, timeout, total_timeout)
    finally:
        tracer.close()
    return _render(head, base, probes, probes_per_hop, reached_ttl, stopped, max_hops, tracer.kind,
                   total_timeout)


def _run(tracer, max_hops, per_hop, timeout, total_timeout):
    start = time.monotonic()
    deadline = start + total_timeout
    probes = [_Probe(i, 1 + i // per_hop) for i in range(max_hops * per_hop)]
    by_key = {}
    nxt = 0
    final_ttl = None   # lowest TTL that answered from the destination or with an unreachable
    stopped = False
    readable = False
    while True:
        # The clock is read first, then every answer queued by then: a probe is timed out only
        # when no answer to it had arrived at ``now``, even if this process was paused (a busy
        # host) between the kernel queueing an answer and this loop reading it.
        now = time.monotonic()
        if readable or wait_readable(tracer.sock, 0):
            final_ttl = _take_answers(tracer, by_key, final_ttl)
        if now >= deadline:
            stopped = True
            break
        limit_ttl = final_ttl if final_ttl is not None else max_hops
        # time out probes
        for p in probes[:nxt]:
            if not p.done and now - p.sent_mono >= timeout:
                p.done = True
        in_flight = sum(1 for p in probes[:nxt] if not p.done)
        while nxt < len(probes) and in_flight < L.TRACE_SIM_PROBES and probes[nxt].ttl <= limit_ttl:
            p = probes[nxt]
            try:
                tracer.send(p)
                by_key[tracer.key(p)] = p
            except OSError as exc:
                p.sent_real, p.sent_mono = time.time_ns(), time.monotonic()
                p.done, p.note = True, f"!<{exc.errno}>"
                if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES, errno.EPERM):
                    p.final = True
                    final_ttl = p.ttl if final_ttl is None else min(final_ttl, p.ttl)
            nxt += 1
            in_flight += 1
        limit_ttl = final_ttl if final_ttl is not None else max_hops
        relevant = [p for p in probes[:nxt] if p.ttl <= limit_ttl]
        if all(p.done for p in relevant) and (nxt >= len(probes) or probes[nxt].ttl > limit_ttl):
            break
        pending = [p for p in probes[:nxt] if not p.done]
        wake = min([p.sent_mono + timeout for p in pending] + [deadline])
        readable = wait_readable(tracer.sock, wake - time.monotonic())
    return probes[:nxt], final_ttl, stopped


def _take_answers(tracer, by_key, final_ttl):
    """Match the queued answers to their probes; the lowest final TTL so far."""
    for key, address, rx, kind, code in tracer.receive():
        p = by_key.get(key)
        if p is None or p.done:
            continue
        p.done = True
        p.address = address
        p.rtt = rtt_ms(p.sent_real, p.sent_mono, rx)
        if kind == "reached":
            p.final = True
        elif kind == "unreach":
            p.note, p.final = code, True
        if p.final:
            final_ttl = p.ttl if final_ttl is None else min(final_ttl, p.ttl)
    return final_ttl


def _render(head, base, probes, per_hop, reached_ttl, stopped, max_hops, kind, total_timeout):
    lines = [head]
    hops = []
    last_ttl = reached_ttl if reached_ttl is not None else max_hops
    reached = False
    for ttl in range(1, last_ttl + 1):
        hop_probes = [p for p in probes if p.ttl == ttl]
        if not hop_probes:
            break
        line = f"{ttl:2d} "
        prev = None
        data_probes = []
        for p in hop_probes:
            if p.address is None:
                line += " *" if not p.note else f" * {p.note}"
                data_probes.append({"address": None})
                continue
            if p.address != prev:
                line += f" {p.address}"
                prev = p.address
            line += f"  {p.rtt:.3f} ms"
            if p.note:
                line += f" {p.note}"
            entry = {"address": p.address, "rtt_ms": round(p.rtt, 3)}
            if p.note:
                entry["note"] = p.note
            data_probes.append(entry)
            if p.final and not p.note:
                reached = True
        line += " *" * (per_hop - len(hop_probes))
        data_probes += [{"address": None}] * (per_hop - len(hop_probes))
        lines.append(line)
        hops.append({"ttl": ttl, "probes": data_probes})
    data = {**base, "socket": kind, "hops": hops, "reached": reached}
    if not reached:
        if stopped:
            why = f"trace stopped: total time bound of {total_timeout:g} s reached"
            data["error"] = "time_bound"
        elif reached_ttl is not None:
            why = "destination unreachable"
            data["error"] = "unreachable"
        else:
            why = f"destination not reached within {max_hops} hops"
            data["error"] = "not_reached"
        data["message"] = why
        lines.append(f"({why})")
    return ProbeResult(reached, "\n".join(lines), data)


def _set_ttl(sock, family, ttl):
    """Set the TTL (IPv4) or hop limit (IPv6) of the next packets sent on ``sock``."""
    if family == 4:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, ttl)


def _send(sock, data, dest, p):
    for attempt in range(3):
        p.sent_real, p.sent_mono = time.time_ns(), time.monotonic()
        try:
            sock.sendto(data, dest)
            return
        except OSError as exc:
            # With IP_RECVERR an ICMP error for an earlier probe sets the socket's pending
            # error, and the next send reports it (and clears it) instead of sending: retry.
            # A real local error (no route) fails again.
            if attempt == 2 or exc.errno not in _PENDING_ERRNOS:
                raise


def _unreach_note(family, code):
    table = UNREACH_V4 if family == 4 else UNREACH_V6
    return table.get(code, (f"!<{code}>", ""))[0]


class _UdpTracer:
    """UDP probes; errors read from the error queue (default) or a raw ICMP socket."""

    def __init__(self, family, addr, reader):
        self.family, self.addr = family, addr
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        self.raw = None
        if reader == "raw":
            allow = ((ICMP_TIME_EXCEEDED, ICMP_DEST_UNREACH) if family == 4
                     else (ICMP6_TIME_EXCEEDED, ICMP6_DEST_UNREACH))
            self.raw, _ = open_icmp_socket(family, "raw", allow)
        self.udp = socket.socket(af, socket.SOCK_DGRAM)
        try:
            self.udp.setblocking(False)
            if self.raw is None:
                if family == 4:
                    self.udp.setsockopt(SOL_IP, IP_RECVERR, 1)
                else:
                    self.udp.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
                self.udp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.udp.bind(sockaddr(family, "0.0.0.0" if family == 4 else "::", 0))
        except OSError:
            self.close()
            raise
        self.local_port = self.udp.getsockname()[1]
        if self.raw is not None:
            # only the errors quoting this trace's datagrams (keyed by its source port) are queued
            attach_bpf(self.raw, udp_error_filter(family, self.local_port))
        self.sock = self.raw if self.raw is not None else self.udp
        self.kind = "udp+raw" if self.raw is not None else "udp+recverr"
        self.payload = os.urandom(8) + b"ProbeOps-traceroute-----"[:DATA_LEN - 8]

    def key(self, p):
        return p.port

    def send(self, p):
        _set_ttl(self.udp, self.family, p.ttl)
        _send(self.udp, self.payload, sockaddr(self.family, self.addr, p.port), p)

    def receive(self):
        if self.raw is not None:
            yield from self._receive_raw()
            return
        for _ in range(256):
            try:
                data, anc, _fl, name = self.udp.recvmsg(512, 1024, MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            rx = parse_cmsgs(anc)
            if "recverr" not in rx:
                continue
            origin, typ, code, offender, _e = parse_sock_extended_err(rx["recverr"], self.family)
            if origin not in (2, 3) or not name:
                continue
            if name[0].split("%")[0] != self.addr:
                continue
            kind, note = self._classify(typ, code, offender)
            yield name[1], offender, rx, kind, note
        # drain ordinary datagrams (nothing should answer a probe port; never let them pile up)
        for _ in range(16):
            try:
                self.udp.recvmsg(512, 256)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue

    def _classify(self, typ, code, offender):
        if self.family == 4:
            if typ == ICMP_TIME_EXCEEDED:
                return "hop", ""
            if typ == ICMP_DEST_UNREACH:
                return ("reached", "") if code == 3 else ("unreach", _unreach_note(4, code))
        else:
            if typ == ICMP6_TIME_EXCEEDED:
                return "hop", ""
            if typ == ICMP6_DEST_UNREACH:
                return ("reached", "") if code == 4 else ("unreach", _unreach_note(6, code))
        return "hop", f"!<{typ}.{code}>"

    def _receive_raw(self):
        for _ in range(256):
            try:
                data, anc, _fl, src = self.raw.recvmsg(1500, 512)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            rx = parse_cmsgs(anc)
            src_ip = src[0].split("%")[0]
            if self.family == 4:
                ihl = (data[0] & 0x0F) * 4
                icmp = data[ihl:]
                if len(icmp) < 8 + 20 + 8:
                    continue
                typ, code = icmp[0], icmp[1]
                inner = icmp[8:]
                iihl = (inner[0] & 0x0F) * 4
                if inner[9] != socket.IPPROTO_UDP or socket.inet_ntoa(inner[16:20]) != self.addr:
                    continue
                udp = inner[iihl:iihl + 8]
            else:
                if len(data) < 8 + 40 + 8:
                    continue
                typ, code = data[0], data[1]
                inner = data[8:]
                if inner[6] != socket.IPPROTO_UDP or socket.inet_ntop(socket.AF_INET6, inner[24:40]) != self.addr:
                    continue
                udp = inner[40:48]
            if len(udp) < 8:
                continue
            sport, dport = struct.unpack("!HH", udp[:4])
            if sport != self.local_port:
                continue  # another trace's probe
            kind, note = self._classify(typ, code, src_ip)
            yield dport, src_ip, rx, kind, note

    def close(self):
        for s in (self.udp, self.raw):
            if s is not None:
                s.close()


class _IcmpTracer:
    """ICMP echo probes (traceroute -I)."""

    def __init__(self, family, addr, reader):
        self.family, self.addr = family, addr
        allow = ((ICMP_ECHOREPLY, ICMP_TIME_EXCEEDED, ICMP_DEST_UNREACH) if family == 4 else
                 (ICMP6_ECHO_REPLY, ICMP6_TIME_EXCEEDED, ICMP6_DEST_UNREACH))
        method = "dgram" if reader == "recverr" else ("raw" if reader == "raw" else "auto")
        self.sock, kind = open_icmp_socket(family, method, allow)
        self.kind = f"icmp+{kind}"
        self.dgram = kind == "dgram"
        self.ident = next_identifier()
        self.cookie = os.urandom(8)
        if not self.dgram:
            attach_bpf(self.sock, echo_filter(family, self.ident))  # this trace's replies and errors only
        if self.dgram:
            self.sock.setsockopt(*((SOL_IP, IP_RECVERR) if family == 4 else (socket.IPPROTO_IPV6, IPV6_RECVERR)), 1)
            self.sock.bind(sockaddr(family, "0.0.0.0" if family == 4 else "::", 0))

    def key(self, p):
        return p.seq

    def send(self, p):
        _set_ttl(self.sock, self.family, p.ttl)
        payload = (self.cookie + b"ProbeOps-traceroute-probe-data--")[:DATA_LEN]
        pkt = echo_request(self.family, self.ident, p.seq, payload)
        _send(self.sock, pkt, sockaddr(self.family, self.addr), p)

    def _classify(self, typ, code):
        if self.family == 4:
            if typ == ICMP_TIME_EXCEEDED:
                return "hop", ""
            return "unreach", _unreach_note(4, code)
        if typ == ICMP6_TIME_EXCEEDED:
            return "hop", ""
        return "unreach", _unreach_note(6, code)

    def receive(self):
        for _ in range(256):
            try:
                if self.dgram:
                    try:
                        data, anc, _fl, src = self.sock.recvmsg(1500, 512)
                    except BlockingIOError:
                        data, anc, _fl, src = self.sock.recvmsg(1500, 1024, MSG_ERRQUEUE)
                        rx = parse_cmsgs(anc)
                        if "recverr" in rx and len(data) >= 8:
                            origin, typ, code, offender, _e = parse_sock_extended_err(rx["recverr"], self.family)
                            if origin in (2, 3):
                                seq = struct.unpack("!H", data[6:8])[0]
                                kind, note = self._classify(typ, code)
                                yield seq, offender, rx, kind, note
                        continue
                else:
                    data, anc, _fl, src = self.sock.recvmsg(1500, 512)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            rx = parse_cmsgs(anc)
            src_ip = src[0].split("%")[0]
            icmp = data
            if self.family == 4 and not self.dgram:
                icmp = data[(data[0] & 0x0F) * 4:]
            if len(icmp) < 8:
                continue
            typ, code, _ck, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
            if typ in (ICMP_ECHOREPLY, ICMP6_ECHO_REPLY) and (typ == ICMP_ECHOREPLY) == (self.family == 4):
                if src_ip == self.addr and (self.dgram or rid == self.ident) and icmp[8:16] == self.cookie:
                    yield rseq, src_ip, rx, "reached", ""
                continue
            if self.dgram:
                continue
            inner = icmp[8:]
            if self.family == 4:
                if len(inner) < 28 or inner[9] != socket.IPPROTO_ICMP:
                    continue
                if socket.inet_ntoa(inner[16:20]) != self.addr:
                    continue
                q = inner[(inner[0] & 0x0F) * 4:][:8]
                want = ICMP_ECHO
            else:
                if len(inner) < 48 or inner[6] != socket.IPPROTO_ICMPV6:
                    continue
                if socket.inet_ntop(socket.AF_INET6, inner[24:40]) != self.addr:
                    continue
                q = inner[40:48]
                want = ICMP6_ECHO_REQUEST
            if len(q) < 8:
                continue
            qt, _c, _k, qid, qseq = struct.unpack("!BBHHH", q)
            if qt == want and qid == self.ident:
                kind, note = self._classify(typ, code)
                yield qseq, src_ip, rx, kind, note

    def close(self):
        self.sock.close()
