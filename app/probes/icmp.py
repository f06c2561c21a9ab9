"""Low-level ICMP / socket helpers shared by ping and traceroute (Linux only).

Constants Python's ``socket`` module does not export are defined here from the Linux headers.
"""
from __future__ import annotations

import errno
import itertools
import os
import select
import socket
import struct
import threading
import time

# <linux/in.h>, <linux/in6.h>, <asm-generic/socket.h>, <linux/icmp.h>, <linux/icmpv6.h>
SOL_IP = 0
SOL_RAW = 255
IP_TTL = 2
IP_RECVERR = 11
IP_RECVTTL = 12
IPV6_RECVERR = 25
IPV6_UNICAST_HOPS = 16
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
ICMP_FILTER = 1             # SOL_RAW option on IPv4 raw ICMP sockets
ICMP6_FILTER = 1            # IPPROTO_ICMPV6 option
SO_TIMESTAMPNS = 35
SO_ATTACH_FILTER = 26       # SOL_SOCKET, struct sock_fprog (classic BPF)
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)

ICMP_ECHOREPLY, ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
ICMP6_DEST_UNREACH, ICMP6_PACKET_TOO_BIG, ICMP6_TIME_EXCEEDED = 1, 2, 3
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129

UNREACH_V4 = {0: ("!N", "Destination Net Unreachable"), 1: ("!H", "Destination Host Unreachable"),
              2: ("!P", "Destination Protocol Unreachable"), 3: ("", "Destination Port Unreachable"),
              4: ("!F", "Frag needed"), 5: ("!S", "Source Route Failed"),
              9: ("!X", "Destination Net Prohibited"), 10: ("!X", "Destination Host Prohibited"),
              13: ("!X", "Communication Administratively Prohibited")}
UNREACH_V6 = {0: ("!N", "No route"), 1: ("!X", "Administratively prohibited"),
              2: ("!N", "Beyond scope of source address"), 3: ("!H", "Address unreachable"),
              4: ("", "Port unreachable"), 5: ("!X", "Source address failed ingress/egress policy"),
              6: ("!X", "Reject route to destination")}


class PrivilegeError(OSError):
    """The process may open neither a raw ICMP socket nor an unprivileged ICMP datagram socket."""


# Identifiers: unique within the process, never os.getpid() (many probes share one process).
_ident_lock = threading.Lock()
_ident_counter = itertools.count(int.from_bytes(os.urandom(2), "big"))


def next_identifier() -> int:
    with _ident_lock:
        return next(_ident_counter) & 0xFFFF


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    typ = ICMP_ECHO if family == 4 else ICMP6_ECHO_REQUEST
    hdr = struct.pack("!BBHHH", typ, 0, 0, ident, seq & 0xFFFF)
    if family == 4:
        hdr = struct.pack("!BBHHH", typ, 0, checksum(hdr + payload), ident, seq & 0xFFFF)
    # ICMPv6: the kernel computes the checksum (pseudo-header) on raw and datagram sockets
    return hdr + payload


def ping_group_range() -> tuple[int, int] | None:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            lo, hi = f.read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return None


def open_icmp_socket(family: int, method: str = "auto", allow_types=()):
    """Open an ICMP socket; returns (sock, "raw"|"dgram").

    ``method``: "auto" tries a raw socket (CAP_NET_RAW) then the unprivileged ICMP datagram
    socket (net.ipv4.ping_group_range must contain one of our groups).  Raises PrivilegeError
    with a message naming what is missing when neither may be opened.
    ``allow_types``: ICMP types a raw socket lets through its kernel filter (others dropped).
    """
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    proto = socket.IPPROTO_ICMP if family == 4 else socket.IPPROTO_ICMPV6
    errors = []
    if method in ("auto", "raw"):
        try:
            s = socket.socket(af, socket.SOCK_RAW, proto)
        except PermissionError as exc:
            errors.append(f"raw ICMP socket: {exc.strerror} (needs root or CAP_NET_RAW)")
        else:
            try:
                _set_filter(s, family, allow_types)
                _common_opts(s, family)
            except OSError:
                s.close()
                raise
            return s, "raw"
    if method in ("auto", "dgram"):
        try:
            s = socket.socket(af, socket.SOCK_DGRAM, proto)
        except (PermissionError, OSError) as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT):
                raise
            rng = ping_group_range()
            groups = sorted({os.getgid(), *os.getgroups()})
            errors.append(f"ICMP datagram socket: {exc.strerror} (net.ipv4.ping_group_range is "
                          f"{rng[0] if rng else '?'} {rng[1] if rng else '?'}, process groups {groups})")
        else:
            try:
                _common_opts(s, family)
            except OSError:
                s.close()
                raise
            return s, "dgram"
    raise PrivilegeError(errno.EPERM, "cannot open an ICMP socket: " + "; ".join(errors) +
                         ". Grant CAP_NET_RAW (e.g. setcap cap_net_raw+ep on the Python binary) or "
                         "set net.ipv4.ping_group_range to include the service's group.")


def _set_filter(s, family, allow_types):
    if not allow_types:
        return
    if family == 4:
        mask = 0xFFFFFFFF
        for t in allow_types:
            mask &= ~(1 << t)
        s.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", mask))
    else:
        words = [0xFFFFFFFF] * 8          # bit set = blocked
        for t in allow_types:
            words[t >> 5] &= ~(1 << (t & 31))
        s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *words))


# -- classic BPF socket filters ------------------------------------------------------------------
# A raw ICMP socket receives a copy of EVERY ICMP packet arriving in the network namespace: with
# N probes in flight each reply wakes N sockets (N^2 copies, each parsed in Python). A filter
# attached to the socket makes the kernel drop the others before they are queued. Userspace still
# checks everything (address, identifier, sequence, cookie): the filter only removes work.
# <linux/filter.h> opcodes
_LD_B_ABS, _LD_H_ABS, _LD_B_IND, _LD_H_IND = 0x30, 0x28, 0x50, 0x48
_LDX_B_MSH = 0xB1           # X = 4 * (P[k] & 0xf): the IPv4 header's length
_ALU_AND_K, _ALU_LSH_K, _ALU_ADD_X, _MISC_TAX = 0x54, 0x64, 0x0C, 0x07
_JEQ_K, _RET_K = 0x15, 0x06
_ACCEPT, _DROP = "accept", "drop"


def _assemble(program):
    """``[(code, k) | (JEQ, k, label_true, label_false) | label]`` -> packed struct sock_filter[].

    Labels are strings placed in the list; jumps name them (forward only, as BPF requires).
    """
    program = [*program, _DROP, (_RET_K, 0), _ACCEPT, (_RET_K, 0xFFFFFFFF)]
    where, index = {}, 0
    for item in program:
        if isinstance(item, str):
            where[item] = index
        else:
            index += 1
    out, index = [], 0
    for item in program:
        if isinstance(item, str):
            continue
        if len(item) == 4:
            code, k, yes, no = item
            out.append(struct.pack("HBBI", code, where[yes] - index - 1, where[no] - index - 1, k))
        else:
            out.append(struct.pack("HBBI", item[0], 0, 0, item[1]))
        index += 1
    return b"".join(out)


def attach_bpf(sock, code: bytes) -> bool:
    """SO_ATTACH_FILTER with the packed instructions ``code`` (the kernel copies them).

    False when the kernel refuses it: the probe still works (userspace matches every packet),
    it only costs more CPU.
    """
    import ctypes

    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("@HP", len(code) // 8, ctypes.addressof(buf))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def _error_quote(family, proto):
    """Instructions that go on at "quote" with X (IPv4) at the quoted packet's transport header."""
    if family == 4:
        # X = outer IPv4 header length; the ICMP error's quoted IPv4 header starts at X + 8
        return ["quote",
                (_LD_B_IND, 8 + 9), (_JEQ_K, proto, "q1", _DROP), "q1",   # quoted protocol
                (_LD_B_IND, 8), (_ALU_AND_K, 0x0F), (_ALU_LSH_K, 2),        # quoted header length
                (_ALU_ADD_X, 0), (_MISC_TAX, 0)]                          # X += it
    return ["quote", (_LD_B_ABS, 8 + 6), (_JEQ_K, proto, "q1", _DROP), "q1"]  # next header


def echo_filter(family: int, ident: int) -> bytes:
    """Echo replies carrying ``ident``, and ICMP errors quoting an echo request carrying it."""
    if family == 4:
        return _assemble([
            (_LDX_B_MSH, 0),                                   # X = IPv4 header length
            (_LD_B_IND, 0),                                    # ICMP type
            (_JEQ_K, ICMP_ECHOREPLY, "echo", "t1"), "t1",
            (_JEQ_K, ICMP_DEST_UNREACH, "quote", "t2"), "t2",
            (_JEQ_K, ICMP_TIME_EXCEEDED, "quote", _DROP),
            "echo", (_LD_H_IND, 4), (_JEQ_K, ident, _ACCEPT, _DROP),
            *_error_quote(4, socket.IPPROTO_ICMP),
            (_LD_B_IND, 8), (_JEQ_K, ICMP_ECHO, "q2", _DROP), "q2",   # quoted ICMP type
            (_LD_H_IND, 8 + 4), (_JEQ_K, ident, _ACCEPT, _DROP),     # quoted identifier
        ])
    return _assemble([                                         # ICMPv6: data starts at its header
        (_LD_B_ABS, 0),
        (_JEQ_K, ICMP6_ECHO_REPLY, "echo", "t1"), "t1",
        (_JEQ_K, ICMP6_DEST_UNREACH, "quote", "t2"), "t2",
        (_JEQ_K, ICMP6_PACKET_TOO_BIG, "quote", "t3"), "t3",
        (_JEQ_K, ICMP6_TIME_EXCEEDED, "quote", _DROP),
        "echo", (_LD_H_ABS, 4), (_JEQ_K, ident, _ACCEPT, _DROP),
        *_error_quote(6, socket.IPPROTO_ICMPV6),
        (_LD_B_ABS, 8 + 40), (_JEQ_K, ICMP6_ECHO_REQUEST, "q2", _DROP), "q2",
        (_LD_H_ABS, 8 + 40 + 4), (_JEQ_K, ident, _ACCEPT, _DROP),
    ])


def udp_error_filter(family: int, source_port: int) -> bytes:
    """ICMP errors quoting a UDP datagram sent from ``source_port`` (traceroute's raw reader)."""
    if family == 4:
        return _assemble([
            (_LDX_B_MSH, 0), (_LD_B_IND, 0),
            (_JEQ_K, ICMP_DEST_UNREACH, "quote", "t1"), "t1",
            (_JEQ_K, ICMP_TIME_EXCEEDED, "quote", _DROP),
            *_error_quote(4, socket.IPPROTO_UDP),
            (_LD_H_IND, 8), (_JEQ_K, source_port, _ACCEPT, _DROP),   # quoted UDP source port
        ])
    return _assemble([
        (_LD_B_ABS, 0),
        (_JEQ_K, ICMP6_DEST_UNREACH, "quote", "t1"), "t1",
        (_JEQ_K, ICMP6_TIME_EXCEEDED, "quote", _DROP),
        *_error_quote(6, socket.IPPROTO_UDP),
        (_LD_H_ABS, 8 + 40), (_JEQ_K, source_port, _ACCEPT, _DROP),
    ])


def _common_opts(s, family):
    s.setblocking(False)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        pass
    if family == 4:
        try:
            s.setsockopt(SOL_IP, IP_RECVTTL, 1)
        except OSError:
            pass
    else:
        try:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        except OSError:
            pass


def parse_cmsgs(ancdata):
    """-> dict with optional 'ts' (realtime ns), 'ttl', 'recverr' (raw bytes of the cmsg)."""
    out = {}
    for level, typ, data in ancdata:
        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            out["ts"] = sec * 1_000_000_000 + nsec
        elif level == SOL_IP and typ == IP_TTL and len(data) >= 4:
            out["ttl"] = struct.unpack("i", data[:4])[0]
        elif level == socket.IPPROTO_IPV6 and typ == IPV6_HOPLIMIT and len(data) >= 4:
            out["ttl"] = struct.unpack("i", data[:4])[0]
        elif (level, typ) in ((SOL_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)):
            out["recverr"] = data
    return out


def parse_sock_extended_err(data: bytes, family: int):
    """struct sock_extended_err + offender sockaddr -> (origin, type, code, offender_ip or None)."""
    ee_errno, origin, typ, code, _pad, _info, _data = struct.unpack("IBBBBII", data[:16])
    offender = None
    rest = data[16:]
    if len(rest) >= 2:
        fam = struct.unpack("H", rest[:2])[0]
        if fam == socket.AF_INET and len(rest) >= 8:
            offender = socket.inet_ntop(socket.AF_INET, rest[4:8])
        elif fam == socket.AF_INET6 and len(rest) >= 24:
            offender = socket.inet_ntop(socket.AF_INET6, rest[8:24])
    return origin, typ, code, offender, ee_errno


def wait_readable(s, timeout: float) -> bool:
    """True when ``s`` has data or a queued error (poll, so no FD_SETSIZE limit)."""
    p = select.poll()
    p.register(s, select.POLLIN | select.POLLERR)
    return bool(p.poll(max(0, int(timeout * 1000 + 0.999))))


def rtt_ms(sent_real_ns: int, sent_mono: float, rx: dict) -> float:
    """RTT from the kernel receive timestamp when there is one, else from the monotonic clock."""
    ts = rx.get("ts")
    if ts:
        v = (ts - sent_real_ns) / 1e6
        if 0 <= v < 600_000:
            return v
    return max(0.0, (time.monotonic() - sent_mono) * 1000.0)


def sockaddr(family: int, address: str, port: int = 0):
    return (address, port) if family == 4 else (address, port, 0, 0)
