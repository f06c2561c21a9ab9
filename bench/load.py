"""A load generator, run as its own process so it never shares the server's interpreter.

    python -m bench.load --url http://127.0.0.1:5000/api/users/me --requests 2000 --concurrency 8 \
        --header 'X-API-Key: probeops.…' [--method POST --body '{"host": "…"}'] [--duration 10]
        [--start-at EPOCH | --start-on-stdin] [--interval 0.01] [--latencies]

Each thread keeps one HTTP/1.1 connection alive. With --start-at or --start-on-stdin the threads
connect first and begin together at that moment (or when a line arrives on stdin): a process
started ahead of a burst fires with it, its own start-up out of the way. Prints one JSON line: requests, errors,
status counts, seconds, rps and latency percentiles in ms (every latency too with --latencies).
"""
import argparse
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def run(url, requests_total, concurrency, headers, method="GET", body=None, duration=None, timeout=120.0,
        start_at=None, start_on_stdin=False, interval=None, keep_latencies=False):
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lock = threading.Lock()
    state = {"left": requests_total, "latencies": [], "statuses": {}, "errors": 0, "deadline": None}
    go = threading.Event()
    payload = body.encode() if body else None
    send_headers = dict(headers)
    if payload is not None:
        send_headers.setdefault("Content-Type", "application/json")

    def take():
        with lock:
            if state["deadline"] is not None:
                return time.monotonic() < state["deadline"]
            if state["left"] <= 0:
                return False
            state["left"] -= 1
            return True

    def worker():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        if start_at or start_on_stdin:
            try:
                conn.connect()
            except OSError:
                pass  # the first request connects again (and counts the error if that fails too)
        go.wait()
        next_at = time.monotonic()
        while take():
            if interval:  # paced like a monitor: one request every `interval` seconds, not back to back
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + interval, time.monotonic())
            started = time.perf_counter()
            try:
                conn.request(method, path, body=payload, headers=send_headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
                with lock:
                    state["errors"] += 1
                continue
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                state["latencies"].append(elapsed)
                state["statuses"][status] = state["statuses"].get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    if start_at:
        time.sleep(max(0.0, start_at - time.time()))
    elif start_on_stdin:
        sys.stdin.readline()
    started = time.perf_counter()
    if duration:
        state["deadline"] = time.monotonic() + duration
    go.set()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    latencies = sorted(state["latencies"])
    result = {
        "requests": len(latencies), "errors": state["errors"], "statuses": state["statuses"],
        "seconds": seconds, "rps": len(latencies) / seconds if seconds else 0.0,
        "p50_ms": percentile(latencies, 0.50), "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99), "max_ms": latencies[-1] if latencies else None,
    }
    if keep_latencies:
        result["latencies_ms"] = latencies
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default=None)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--start-at", type=float, default=None,
                        help="epoch seconds: connect, then wait for this moment before the first request")
    parser.add_argument("--start-on-stdin", action="store_true",
                        help="connect, then wait for a line on stdin before the first request")
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between one connection's requests (a monitor's pace); default: back to back")
    parser.add_argument("--latencies", action="store_true",
                        help="also print every latency (latencies_ms), to pool the samples of several runs")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    result = run(args.url, args.requests, args.concurrency, headers, args.method, args.body, args.duration,
                 start_at=args.start_at, start_on_stdin=args.start_on_stdin,
                 interval=args.interval, keep_latencies=args.latencies)
    result["statuses"] = {str(k): v for k, v in result["statuses"].items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
