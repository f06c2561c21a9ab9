"""The kernel filter on raw ICMP sockets: a probe's socket queues its own replies and errors only.

Without it every raw ICMP socket receives a copy of every ICMP packet arriving in the namespace,
so N pings in flight cost N^2 copies. What a user notices: many probes in one process each get
exactly their own answers, and a probe's socket is not woken by anybody else's.
"""
import socket
import threading

import pytest

from app.probes import icmp
from app.probes.ping import ping
from app.probes.targets import Target
from app.probes.traceroute import traceroute

QUIET_SECONDS = 0.3  # how long a filtered socket is watched for a packet it must not get


def _t(addr):
    return Target(addr, addr, 6 if ":" in addr else 4)


def _filtered_socket(family, code):
    """A raw ICMP socket as the probes open it, with ``code`` attached, and nothing queued yet."""
    sock, kind = icmp.open_icmp_socket(family, "raw")
    assert kind == "raw"
    assert icmp.attach_bpf(sock, code)
    while True:  # whatever arrived before the filter was attached
        try:
            sock.recv(4096)
        except BlockingIOError:
            return sock


def _received(sock):
    """Every packet queued on ``sock`` within QUIET_SECONDS."""
    out = []
    while icmp.wait_readable(sock, QUIET_SECONDS):
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            break
    return out


def _send_echo(family, address, ident, ttl=None):
    """An echo request with ``ident`` from a second, unfiltered raw socket."""
    sender, _ = icmp.open_icmp_socket(family, "raw")
    try:
        if ttl is not None:
            if family == 4:
                sender.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            else:
                sender.setsockopt(socket.IPPROTO_IPV6, icmp.IPV6_UNICAST_HOPS, ttl)
        sender.sendto(icmp.echo_request(family, ident, 1, b"probeops-filter-test"), icmp.sockaddr(family, address))
    finally:
        sender.close()


def _icmp_part(family, packet):
    return packet[(packet[0] & 0x0F) * 4:] if family == 4 else packet


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_socket_gets_its_identifiers_replies_and_not_anothers(address):
    family = 6 if ":" in address else 4
    mine, other = 0x4A11, 0x4A12
    sock = _filtered_socket(family, icmp.echo_filter(family, mine))
    try:
        _send_echo(family, address, other)
        assert _received(sock) == []  # another identifier's request and reply: not even queued
        _send_echo(family, address, mine)
        got = [_icmp_part(family, p) for p in _received(sock)]
        reply = icmp.ICMP_ECHOREPLY if family == 4 else icmp.ICMP6_ECHO_REPLY
        assert [(p[0], int.from_bytes(p[4:6], "big")) for p in got] == [(reply, mine)]  # the reply, not our request
    finally:
        sock.close()


def test_many_pings_in_one_process_each_get_exactly_their_own_replies():
    """120 pings at once over loopback (IPv4 and IPv6): every one counts its own 3 replies, no more."""
    results = [None] * 120

    def one(i):
        results[i] = ping(_t("127.0.0.1" if i % 2 else "::1"), count=3, interval=0.05, timeout=2.0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert len({r.data["identifier"] for r in results}) == len(results)
    for r in results:
        st = r.data["stats"]
        assert r.data["socket"] == "raw"
        assert (st["received"], st["duplicates"], st["late"], st["errors"]) == (3, 0, 0, 0), r.text


@pytest.mark.lab
@pytest.mark.parametrize("family", [4, 6])
def test_icmp_errors_reach_the_probe_whose_request_they_quote(lab_routes, family):
    """Time exceeded (TTL 1 to the target) and host unreachable quote an echo request: only the
    socket filtering on that request's identifier queues them."""
    lab = lab_routes
    mine, other = 0x5B21, 0x5B22
    for address, ttl, (v4_type, v6_type) in (
            (lab.target if family == 4 else lab.target6, 1, (icmp.ICMP_TIME_EXCEEDED, icmp.ICMP6_TIME_EXCEEDED)),
            (lab.unreachable if family == 4 else lab.unreachable6, None,
             (icmp.ICMP_DEST_UNREACH, icmp.ICMP6_DEST_UNREACH))):
        sock = _filtered_socket(family, icmp.echo_filter(family, mine))
        try:
            _send_echo(family, address, other, ttl)
            assert _received(sock) == []
            _send_echo(family, address, mine, ttl)
            got = [_icmp_part(family, p) for p in _received(sock)]
            assert [p[0] for p in got] == [v4_type if family == 4 else v6_type], address
        finally:
            sock.close()


@pytest.mark.lab
@pytest.mark.parametrize("family", [4, 6])
def test_traceroute_raw_reader_gets_only_its_own_datagrams_errors(lab_routes, family):
    """The raw reader of a UDP trace filters on the trace's source port: another socket's probe
    (its time exceeded) is not queued; its own trace still sees every hop."""
    lab = lab_routes
    address = lab.target if family == 4 else lab.target6
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    udp = socket.socket(af, socket.SOCK_DGRAM)
    other = socket.socket(af, socket.SOCK_DGRAM)
    try:
        udp.bind(icmp.sockaddr(family, "0.0.0.0" if family == 4 else "::"))
        other.bind(icmp.sockaddr(family, "0.0.0.0" if family == 4 else "::"))
        sock = _filtered_socket(family, icmp.udp_error_filter(family, udp.getsockname()[1]))
        try:
            for s in (other, udp):
                if family == 4:
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
                else:
                    s.setsockopt(socket.IPPROTO_IPV6, icmp.IPV6_UNICAST_HOPS, 1)
            other.sendto(b"not mine", icmp.sockaddr(family, address, 33434))
            assert _received(sock) == []
            udp.sendto(b"mine", icmp.sockaddr(family, address, 33434))
            got = [_icmp_part(family, p) for p in _received(sock)]
            assert [p[0] for p in got] == [icmp.ICMP_TIME_EXCEEDED if family == 4 else icmp.ICMP6_TIME_EXCEEDED]
        finally:
            sock.close()
    finally:
        udp.close()
        other.close()
    hops = lab.hops if family == 4 else lab.hops6
    result = traceroute(_t(address), reader="raw", max_hops=6, probes_per_hop=1, timeout=1.0)
    assert result.success, result.text
    assert [h["probes"][0]["address"] for h in result.data["hops"]] == [*hops, address]
