"""Shared helpers for the probe tests: run a reference tool and an engine at the same moment."""
import re
import subprocess
import threading


def run_tool(cmd, timeout=60):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def at_same_moment(engine_call, tool_cmd, timeout=60):
    """Start the reference tool, run the engine meanwhile, return (engine result, tool process)."""
    box = {}

    def tool():
        box["tool"] = run_tool(tool_cmd, timeout)

    t = threading.Thread(target=tool)
    t.start()
    try:
        result = engine_call()
    finally:
        t.join(timeout + 5)
    return result, box["tool"]


_PING_LINE = re.compile(r"(\d+) bytes from ([\w:.]+): icmp_seq=(\d+) ttl=(\d+) time=([\d.]+) ms")
_PING_SUM = re.compile(r"(\d+) packets transmitted, (\d+) received(?:, \+(\d+) duplicates)?"
                       r"(?:, \+(\d+) errors)?, ([\d.]+)% packet loss")
_PING_RTT = re.compile(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")


def parse_ping(text):
    """iputils ping output -> dict(packets=[(seq, ttl, rtt)], transmitted, received, loss, rtt=(min,avg,max,mdev))."""
    out = {"packets": [(int(m[2]), int(m[3]), float(m[4]), m[1]) for m in _PING_LINE.findall(text)]}
    m = _PING_SUM.search(text)
    out.update(transmitted=int(m[1]), received=int(m[2]), loss=float(m[5])) if m else None
    r = _PING_RTT.search(text)
    out["rtt"] = tuple(float(x) for x in r.groups()) if r else None
    out["unreachable"] = re.findall(r"From ([\w:.]+) icmp_seq=(\d+) (.+)", text)
    return out


_HOP = re.compile(r"^\s*(\d+)\s+(.*)$")


def parse_traceroute(text):
    """traceroute -n output -> list of (ttl, [address or None per probe], [annotations])."""
    hops = []
    for line in text.splitlines()[1:]:
        m = _HOP.match(line)
        if not m:
            continue
        ttl, rest = int(m[1]), m[2]
        probes, cur = [], None
        for tok in re.findall(r"\*|[0-9a-f:.]+ ms|![A-Za-z0-9]*|[0-9a-f:.]+", rest):
            if tok == "*":
                probes.append(None)
            elif tok.endswith(" ms"):
                probes.append(cur)
            elif tok.startswith("!"):
                continue
            else:
                cur = tok
        hops.append((ttl, probes))
    return hops
