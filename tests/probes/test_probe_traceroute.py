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


def _readable_copy():
    """The engines and their libraries (dnspython, idna) copied to a world-readable temp dir.

    ``nobody`` may not be able to read the checkout or its virtualenv (a clone under /root is
    mode 0700), so the subprocess imports this copy and runs the real interpreter, not the
    venv's symlink.  Only what the engines import is copied: app/probes as ``app.probes``.
    """
    import os
    import shutil
    import tempfile

    import dns
    import idna

    import app.probes

    root = tempfile.mkdtemp(prefix="probeops-nobody-")
    os.chmod(root, 0o755)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    os.makedirs(os.path.join(root, "app"))
    open(os.path.join(root, "app", "__init__.py"), "w").close()
    shutil.copytree(os.path.dirname(app.probes.__file__), os.path.join(root, "app", "probes"), ignore=ignore)
    for package in (dns, idna):
        src = os.path.dirname(package.__file__)
        shutil.copytree(src, os.path.join(root, os.path.basename(src)), ignore=ignore)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return root


def _run_as(prefix, code, *args):
    import json
    import os
    import shutil
    import subprocess
    import sys
    root = _readable_copy()
    try:
        # -I: only the copy and the standard library, never the (maybe unreadable) checkout or venv
        python = os.path.realpath(sys.executable)
        p = subprocess.run([*prefix, python, "-I", "-c", f"import sys; sys.path.insert(0, {root!r}); {code}", *args],
                           capture_output=True, text=True, timeout=30, cwd=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


_CODE = ("import json,sys; from app.probes.traceroute import traceroute; from app.probes.ping import ping;"
         "from app.probes.targets import Target;"
         "T=lambda a: Target(a,a,6 if ':' in a else 4);"
         "out=[[r.success, r.data, r.text] for r in (traceroute(T(a),max_hops=6,timeout=0.5,mode=m,reader=rd)"
         " for a in sys.argv[1:] for m,rd in (('udp','auto'),('icmp','recverr')))];"
         "out.append([None, ping(T(sys.argv[1]),count=1,timeout=0.5).data, None]);"
         "print(json.dumps(out))")


def test_trace_unprivileged_as_nobody(lab_routes):
    """As user nobody (no CAP_NET_RAW, outside ping_group_range): UDP traceroute works through
    the error queue; ICMP mode and ping fail with a clear privilege error."""
    import shutil
    lab = lab_routes
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) not installed")
    out = _run_as(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"],
                  _CODE, lab.target, lab.target6)
    (ok4, d4, _t4), (iok4, id4, _), (ok6, d6, _t6), (iok6, id6, _), (_, pd, _) = out
    assert ok4 and ok6 and d4["socket"] == d6["socket"] == "udp+recverr"
    assert [h["probes"][0]["address"] for h in d4["hops"]] == [*lab.hops, lab.target]
    assert [h["probes"][0]["address"] for h in d6["hops"]] == [*lab.hops6, lab.target6]
    with open("/proc/sys/net/ipv4/ping_group_range") as f:
        gid_allowed = f.read().split() != ["1", "0"]
    if not gid_allowed:
        assert not iok4 and id4["error"] == "insufficient_privilege"
        assert pd["error"] == "insufficient_privilege" and "ping_group_range" in pd["message"]


def test_trace_icmp_datagram_socket_in_namespace(lab_routes):
    """Inside lab router r1 with ping_group_range open: ICMP-mode traceroute over the unprivileged
    ICMP datagram socket and its error queue."""
    lab = lab_routes
    ns = lab.namespaces[0]
    lab.nsexec(ns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    out = _run_as(["ip", "netns", "exec", ns], _CODE, lab.target, lab.target6)
    (_ok4, _d4, _), (iok4, id4, t4), (_ok6, _d6, _), (iok6, id6, t6), _ = out
    assert iok4 and id4["socket"] == "icmp+dgram", t4
    assert [h["probes"][0]["address"] for h in id4["hops"]] == [lab.hops[1], lab.hops[2], lab.target]
    assert iok6 and [h["probes"][0]["address"] for h in id6["hops"]] == [lab.hops6[1], lab.hops6[2], lab.target6]
