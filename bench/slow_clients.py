"""Slow-client figure: ``GET /health`` p99 with N trickling connections open, against none, same run.

    python -m bench --only slow                          # as part of the suite (500 connections)
    python -m bench.slow_clients --trickle HOST PORT N   # only the tricklers (runs until killed)

Half the tricklers send ``GET /health HTTP/1.1\\r\\nX`` and then one byte every INTERVAL seconds;
the other half send a complete head announcing a 1000-byte body and trickle the body the same
way. A trickler the server cuts off (its head or body deadline) reconnects at once, so N stay open
for the whole measurement. They run in their own process; each measured ``/health`` is a new
connection (``Connection: close``), as a new client would make it.
"""
import argparse
import http.client
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERVAL = 2.0
HEAD_TRICKLE = b"GET /health HTTP/1.1\r\nX"
BODY_TRICKLE = (b"POST /api/users/register HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{")
FULL = {"tricklers": 500, "requests": 1000}
SMOKE = {"tricklers": 50, "requests": 100}


def trickle(host, port, count):
    """Keep ``count`` trickling connections open until SIGTERM."""
    selector = selectors.DefaultSelector()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    def connect(index):
        sock = socket.create_connection((host, port), timeout=5)
        sock.setblocking(False)
        sock.send(BODY_TRICKLE if index % 2 else HEAD_TRICKLE)
        selector.register(sock, selectors.EVENT_READ, index)

    for index in range(count):
        connect(index)
    print("ready", flush=True)
    next_byte = time.monotonic() + INTERVAL
    while not stop:
        for key, _ in selector.select(timeout=max(0.0, next_byte - time.monotonic())):
            selector.unregister(key.fileobj)  # answered (408) or closed by the server: reconnect
            key.fileobj.close()
            connect(key.data)
        if time.monotonic() >= next_byte:
            next_byte += INTERVAL
            for key in list(selector.get_map().values()):
                try:
                    key.fileobj.send(b"a")
                except OSError:
                    pass  # the selector reports it closed on the next turn
    for key in list(selector.get_map().values()):
        key.fileobj.close()


def health_latencies(host, port, count):
    """Milliseconds of ``count`` sequential ``GET /health``, each on a new connection."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request("GET", "/health", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"/health answered {response.status}")
        latencies.append((time.perf_counter() - started) * 1000)
    return sorted(latencies)


def p99(sorted_values):
    return sorted_values[min(len(sorted_values) - 1, round(0.99 * (len(sorted_values) - 1)))]


def health_p99_idle_and_trickled(host, port, smoke=False):
    """(p99 ms with no tricklers, p99 ms with them, how many tricklers)."""
    sizes = SMOKE if smoke else FULL
    health_latencies(host, port, 50)  # warm-up
    idle = p99(health_latencies(host, port, sizes["requests"]))
    tricklers = subprocess.Popen([sys.executable, "-m", "bench.slow_clients", "--trickle", host, str(port),
                                  str(sizes["tricklers"])], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        if tricklers.stdout.readline().strip() != "ready":
            raise RuntimeError("the tricklers did not start")
        time.sleep(INTERVAL)  # every trickler has sent at least one more byte
        busy = p99(health_latencies(host, port, sizes["requests"]))
    finally:
        tricklers.send_signal(signal.SIGTERM)
        tricklers.wait(30)
        tricklers.stdout.close()
    return idle, busy, sizes["tricklers"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trickle", nargs=3, metavar=("HOST", "PORT", "N"), required=True)
    args = parser.parse_args(argv)
    host, port, count = args.trickle
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * int(count) + 64)), hard))
    trickle(host, int(port), int(count))
    os._exit(0)


if __name__ == "__main__":
    main()
