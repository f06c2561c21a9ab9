"""A host that answers ICMP echo requests LATE.

Run by tests/lab/netlab.py inside the lab's ``probeops-late`` namespace, where the kernel's own
echo replies are switched off (``net.ipv4.icmp_echo_ignore_all=1``,
``net.ipv6.icmp.echo_ignore_all=1``)::

    python late_echo.py --delay 1.0 --ready FILE 198.18.4.10 fd00:198:18:4::10

For every echo request to one of the addresses it sends the echo reply (same identifier,
sequence and payload, from that address) ``--delay`` seconds after the request arrived.  Raw
sockets get a copy of every ICMP packet before the kernel's ICMP code (which here ignores echo
requests), so nothing else answers.  Each request is logged as ``<client> id=<id> seq=<seq>``;
FILE is created once the sockets are open.
"""
from __future__ import annotations

import argparse
import heapq
import ipaddress
import select
import socket
import struct
import sys
import time

ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def open_socket(addr: str) -> socket.socket:
    if ipaddress.ip_address(addr).version == 4:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        # the kernel fills in the ICMPv6 checksum of raw ICMPv6 sockets (RFC 3542)
    s.bind((addr, 0))          # a bound raw socket receives only packets to that address
    s.setblocking(False)
    return s


def reply_for(sock: socket.socket, data: bytes) -> bytes | None:
    """The echo reply to an echo request read from ``sock`` (None if it is not one)."""
    if sock.family == socket.AF_INET:
        icmp = data[(data[0] & 0x0F) * 4:]          # raw IPv4 sockets deliver the IP header
        if len(icmp) < 8 or icmp[0] != ICMP_ECHO:
            return None
        body = struct.pack("!BBH", ICMP_ECHOREPLY, 0, 0) + icmp[4:]
        return body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    if len(data) < 8 or data[0] != ICMP6_ECHO_REQUEST:
        return None
    return struct.pack("!BBH", ICMP6_ECHO_REPLY, 0, 0) + data[4:]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, required=True)
    ap.add_argument("--ready")
    ap.add_argument("addresses", nargs="+")
    args = ap.parse_args(argv)
    socks = [open_socket(a) for a in args.addresses]
    if args.ready:
        open(args.ready, "w").close()
    queue: list[tuple[float, int, socket.socket, bytes, tuple]] = []   # (due, n, sock, reply, dest)
    n = 0
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _due, _n, sock, reply, dest = heapq.heappop(queue)
            try:
                sock.sendto(reply, dest)
            except OSError as exc:
                print(f"send to {dest[0]} failed: {exc}", flush=True)
        wait = max(0.0, queue[0][0] - now) if queue else None
        readable, _, _ = select.select(socks, [], [], wait)
        for sock in readable:
            while True:
                try:
                    data, src = sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                reply = reply_for(sock, data)
                if reply is None:
                    continue
                arrived = time.monotonic()
                _t, _c, _k, ident, seq = struct.unpack("!BBHHH", reply[:8])
                print(f"{src[0]} id={ident} seq={seq}", flush=True)
                n += 1
                dest = (src[0], 0) if sock.family == socket.AF_INET else (src[0], 0, 0, src[3])
                heapq.heappush(queue, (arrived + args.delay, n, sock, reply, dest))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
