"""A load generator, run as its own process so it never shares the server's interpreter.

    python -m bench.load --url http://127.0.0.1:5000/api/users/me --requests 2000 --concurrency 8 \
        --header 'X-API-Key: probeops.…' [--method POST --body '{"host": "…"}'] [--duration 10]

Each thread keeps one HTTP/1.1 connection alive. Prints one JSON line: requests, errors,
status counts, seconds, rps and latency percentiles in ms.
"""
import argparse
import http.client
import json
import threading
import time
from urllib.parse import urlsplit


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def run(url, requests_total, concurrency, headers, method="GET", body=None, duration=None, timeout=120.0):
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lock = threading.Lock()
    state = {"left": requests_total, "latencies": [], "statuses": {}, "errors": 0}
    deadline = time.monotonic() + duration if duration else None
    payload = body.encode() if body else None
    send_headers = dict(headers)
    if payload is not None:
        send_headers.setdefault("Content-Type", "application/json")

    def take():
        with lock:
            if deadline is not None:
                return time.monotonic() < deadline
            if state["left"] <= 0:
                return False
            state["left"] -= 1
            return True

    def worker():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        while take():
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
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    latencies = sorted(state["latencies"])
    return {
        "requests": len(latencies), "errors": state["errors"], "statuses": state["statuses"],
        "seconds": seconds, "rps": len(latencies) / seconds if seconds else 0.0,
        "p50_ms": percentile(latencies, 0.50), "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99), "max_ms": latencies[-1] if latencies else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default=None)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    result = run(args.url, args.requests, args.concurrency, headers, args.method, args.body, args.duration)
    result["statuses"] = {str(k): v for k, v in result["statuses"].items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
