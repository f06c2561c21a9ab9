"""traceroute engine vs Debian traceroute, at the same moment, on the lab."""
import threading
import time

import pytest

from app.probes.targets import Target
from app.probes.traceroute import traceroute
from tests.probes.helpers import at_same_moment, parse_traceroute

pytestmark = pytest.mark.lab


def _t(addr):
    return Target(addr, addr, 6 if ":" in addr else 4)


def _hops(result):
    return [(h["ttl"], [p["address"] for p in h["probes"]]) for h in result.data["hops"]]


CASES = [("udp", "auto", []), ("udp", "raw", []), ("icmp", "auto", ["-I"])]


@pytest.mark.parametrize("mode,reader,flags", CASES)
@pytest.mark.parametrize("family", [4, 6])
def test_trace_to_target_matches_traceroute(lab_routes, family, mode, reader, flags):
    lab = lab_routes
    addr = lab.target if family == 4 else lab.target6
    hops = lab.hops if family == 4 else lab.hops6
    res, tool = at_same_moment(
        lambda: traceroute(_t(addr), max_hops=10, timeout=1.0, mode=mode, reader=reader),
        ["traceroute", "-n", *flags, "-w", "1", "-q", "3", "-m", "10", addr])
    assert tool.returncode == 0, tool.stderr
    ref = parse_traceroute(tool.stdout)
    assert _hops(res) == ref == parse_traceroute(res.text)          # same hops, same order
    assert [h[1][0] for h in ref] == [*hops, addr]                   # the lab's routers, then the target
    assert res.success and res.data["reached"]
    assert res.text.splitlines()[0] == tool.stdout.splitlines()[0]  # same header
    for h in res.data["hops"]:
        for p in h["probes"]:
            assert 0 <= p["rtt_ms"] < 50
    assert res.data["max_hops"] == 10


@pytest.mark.parametrize("family", [4, 6])
def test_trace_to_silent_address_stars_and_bound(lab_routes, family):
    lab = lab_routes
    addr = lab.silent if family == 4 else lab.silent6
    hops = lab.hops if family == 4 else lab.hops6
    t0 = time.monotonic()
    res, tool = at_same_moment(lambda: traceroute(_t(addr), max_hops=6, timeout=0.5),
                               ["traceroute", "-n", "-w", "0.5", "-q", "3", "-m", "6", addr])
    elapsed = time.monotonic() - t0
    ref = parse_traceroute(tool.stdout)
    assert _hops(res) == ref
    assert [h[1][0] for h in ref[:3]] == hops
    assert all(p is None for _ttl, probes in ref[3:] for p in probes) and len(ref) == 6
    assert not res.success and res.data["reached"] is False and res.data["error"] == "not_reached"
    assert " 4  * * *" in res.text and res.text.endswith("(destination not reached within 6 hops)")
    assert elapsed < 5


@pytest.mark.parametrize("family", [4, 6])
def test_trace_unreachable_marks_like_traceroute(lab_routes, family):
    lab = lab_routes
    addr = lab.unreachable if family == 4 else lab.unreachable6
    res, tool = at_same_moment(lambda: traceroute(_t(addr), max_hops=8, timeout=0.5),
                               ["traceroute", "-n", "-w", "0.5", "-q", "3", "-m", "8", addr])
    assert _hops(res) == parse_traceroute(tool.stdout)
    last_mine, last_ref = res.text.splitlines()[-2], tool.stdout.strip().splitlines()[-1]
    assert last_mine.count("!H") == last_ref.count("!H") == 3
    assert not res.success and res.data["error"] == "unreachable"
    assert res.data["hops"][-1]["probes"][0]["note"] == "!H"


def test_trace_total_time_bound(lab_routes):
    lab = lab_routes
    t0 = time.monotonic()
    res = traceroute(_t(lab.silent), max_hops=30, timeout=2.0, total_timeout=1.5)
    assert time.monotonic() - t0 < 1.5 + 0.3
    assert not res.success and res.data["error"] == "time_bound"
    assert "total time bound" in res.text


def test_concurrent_traces_do_not_mix(lab_routes):
    lab = lab_routes
    results = {}

    def one(i):
        addr = [lab.target, lab.target6, lab.silent, lab.unreachable][i % 4]
        mode = "icmp" if i % 3 == 0 else "udp"
        reader = "raw" if i % 5 == 0 else "auto"
        results[i] = (addr, traceroute(_t(addr), max_hops=6, timeout=0.5, mode=mode, reader=reader))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for addr, res in results.values():
        hops = lab.hops if ":" not in addr else lab.hops6
        got = _hops(res)
        assert [h[1] for h in got[:3]] == [[h] * 3 for h in hops], res.text
        if addr in (lab.target, lab.target6):
            assert got[3][1] == [addr] * 3 and res.success
        elif addr == lab.unreachable:
            assert got[3][1] == [lab.hops[-1]] * 3 and not res.success
        else:
            assert got[3][1] == [None] * 3 and len(got) == 6


def test_trace_bounds():
    t = _t("127.0.0.1")
    for kw in ({"max_hops": 0}, {"max_hops": 65}, {"probes_per_hop": 0}, {"probes_per_hop": 6},
               {"timeout": 0}, {"total_timeout": 1000}, {"mode": "tcp"}):
        with pytest.raises(ValueError):
            traceroute(t, **kw)


def test_trace_loopback():
    res = traceroute(_t("127.0.0.1"), max_hops=3, timeout=0.5)
    assert res.success and _hops(res) == [(1, ["127.0.0.1"] * 3)]
    res = traceroute(_t("::1"), max_hops=3, timeout=0.5, mode="icmp")
    assert res.success and _hops(res) == [(1, ["::1"] * 3)]
