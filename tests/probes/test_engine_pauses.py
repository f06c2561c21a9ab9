"""An engine paused longer than its per-probe timeout (a busy host: the process not scheduled
for a while) still counts the answers the kernel received in time.

The engine runs in a child process that stops itself (SIGSTOP) at one chosen point while its
probes to 127.0.0.1 are answered; this test continues it (SIGCONT) after a pause twice the
timeout. Real sockets, real packets, a real stopped process: only the moment of the pause is
chosen, so that the run is the same every time. Before the engines read what was queued before
timing probes out, the ping reported 50 % loss and the traceroute two stars here.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 0.5
PAUSE = 2 * TIMEOUT

PING_CHILD = """
import json, os, signal
from app.probes import ping as engine
from app.probes.targets import Target

class PausingSocket:
    # the engine's own socket; the process stops itself just after the last echo request left
    def __init__(self, sock, count):
        self._sock, self._left = sock, count
    def sendto(self, *args):
        sent = self._sock.sendto(*args)
        self._left -= 1
        if self._left == 0:
            os.kill(os.getpid(), signal.SIGSTOP)
        return sent
    def __getattr__(self, name):
        return getattr(self._sock, name)

real_open = engine.open_icmp_socket
def pausing_open(*args, **kwargs):
    sock, kind = real_open(*args, **kwargs)
    return PausingSocket(sock, 2), kind
engine.open_icmp_socket = pausing_open
result = engine.ping(Target("127.0.0.1", "127.0.0.1", 4), count=2, interval=0.2, timeout=TIMEOUT)
print(json.dumps({"success": result.success, "text": result.text, "data": result.data}))
"""

TRACEROUTE_CHILD = """
import json, os, signal
from app.probes import traceroute as engine
from app.probes.targets import Target

real_receive = engine._UdpTracer.receive
paused = []
def receive(self):
    # the first read takes one answer of the three, then the process stops with two still queued
    answers = real_receive(self)
    if paused:
        yield from answers
        return
    for answer in answers:
        yield answer
        break
    answers.close()
    paused.append(True)
    os.kill(os.getpid(), signal.SIGSTOP)
engine._UdpTracer.receive = receive
result = engine.traceroute(Target("127.0.0.1", "127.0.0.1", 4), max_hops=1, probes_per_hop=3,
                           timeout=TIMEOUT, reader="recverr")
print(json.dumps({"success": result.success, "text": result.text, "data": result.data}))
"""


def _state(pid):
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def run_paused(child_source):
    """Run the child, continue it PAUSE s after it stopped itself; its printed result and the pause."""
    source = f"TIMEOUT = {TIMEOUT}\n" + textwrap.dedent(child_source)
    child = subprocess.Popen([sys.executable, "-c", source], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        limit = time.monotonic() + 30
        while _state(child.pid) != "T":
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < limit, "the engine never reached its pause"
            time.sleep(0.01)
        stopped_at = time.monotonic()
        time.sleep(PAUSE)
        os.kill(child.pid, signal.SIGCONT)
        out, err = child.communicate(timeout=30)
        paused_for = time.monotonic() - stopped_at
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    return json.loads(out), paused_for


def test_a_paused_ping_counts_the_reply_that_arrived_while_it_was_stopped():
    result, paused_for = run_paused(PING_CHILD)
    assert paused_for > 2 * TIMEOUT  # longer than the per-packet timeout, and the probe's whole bound
    data = result["data"]
    stats = data["stats"]
    assert (stats["transmitted"], stats["received"], stats["loss_percent"]) == (2, 2, 0.0), result["text"]
    assert result["success"] and stats["late"] == 0
    assert [packet["seq"] for packet in data["packets"]] == [1, 2]
    assert all(packet["rtt_ms"] < TIMEOUT * 1000 for packet in data["packets"])  # by the kernel's clock
    assert "2 packets transmitted, 2 received, 0% packet loss" in result["text"]


def test_a_paused_traceroute_counts_the_answers_queued_while_it_was_stopped():
    result, paused_for = run_paused(TRACEROUTE_CHILD)
    assert paused_for > 2 * TIMEOUT
    hops = result["data"]["hops"]
    assert [[probe["address"] for probe in hop["probes"]] for hop in hops] == [["127.0.0.1"] * 3], result["text"]
    assert result["success"] and result["data"]["reached"]
    assert "*" not in result["text"].splitlines()[1]
