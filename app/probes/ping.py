"""ICMP echo (ping) over IPv4 and IPv6, iputils-compatible output.

One probe = one socket, one identifier (process-unique, from a locked counter), one deadline.
Replies are matched on source address, identifier, sequence and an 8-byte random cookie in the
payload, so other processes' and other threads' echo replies are ignored even on a raw socket.
A raw socket also carries a BPF filter on the identifier (app.probes.icmp.echo_filter), so the
kernel does not even queue the others' replies on it: many pings in flight stay cheap.
"""
from __future__ import annotations

import errno
import math
import os
import socket
import struct
import time

from . import limits as L
from .icmp import (
    ICMP6_DEST_UNREACH,
    ICMP6_ECHO_REPLY,
    ICMP6_ECHO_REQUEST,
    ICMP6_PACKET_TOO_BIG,
    ICMP6_TIME_EXCEEDED,
    ICMP_DEST_UNREACH,
    ICMP_ECHO,
    ICMP_ECHOREPLY,
    ICMP_TIME_EXCEEDED,
    IP_RECVERR,
    IPV6_RECVERR,
    MSG_ERRQUEUE,
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
    wait_readable,
)
from .results import ProbeResult
from .targets import Target

_PENDING_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED, errno.EPROTO,
                   errno.EACCES, errno.EMSGSIZE}
_TEXT_V4 = {ICMP_TIME_EXCEEDED: "Time to live exceeded"}
_TEXT_V6 = {ICMP6_TIME_EXCEEDED: "Time exceeded: Hop limit", ICMP6_PACKET_TOO_BIG: "Packet too big"}


def _icmp_error_text(family, typ, code):
    if family == 4:
        if typ == ICMP_DEST_UNREACH:
            return UNREACH_V4.get(code, ("", f"Dest Unreachable, Bad Code: {code}"))[1]
        return _TEXT_V4.get(typ, f"ICMP type {typ} code {code}")
    if typ == ICMP6_DEST_UNREACH:
        return "Destination unreachable: " + UNREACH_V6.get(code, ("", f"code {code}"))[1]
    return _TEXT_V6.get(typ, f"ICMPv6 type {typ} code {code}")


def ping(target: Target, *, count=L.PING_COUNT_DEFAULT, interval=L.PING_INTERVAL_DEFAULT,
         timeout=L.PING_TIMEOUT_DEFAULT, payload_size=L.PING_PAYLOAD_DEFAULT,
         method: str = "auto") -> ProbeResult:
    """Ping ``target.address`` ``count`` times.

    ``timeout`` is the per-packet wait: a reply later than that is reported as late and not
    counted.  The probe never runs longer than ``(count - 1) * interval + timeout`` (+ a few ms).
    ``method``: "auto" (raw socket, else unprivileged ICMP datagram socket), "raw" or "dgram".
    """
    count = L.check_range("count", count, L.PING_COUNT_MIN, L.PING_COUNT_MAX, int)
    interval = L.check_range("interval", interval, L.PING_INTERVAL_MIN, L.PING_INTERVAL_MAX)
    timeout = L.check_range("timeout", timeout, L.PING_TIMEOUT_MIN, L.PING_TIMEOUT_MAX)
    payload_size = L.check_range("payload_size", payload_size, L.PING_PAYLOAD_MIN,
                                 L.PING_PAYLOAD_MAX, int)
    if method not in ("auto", "raw", "dgram"):
        raise ValueError("method must be auto, raw or dgram")
    family = target.family
    addr = target.address
    hdr_len = 20 if family == 4 else 40
    if family == 4:
        head = f"PING {target.host} ({addr}) {payload_size}({payload_size + 8 + hdr_len}) bytes of data."
    else:
        head = f"PING {target.host}({addr}) {payload_size} data bytes"
    base = {"address": addr, "host": target.host, "family": family, "count": count,
            "interval": interval, "timeout": timeout, "payload_size": payload_size}
    allow = ((ICMP_ECHOREPLY, ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED) if family == 4 else
             (ICMP6_ECHO_REPLY, ICMP6_DEST_UNREACH, ICMP6_TIME_EXCEEDED, ICMP6_PACKET_TOO_BIG))
    try:
        sock, kind = open_icmp_socket(family, method, allow)
    except PrivilegeError as exc:
        return ProbeResult(False, f"{head}\nping: {exc.strerror}",
                           {**base, "error": "insufficient_privilege", "message": exc.strerror})
    try:
        return _run(sock, kind, target, head, base, count, interval, timeout, payload_size)
    finally:
        sock.close()


def _run(sock, kind, target, head, base, count, interval, timeout, payload_size):
    family, addr = target.family, target.address
    ident = next_identifier()
    cookie = os.urandom(8)
    if kind == "raw":
        # the kernel then queues only this probe's replies and errors, not every ICMP packet
        attach_bpf(sock, echo_filter(family, ident))
    if kind == "dgram":
        # the kernel picks the identifier (the socket's "port") and demultiplexes replies by it
        sock.setsockopt(*((SOL_IP, IP_RECVERR) if family == 4 else (socket.IPPROTO_IPV6, IPV6_RECVERR)), 1)
        sock.bind(sockaddr(family, "0.0.0.0" if family == 4 else "::", 0))
    dest = sockaddr(family, addr)
    sent: dict[int, tuple[int, float]] = {}      # seq -> (realtime ns, monotonic s)
    got: dict[int, float] = {}                    # seq -> rtt of the first reply
    all_rtts: list[float] = []                    # every counted reply, duplicates included (iputils)
    lines, packets, errors = [], [], []
    duplicates = late = 0
    start = time.monotonic()
    hard_deadline = start + (count - 1) * interval + timeout + 0.05
    next_send = start
    seq = 0
    last_send_mono = start

    def handle_reply(rseq, ttl, nbytes, rx, src):
        nonlocal duplicates, late
        s_real, s_mono = sent[rseq]
        rtt = rtt_ms(s_real, s_mono, rx)
        if rtt > timeout * 1000.0:
            late += 1
            packets.append({"seq": rseq, "ttl": ttl, "rtt_ms": round(rtt, 3), "bytes": nbytes,
                            "late": True})
            lines.append(f"{nbytes} bytes from {src}: icmp_seq={rseq} ttl={ttl} "
                         f"time={_fmt_rtt(rtt)} ms (late, not counted)")
            return
        dup = rseq in got
        if dup:
            duplicates += 1
        else:
            got[rseq] = rtt
        all_rtts.append(rtt)
        pkt = {"seq": rseq, "ttl": ttl, "rtt_ms": round(rtt, 3), "bytes": nbytes}
        if dup:
            pkt["duplicate"] = True
        packets.append(pkt)
        lines.append(f"{nbytes} bytes from {src}: icmp_seq={rseq} ttl={ttl} time={_fmt_rtt(rtt)} ms"
                     + (" (DUP!)" if dup else ""))

    def handle_error(rseq, src, typ, code):
        if rseq not in sent:
            return
        msg = _icmp_error_text(family, typ, code)
        errors.append({"seq": rseq, "from": src, "type": typ, "code": code, "message": msg})
        lines.append(f"From {src} icmp_seq={rseq} {msg}")

    def drain():
        for _ in range(256):
            try:
                if kind == "dgram":
                    try:
                        data, anc, _flags, src = sock.recvmsg(65535, 512)
                    except BlockingIOError:
                        data, anc, _flags, src = sock.recvmsg(65535, 512, MSG_ERRQUEUE)
                        _dgram_error(family, data, anc, cookie, handle_error)
                        continue
                else:
                    data, anc, _flags, src = sock.recvmsg(65535, 512)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                # an error queued on the socket (e.g. unreachable on dgram sockets) - read it
                continue
            rx = parse_cmsgs(anc)
            src_ip = src[0]
            if kind == "raw" and family == 4:
                _raw4(data, src_ip, rx, ident, cookie, addr, sent, handle_reply, handle_error)
            elif kind == "raw":
                _icmp6(data, src_ip, rx, ident, cookie, addr, sent, handle_reply, handle_error, True)
            else:
                _icmp_dgram(family, data, src_ip, rx, cookie, addr, sent, handle_reply)

    readable = False
    while True:
        # The clock is read first, then every reply queued by then: if this process was paused (a
        # busy host) while replies arrived, they still count, and lateness is judged by the
        # kernel's receive timestamp, not by when this loop got to read them.
        now = time.monotonic()
        if readable or wait_readable(sock, 0):
            drain()
        readable = False
        if seq < count and now >= next_send:
            seq += 1
            payload = (cookie + struct.pack("!Q", seq) + bytes(i & 0xFF for i in range(payload_size)))[:payload_size]
            pkt = echo_request(family, ident, seq, payload)
            sent[seq] = (time.time_ns(), time.monotonic())
            last_send_mono = sent[seq][1]
            try:
                for attempt in range(3):
                    try:
                        sock.sendto(pkt, dest)
                        break
                    except OSError as exc:
                        # datagram sockets with IP_RECVERR report a pending ICMP error of an
                        # earlier packet on the next send (and clear it): send again
                        if attempt == 2 or kind != "dgram" or exc.errno not in _PENDING_ERRNOS:
                            raise
            except OSError as exc:
                errors.append({"seq": seq, "from": None, "type": None, "code": None,
                               "message": exc.strerror or str(exc)})
                lines.append(f"ping: sendmsg: {exc.strerror or exc}")
            next_send += interval
            continue
        if seq >= count:
            if len(got) == count:
                break
            end_wait = last_send_mono + timeout
        else:
            end_wait = next_send
        if now >= hard_deadline or (seq >= count and now >= end_wait):
            break
        wait = min(end_wait, hard_deadline) - now
        readable = wait_readable(sock, wait)
    elapsed_ms = int((time.monotonic() - start) * 1000)
    return _summary(target, head, base, lines, packets, errors, count=seq, received=len(got),
                    rtts=all_rtts, duplicates=duplicates, late=late, elapsed_ms=elapsed_ms,
                    socket_kind=kind, ident=ident)


def _cookie_ok(payload: bytes, cookie: bytes, seq: int) -> bool:
    return payload[:8] == cookie and payload[8:16] == struct.pack("!Q", seq)


def _raw4(data, src, rx, ident, cookie, addr, sent, on_reply, on_error):
    if len(data) < 20:
        return
    ihl = (data[0] & 0x0F) * 4
    ttl = data[8]
    icmp = data[ihl:]
    if len(icmp) < 8:
        return
    typ, code, _ck, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
    if typ == ICMP_ECHOREPLY:
        if src == addr and rid == ident and rseq in sent and _cookie_ok(icmp[8:], cookie, rseq):
            on_reply(rseq, ttl, len(icmp), rx, src)
    elif typ in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED):
        inner = icmp[8:]
        if len(inner) < 28:
            return
        iihl = (inner[0] & 0x0F) * 4
        if inner[9] != socket.IPPROTO_ICMP or socket.inet_ntoa(inner[16:20]) != addr:
            return
        q = inner[iihl:iihl + 8]
        if len(q) == 8:
            qt, _c, _k, qid, qseq = struct.unpack("!BBHHH", q)
            if qt == ICMP_ECHO and qid == ident:
                on_error(qseq, src, typ, code)


def _icmp6(data, src, rx, ident, cookie, addr, sent, on_reply, on_error, check_id):
    if len(data) < 8:
        return
    typ, code, _ck, rid, rseq = struct.unpack("!BBHHH", data[:8])
    src = src.split("%")[0]
    if typ == ICMP6_ECHO_REPLY:
        if src == addr and (rid == ident or not check_id) and rseq in sent and _cookie_ok(data[8:], cookie, rseq):
            on_reply(rseq, rx.get("ttl"), len(data), rx, src)
    elif typ in (ICMP6_DEST_UNREACH, ICMP6_TIME_EXCEEDED, ICMP6_PACKET_TOO_BIG) and check_id:
        inner = data[8:]
        if len(inner) < 48 or inner[6] != socket.IPPROTO_ICMPV6:
            return
        if socket.inet_ntop(socket.AF_INET6, inner[24:40]) != addr:
            return
        qt, _c, _k, qid, qseq = struct.unpack("!BBHHH", inner[40:48])
        if qt == ICMP6_ECHO_REQUEST and qid == ident:
            on_error(qseq, src, typ, code)


def _icmp_dgram(family, data, src, rx, cookie, addr, sent, on_reply):
    # datagram ICMP sockets deliver the ICMP message without IP header; the kernel already
    # matched the identifier (it rewrote ours to the socket's).
    if len(data) < 8:
        return
    typ, _code, _ck, _rid, rseq = struct.unpack("!BBHHH", data[:8])
    want = ICMP_ECHOREPLY if family == 4 else ICMP6_ECHO_REPLY
    src = src.split("%")[0]
    if typ == want and src == addr and rseq in sent and _cookie_ok(data[8:], cookie, rseq):
        on_reply(rseq, rx.get("ttl"), len(data), rx, src)


def _dgram_error(family, data, anc, cookie, on_error):
    rx = parse_cmsgs(anc)
    if "recverr" not in rx or len(data) < 8:
        return
    origin, typ, code, offender, _e = parse_sock_extended_err(rx["recverr"], family)
    if origin not in (2, 3):
        return
    _t, _c, _k, _id, qseq = struct.unpack("!BBHHH", data[:8])
    if data[8:16] == cookie:
        on_error(qseq, offender or "?", typ, code)


def _fmt_rtt(ms: float) -> str:
    # iputils: 3 significant-ish digits - "0.045", "1.23", "12.3", "123"
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def _summary(target, head, base, lines, packets, errors, *, count, received, rtts, duplicates,
             late, elapsed_ms, socket_kind, ident):
    loss = 100.0 * (count - received) / count if count else 100.0
    # like iputils' "+N errors": ICMP errors and local send errors ("ping: sendmsg: ...") alike
    local = [e for e in errors if e.get("type") is None]
    stats = {"transmitted": count, "received": received, "duplicates": duplicates, "late": late,
             "errors": len(errors), "local_errors": len(local),
             "loss_percent": round(loss, 3), "time_ms": elapsed_ms,
             "min_ms": None, "avg_ms": None, "max_ms": None, "mdev_ms": None}
    summary = f"{count} packets transmitted, {received} received"
    if duplicates:
        summary += f", +{duplicates} duplicates"
    if stats["errors"]:
        summary += f", +{stats['errors']} errors"
    summary += f", {loss:g}% packet loss, time {elapsed_ms}ms"
    text = [head, *lines, "", f"--- {target.host} ping statistics ---", summary]
    if rtts:
        n = len(rtts)
        avg = sum(rtts) / n
        mdev = math.sqrt(max(0.0, sum(r * r for r in rtts) / n - avg * avg))
        stats.update(min_ms=round(min(rtts), 3), avg_ms=round(avg, 3), max_ms=round(max(rtts), 3),
                     mdev_ms=round(mdev, 3))
        text.append(f"rtt min/avg/max/mdev = {min(rtts):.3f}/{avg:.3f}/{max(rtts):.3f}/{mdev:.3f} ms")
    data = {**base, "socket": socket_kind, "identifier": ident, "packets": packets,
            "errors": errors, "stats": stats}
    success = received > 0
    if not success and count and len({e["seq"] for e in local}) == count:
        data["error"] = "send_failed"
        data["message"] = "every echo request failed to leave this host: " + ", ".join(
            dict.fromkeys(e["message"] for e in local))
    elif not success:
        data["error"] = "no_reply"
    return ProbeResult(success, "\n".join(text), data)
