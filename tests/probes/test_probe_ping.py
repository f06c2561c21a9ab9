"""ping engine vs iputils ping, at the same moment, on the lab."""
import os
import subprocess
import sys
import threading
import time

import pytest

from app.probes.ping import ping
from app.probes.targets import Target
from tests.probes.helpers import at_same_moment, parse_ping

pytestmark = pytest.mark.lab
RTT_TOLERANCE_MS = 2.0   # lab RTTs are sub-millisecond; scheduling noise on 2 busy cores is < 2 ms


def _t(addr):
    return Target(addr, addr, 6 if ":" in addr else 4)


@pytest.mark.parametrize("family", [4, 6])
def test_ping_matches_iputils(lab_routes, family):
    lab = lab_routes
    addr = lab.target if family == 4 else lab.target6
    res, tool = at_same_moment(lambda: ping(_t(addr), count=5, interval=0.2, timeout=1.0),
                               ["ping", "-n", "-c", "5", "-i", "0.2", "-W", "1", addr])
    ref = parse_ping(tool.stdout)
    mine = parse_ping(res.text)             # the text parses like iputils' does
    assert res.success and tool.returncode == 0
    assert mine["transmitted"] == ref["transmitted"] == 5
    assert mine["received"] == ref["received"] == 5
    assert [p[0] for p in mine["packets"]] == [p[0] for p in ref["packets"]] == [1, 2, 3, 4, 5]
    assert {p[1] for p in mine["packets"]} == {p[1] for p in ref["packets"]} == {61}  # 3 routers
    for i in range(4):
        assert abs(mine["rtt"][i] - ref["rtt"][i]) < RTT_TOLERANCE_MS, (res.text, tool.stdout)
    st = res.data["stats"]
    assert st["transmitted"] == 5 and st["received"] == 5 and st["loss_percent"] == 0
    assert st["min_ms"] <= st["avg_ms"] <= st["max_ms"] and st["mdev_ms"] >= 0
    assert [p["seq"] for p in res.data["packets"]] == [1, 2, 3, 4, 5]
    assert all(p["ttl"] == 61 and p["bytes"] == 64 for p in res.data["packets"])
    assert res.text.splitlines()[-1].startswith("rtt min/avg/max/mdev = ")
    assert res.data["address"] == addr


def test_ping_lossy_within_statistical_bounds(lab_routes):
    """50 % of echo requests to the lossy address are dropped (nft numgen random mod 2).

    30 engine packets and 30 iputils packets at the same moment: each loss must lie in
    [20 %, 80 %] (two-sided binomial tail < 0.001)."""
    lab = lab_routes

    def engine():
        return [ping(_t(lab.lossy), count=10, interval=0.02, timeout=0.5) for _ in range(3)]

    results, tool = at_same_moment(engine, ["ping", "-n", "-c", "30", "-i", "0.02", "-W", "1",
                                            lab.lossy])
    sent = sum(r.data["stats"]["transmitted"] for r in results)
    got = sum(r.data["stats"]["received"] for r in results)
    ref = parse_ping(tool.stdout)
    assert sent == 30 and ref["transmitted"] == 30
    assert 20 <= 100 * (sent - got) / sent <= 80, [r.text for r in results]
    assert 20 <= ref["loss"] <= 80, tool.stdout
    for r in results:
        st = r.data["stats"]
        assert st["loss_percent"] == pytest.approx(100 * (10 - st["received"]) / 10)
        seqs = [p["seq"] for p in r.data["packets"]]
        assert len(seqs) == len(set(seqs)) == st["received"]


@pytest.mark.parametrize("family", [4, 6])
def test_ping_silent_fails_within_bound(lab_routes, family):
    lab = lab_routes
    addr = lab.silent if family == 4 else lab.silent6
    t0 = time.monotonic()
    res, tool = at_same_moment(lambda: ping(_t(addr), count=3, interval=0.2, timeout=0.5),
                               ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", addr])
    elapsed = time.monotonic() - t0
    assert not res.success and tool.returncode == 1
    assert res.data["stats"]["received"] == 0 == parse_ping(tool.stdout)["received"]
    assert res.data["stats"]["loss_percent"] == 100
    assert "3 packets transmitted, 0 received, 100% packet loss" in res.text
    assert "rtt min" not in res.text
    assert elapsed < 2 * 0.2 + 0.5 + 1.5  # engine bound (count-1)*interval+timeout, tool's -W 1


def test_ping_unreachable_reported_like_iputils(lab_routes):
    """r3 rejects the lab's unreachable address with ICMP host unreachable."""
    lab = lab_routes
    addr = lab.unreachable
    res, tool = at_same_moment(lambda: ping(_t(addr), count=2, interval=0.2, timeout=0.5),
                               ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", addr])
    ref = parse_ping(tool.stdout)
    mine = parse_ping(res.text)
    assert not res.success
    assert ref["unreachable"] and mine["unreachable"] == ref["unreachable"]
    assert res.data["errors"][0]["from"] == lab.hops[-1]
    assert res.data["errors"][0]["message"] == "Destination Host Unreachable"
    assert "+2 errors" in res.text and "+2 errors" in tool.stdout


@pytest.mark.parametrize("family", [4, 6])
def test_ping_local_send_errors_are_counted_like_iputils(lab_routes, family):
    """A route that turns unreachable mid-run: every failed send is a "ping: sendmsg" line, is
    counted in stats.errors and in the "+N errors" of the summary (iputils' nerrors)."""
    import subprocess
    import threading
    import time as _time

    lab = lab_routes
    addr = lab.target if family == 4 else lab.target6
    route = ["ip", f"-{family}", "route", "{}", "unreachable", f"{addr}/{32 if family == 4 else 128}"]

    def flip():
        _time.sleep(0.5)
        subprocess.run([r.format("add") for r in route], check=True)
        _time.sleep(0.7)
        subprocess.run([r.format("del") for r in route], check=True)

    t = threading.Thread(target=flip)
    t.start()
    try:
        res = ping(_t(addr), count=10, interval=0.2, timeout=1.0)
    finally:
        t.join()
        subprocess.run([r.format("del") for r in route], capture_output=True)
    stats = res.data["stats"]
    failed = res.text.count("ping: sendmsg: ")
    assert failed >= 2 and "No route to host" in res.text
    assert stats["local_errors"] == failed == len([e for e in res.data["errors"] if e["type"] is None])
    assert stats["errors"] == failed and f"+{failed} errors," in res.text
    assert stats["received"] + failed == stats["transmitted"] == 10
    assert res.success


def test_ping_that_cannot_send_at_all_says_so(lab_routes):
    """198.19.0.0/16 hits the lab's guard route: nothing leaves the host."""
    res = ping(_t("198.19.0.1"), count=3, interval=0.2, timeout=0.5)
    assert not res.success and res.data["error"] == "send_failed"
    assert "No route to host" in res.data["message"]
    assert res.data["stats"]["errors"] == res.data["stats"]["local_errors"] == 3 and "+3 errors" in res.text


@pytest.mark.parametrize("family", [4, 6])
def test_ping_duplicates_like_iputils(lab_routes, family):
    """Every echo reply from the duplicating address is sent twice (nft dup)."""
    lab = lab_routes
    addr = lab.duplicating if family == 4 else lab.duplicating6
    res, tool = at_same_moment(lambda: ping(_t(addr), count=3, interval=0.2, timeout=1.0),
                               ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", addr])
    assert "(DUP!)" in tool.stdout and "duplicates" in tool.stdout
    st = res.data["stats"]
    assert st["received"] == 3 and st["loss_percent"] == 0 and st["duplicates"] >= 2
    assert f"+{st['duplicates']} duplicates" in res.text
    assert res.text.count("(DUP!)") == st["duplicates"]
    assert [p["seq"] for p in res.data["packets"] if not p.get("duplicate")] == [1, 2, 3]
    ref = parse_ping(tool.stdout)
    assert ref["received"] == 3
    # like iputils, duplicates count in the RTT statistics
    rtts = [p["rtt_ms"] for p in res.data["packets"]]
    assert st["min_ms"] == min(rtts) and st["max_ms"] == max(rtts)


def _timed(call):
    box = {}

    def run():
        t0 = time.monotonic()
        box["result"] = call()
        box["elapsed"] = time.monotonic() - t0
        return box
    return run


LATE_TOLERANCE_MS = 200.0   # the lab's late host answers late_delay s after the request (+ scheduling)


@pytest.mark.parametrize("family", [4, 6])
def test_ping_late_replies_reported_not_counted(lab_routes, family):
    """The late host answers every echo request lab.late_delay (1 s) later.

    count=3, interval=1, timeout=0.5: the probe ends at (3-1)*1+0.5 = 2.5 s, so the replies to
    seq 1 and 2 (at 1 s and 2 s) arrive while it runs, later than the timeout: shown as late, not
    counted; the reply to seq 3 (at 3 s) comes after the end.  iputils 20221126 at the same moment
    with -W 0.5 counts all three: its -W only bounds the wait while nothing has been received."""
    lab = lab_routes
    addr = lab.late if family == 4 else lab.late6
    delay_ms = lab.late_delay * 1000
    box, tool = at_same_moment(_timed(lambda: ping(_t(addr), count=3, interval=1.0, timeout=0.5)),
                               ["ping", "-n", "-c", "3", "-i", "1", "-W", "0.5", addr])
    res, elapsed = box["result"], box["elapsed"]
    assert not res.success and res.data["error"] == "no_reply", res.text
    st = res.data["stats"]
    assert (st["transmitted"], st["received"], st["late"], st["duplicates"]) == (3, 0, 2, 0), res.text
    assert st["loss_percent"] == 100 and st["min_ms"] is None and st["avg_ms"] is None
    pk = res.data["packets"]
    assert [p["seq"] for p in pk] == [1, 2] and all(p["late"] is True for p in pk), pk
    assert all(p["ttl"] == 61 and p["bytes"] == 64 for p in pk)
    assert all(abs(p["rtt_ms"] - delay_ms) < LATE_TOLERANCE_MS for p in pk), pk
    late_lines = [line for line in res.text.splitlines() if line.endswith(" ms (late, not counted)")]
    assert [line.split("icmp_seq=")[1].split()[0] for line in late_lines] == ["1", "2"], res.text
    shown = parse_ping("\n".join(late_lines))["packets"]     # the lines read like iputils' otherwise
    assert [(p[0], p[1], p[3]) for p in shown] == [(1, 61, addr), (2, 61, addr)], res.text
    assert all(abs(p[2] - delay_ms) < LATE_TOLERANCE_MS for p in shown), res.text
    assert "3 packets transmitted, 0 received, 100% packet loss" in res.text
    assert "rtt min" not in res.text
    assert 2.5 - 0.05 <= elapsed <= 2 * 1.0 + 0.5 + 0.2    # documented bound (count-1)*interval+timeout
    # the late host did get all three requests of this probe, so nothing was lost on the way
    ident = res.data["identifier"]
    assert sum(f" id={ident} seq=" in line for line in lab.late_requests()) >= 3, lab.late_requests()
    # iputils: the same replies printed as ordinary ones and counted as received
    ref = parse_ping(tool.stdout)
    assert tool.returncode == 0, tool.stdout
    assert ref["transmitted"] == 3 and ref["received"] == 3 and ref["loss"] == 0, tool.stdout
    assert [p[0] for p in ref["packets"]] == [1, 2, 3]
    assert all(abs(p[2] - delay_ms) < LATE_TOLERANCE_MS for p in ref["packets"]), tool.stdout
    assert "late" not in tool.stdout


def test_ping_late_replies_after_the_probe_ended(lab_routes):
    """count=3, interval=0.2, timeout=0.5: the probe is over at 0.9 s, before the first reply
    (1 s): nothing to report, 0 received, within the bound.  iputils likewise (it has not seen a
    reply either, so -W 0.5 ends it after the last packet)."""
    lab = lab_routes
    box, tool = at_same_moment(_timed(lambda: ping(_t(lab.late), count=3, interval=0.2, timeout=0.5)),
                               ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "0.5", lab.late])
    res, elapsed = box["result"], box["elapsed"]
    st = res.data["stats"]
    assert not res.success and (st["transmitted"], st["received"], st["late"]) == (3, 0, 0), res.text
    assert res.data["packets"] == [] and "bytes from" not in res.text
    assert "3 packets transmitted, 0 received, 100% packet loss" in res.text
    assert elapsed <= 2 * 0.2 + 0.5 + 0.2
    assert tool.returncode == 1 and parse_ping(tool.stdout)["received"] == 0, tool.stdout


@pytest.mark.parametrize("family", [4, 6])
def test_ping_timeout_above_delay_counts_slow_replies(lab_routes, family):
    """timeout=3 > the late host's 1 s delay: both replies count, RTT = the delay."""
    lab = lab_routes
    addr = lab.late if family == 4 else lab.late6
    delay_ms = lab.late_delay * 1000
    box, tool = at_same_moment(_timed(lambda: ping(_t(addr), count=2, interval=0.2, timeout=3.0)),
                               ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "3", addr])
    res, elapsed = box["result"], box["elapsed"]
    st = res.data["stats"]
    assert res.success and (st["received"], st["late"], st["loss_percent"]) == (2, 0, 0), res.text
    assert [p["seq"] for p in res.data["packets"]] == [1, 2]
    assert not any(p.get("late") for p in res.data["packets"])
    for v in (st["min_ms"], st["avg_ms"], st["max_ms"]):
        assert abs(v - delay_ms) < LATE_TOLERANCE_MS, res.text
    assert "late" not in res.text and res.text.splitlines()[-1].startswith("rtt min/avg/max/mdev = ")
    assert elapsed < 0.2 + lab.late_delay + 0.5    # ends when both replies are in, well before 0.2+3
    ref = parse_ping(tool.stdout)
    mine = parse_ping(res.text)
    assert tool.returncode == 0 and ref["received"] == mine["received"] == 2, tool.stdout
    for a, b in zip(mine["rtt"][:3], ref["rtt"][:3], strict=True):
        assert abs(a - delay_ms) < LATE_TOLERANCE_MS and abs(b - delay_ms) < LATE_TOLERANCE_MS


def test_concurrent_pings_ignore_each_other(lab_routes):
    """24 probes at once in one process (raw sockets see every reply): each gets exactly its own."""
    lab = lab_routes
    results = [None] * 24

    def one(i):
        addr = [lab.target, lab.target6, lab.dns][i % 3]
        results[i] = ping(_t(addr), count=4, interval=0.02, timeout=1.0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    tool = subprocess.run(["ping", "-n", "-c", "10", "-i", "0.01", "-W", "1", lab.target],
                          capture_output=True, text=True, timeout=20)
    for t in threads:
        t.join(10)
    idents = {r.data["identifier"] for r in results}
    assert len(idents) == 24
    for r in results:
        st = r.data["stats"]
        assert (st["received"], st["duplicates"], st["late"]) == (4, 0, 0), r.text
        assert [p["seq"] for p in r.data["packets"]] == [1, 2, 3, 4]
    assert parse_ping(tool.stdout)["received"] == 10


def test_ping_bounds_checked_before_sending():
    t = _t("127.0.0.1")
    for kw in ({"count": 0}, {"count": 11}, {"count": 2.5}, {"interval": 0}, {"timeout": 0},
               {"timeout": 60}, {"payload_size": 10_000}, {"count": True}):
        with pytest.raises(ValueError):
            ping(t, **kw)


def test_ping_loopback_ipv4_and_ipv6():
    for addr in ("127.0.0.1", "::1"):
        r = ping(_t(addr), count=2, interval=0.05, timeout=1.0)
        assert r.success and r.data["stats"]["received"] == 2, r.text


def _gid_in_ping_range():
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            lo, hi = map(int, f.read().split())
    except OSError:
        return True
    return any(lo <= g <= hi for g in {os.getgid(), *os.getgroups()})


@pytest.mark.skipif(_gid_in_ping_range(), reason="ping_group_range allows us: no privilege error here")
def test_ping_without_privilege_is_a_clear_error():
    r = ping(_t("127.0.0.1"), count=1, method="dgram")
    assert not r.success
    assert r.data["error"] == "insufficient_privilege"
    assert "ping_group_range" in r.text and "CAP_NET_RAW" in r.text
    assert "bytes from" not in r.text


def test_ping_unprivileged_datagram_socket(lab_routes):
    """Inside lab namespace r1, allow ICMP datagram sockets and ping the target with them."""
    lab = lab_routes
    ns = lab.namespaces[0]
    lab.nsexec(ns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    code = ("import json,sys; from app.probes.ping import ping; from app.probes.targets import Target;"
            "r=[ping(Target(a,a,6 if ':' in a else 4),count=3,interval=0.05,timeout=1,method='dgram')"
            " for a in sys.argv[1:]]; print(json.dumps([[x.success,x.data,x.text] for x in r]))")
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, lab.target, lab.target6],
                       capture_output=True, text=True, timeout=30, cwd=os.getcwd())
    assert p.returncode == 0, p.stderr
    import json
    for ok, data, text in json.loads(p.stdout):
        assert ok, text
        assert data["socket"] == "dgram"
        assert data["stats"]["received"] == 3
        assert {pk["ttl"] for pk in data["packets"]} == {62}  # r2, r3 between r1 and the target
