"""Build the bench environment, measure every figure against its baseline, print the table.

    python -m bench            # full run (a few minutes)
    python -m bench --smoke    # seconds: same code paths, tiny numbers (the test suite runs this)

Everything runs on this machine: a throwaway PostgreSQL and Redis, the network-namespace lab
of tests/lab (probes go only into 198.18.0.0/16), the API under start.sh with production
settings, and the load from separate processes (bench/load.py).
"""
import argparse
import contextlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests
import sqlalchemy as sa

from tests.support.gunicorn import ROOT, StartedServer
from tests.support.servers import PostgresServer, RedisServer, free_port, wait_for_port

PASSWORD = "bench password 0123456789"


@dataclass
class Sizes:
    """How much work each figure does."""

    throughput_seconds: float
    history_jobs: int
    history_requests: int
    concurrent_pings: int
    health_requests: int
    traceroutes: int
    rss_first: int
    rss_total: int
    logins: int
    rtt_count: int


FULL = Sizes(throughput_seconds=10, history_jobs=1_000_000, history_requests=400, concurrent_pings=100,
             health_requests=2000, traceroutes=50, rss_first=1000, rss_total=20000, logins=40, rtt_count=10)
SMOKE = Sizes(throughput_seconds=1, history_jobs=2000, history_requests=20, concurrent_pings=5,
              health_requests=100, traceroutes=3, rss_first=100, rss_total=300, logins=4, rtt_count=3)


@dataclass
class Figure:
    name: str
    measured: float
    baseline: float
    unit: str
    target: str
    ratio: float
    ok: bool | None  # None: shown for what it tells, without a target
    note: str = ""


def load(url, requests_total=1000, concurrency=8, headers=None, method="GET", body=None, duration=None):
    """Run bench/load.py in its own process and return its JSON result."""
    argv = [sys.executable, "-m", "bench.load", "--url", url, "--requests", str(requests_total),
            "--concurrency", str(concurrency), "--method", method]
    if duration:
        argv += ["--duration", str(duration)]
    if body is not None:
        argv += ["--body", json.dumps(body)]
    for name, value in (headers or {}).items():
        argv += ["--header", f"{name}: {value}"]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout)


def start_load(url, requests_total, concurrency, headers=None, method="GET", body=None):
    argv = [sys.executable, "-m", "bench.load", "--url", url, "--requests", str(requests_total),
            "--concurrency", str(concurrency), "--method", method]
    if body is not None:
        argv += ["--body", json.dumps(body)]
    for name, value in (headers or {}).items():
        argv += ["--header", f"{name}: {value}"]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)


class Bench:
    """The environment: database, Redis, lab, the API and a user with a key."""

    def __init__(self, sizes, lab, postgres, redis_server, workdir, bcrypt_rounds):
        self.sizes, self.lab, self.postgres, self.redis = sizes, lab, postgres, redis_server
        self.workdir = workdir
        self.bcrypt_rounds = bcrypt_rounds
        self.secret = secrets.token_urlsafe(48)
        self.servers = []
        self.extra_env = {}

    def api_env(self, database, **extra):
        env = {"APP_ENV": "production", "JWT_SECRET_KEY": self.secret, "METRICS_TOKEN": secrets.token_urlsafe(32),
               "DATABASE_URL": database,
               "RATELIMIT_STORAGE_URI": self.redis.url, "RATELIMIT_DEFAULT": "100000000 per hour",
               "RATELIMIT_AUTH": "100000000 per hour", "CONCURRENT_PROBES_ENTERPRISE": "1000",
               "BCRYPT_ROUNDS": str(self.bcrypt_rounds), "TRACEROUTE_HOP_TIMEOUT": "1.0",
               "LOG_LEVEL": "warning"}
        if self.lab is not None:
            env.update(PROBE_ALLOWED_NETWORKS=self.lab.allowed_networks, DNS_NAMESERVERS=self.lab.dns)
        env.update(self.extra_env)  # --api-env
        env.update(extra)
        return env

    def start_api(self, database, **extra):
        server = StartedServer(self.api_env(database, **extra), self.workdir).start(timeout=120)
        # start.sh logs "--access-logfile -": send it to the log file, which we don't read
        self.servers.append(server)
        match = re.search(r"gunicorn: (\d+) worker\(s\) x (\d+) threads", server.output())
        server.workers, server.threads = int(match.group(1)), int(match.group(2))
        return server

    def start_bare(self, workers, threads):
        port = free_port()
        with open(self.workdir / "bare.log", "wb") as log:  # the child keeps its own copy of the fd
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", str(workers),
                 "--threads", str(threads), "--bind", f"127.0.0.1:{port}", "--keep-alive", "5",
                 "--max-requests", "1000", "--no-control-socket",
                 "--max-requests-jitter", "50", "--log-level", "warning", "--access-logfile", "-",
                 "bench.bare_app:app"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(port)
        return proc, f"http://127.0.0.1:{port}"

    def stop(self):
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()


def seed_user(base, engine, name, tier="Enterprise"):
    """Register, promote to ``tier`` in the database, log in and create a key."""
    r = requests.post(f"{base}/api/users/register", json={"username": name, "email": f"{name}@example.com",
                                                          "password": PASSWORD}, timeout=30)
    r.raise_for_status()
    user_id = r.json()["user"]["id"]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET subscription_tier = :t WHERE id = :i"), {"t": tier, "i": user_id})
    token = requests.post(f"{base}/api/users/login", json={"username": name, "password": PASSWORD},
                          timeout=30).json()["token"]
    key = requests.post(f"{base}/api/apikeys", json={"description": "bench"},
                        headers={"Authorization": f"Bearer {token}"}, timeout=30).json()["api_key"]["key"]
    return user_id, {"X-API-Key": key}


def insert_jobs(engine, user_id, count):
    """``count`` completed jobs, one a minute back in time, inserted by the database itself."""
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO probe_jobs (user_id, probe_type, target, address, parameters, status, success, result,
                                    created_at, completed_at)
            SELECT :uid, 'ping', 'bench.example', '198.18.3.10', :params, 'completed', true, 'ok',
                   now() - g * interval '1 minute', now() - g * interval '1 minute'
            FROM generate_series(1, :n) AS g"""), {"uid": user_id, "n": count, "params": '{"count":4}'})
        conn.execute(sa.text("UPDATE users SET probe_job_count = probe_job_count + :n WHERE id = :i"),
                     {"n": count, "i": user_id})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE probe_jobs"))


def ratio_figure(name, measured, baseline, unit, target, higher_is_better, limit, note=""):
    ratio = measured / baseline if baseline else float("inf")
    ok = ratio >= limit if higher_is_better else ratio <= limit
    return Figure(name, measured, baseline, unit, target, ratio, ok, note)


def fig_throughput(bench, api, headers):
    """Alternate the API and the bare app in short rounds and take the median of the rounds'
    ratios: a burst of load from elsewhere on the machine then skews one round, not the figure."""
    url = f"{api.url}/api/users/me"
    rounds = 3
    seconds = bench.sizes.throughput_seconds / rounds * 1.5
    proc, bare_url = bench.start_bare(api.workers, api.threads)
    measured, baseline = [], []
    try:
        load(url, 200, 8, headers)  # warm-up: pools filled, code paths loaded
        load(f"{bare_url}/api/users/me", 200, 8)
        for _ in range(rounds):
            answer = load(url, 0, 16, headers, duration=seconds)
            assert answer["statuses"] == {"200": answer["requests"]}, answer["statuses"]
            measured.append(answer["rps"])
            baseline.append(load(f"{bare_url}/api/users/me", 0, 16, duration=seconds)["rps"])
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
    rounds_seen = sorted(zip(measured, baseline, strict=True), key=lambda pair: pair[0] / pair[1])
    middle_measured, middle_baseline = rounds_seen[len(rounds_seen) // 2]
    return ratio_figure("GET /api/users/me with X-API-Key, req/s", middle_measured, middle_baseline, "req/s",
                        ">= 0.5x bare Flask", True, 0.5, note="median of 3 alternating rounds: "
                        + ", ".join(f"{m / b:.2f}x" for m, b in rounds_seen))


def fig_history(bench, api, engine):
    sizes = bench.sizes
    big_id, big = seed_user(api.url, engine, "histbig")
    small_id, small = seed_user(api.url, engine, "histsmall")
    insert_jobs(engine, big_id, sizes.history_jobs)
    insert_jobs(engine, small_id, 10)
    url = f"{api.url}/api/probes/history?limit=10"
    results = {}
    for name, headers in (("small", small), ("big", big)):
        load(url, 20, 1, headers)
        results[name] = load(url, sizes.history_requests, 1, headers)
    return ratio_figure(f"GET /api/probes/history (limit 10), {sizes.history_jobs:,} jobs vs 10, p50",
                        results["big"]["p50_ms"], results["small"]["p50_ms"], "ms", "<= 2x", False, 2.0)


def fig_concurrent_pings(bench, api, headers):
    body = {"host": bench.lab.target, "count": 3}
    url = f"{api.url}/api/probes/ping"
    alone = load(url, 1, 1, headers, "POST", body)
    many = load(url, bench.sizes.concurrent_pings, bench.sizes.concurrent_pings, headers, "POST", body)
    assert many["statuses"] == {"200": bench.sizes.concurrent_pings}, many["statuses"]
    return ratio_figure(f"{bench.sizes.concurrent_pings} concurrent POST /api/probes/ping (count 3), wall time",
                        many["seconds"], alone["seconds"], "s", "<= 1.5x one alone", False, 1.5)


def fig_health_under_traceroutes(bench, api, headers):
    url = f"{api.url}/api/health"
    n = bench.sizes.health_requests
    load(url, 100, 4)
    quiet = load(url, n, 4)
    traces = start_load(f"{api.url}/api/probes/traceroute", bench.sizes.traceroutes, bench.sizes.traceroutes,
                        headers, "POST", {"host": bench.lab.silent, "max_hops": 12})
    time.sleep(1.0)  # let every traceroute start
    busy = load(url, n, 4)
    still_running = traces.poll() is None
    traces.communicate(timeout=300)
    note = "" if still_running else "traceroutes ended before the measurement did"
    return ratio_figure(f"GET /api/health p99 while {bench.sizes.traceroutes} traceroutes run", busy["p99_ms"],
                        quiet["p99_ms"], "ms", "<= 2x idle p99", False, 2.0, note)


def iputils_ping(address, count, interval):
    started = time.perf_counter()
    out = subprocess.run(["ping", "-n", "-c", str(count), "-i", str(interval), address], capture_output=True,
                         text=True, timeout=120).stdout
    wall = time.perf_counter() - started
    match = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    return wall, float(match.group(2))


def fig_ping_rtt_and_wall(bench, api, headers):
    from concurrent.futures import ThreadPoolExecutor

    lab = bench.lab
    count = bench.sizes.rtt_count

    def api_ping(n):
        started = time.perf_counter()
        body = requests.post(f"{api.url}/api/probes/ping", json={"host": lab.target, "count": n}, headers=headers,
                             timeout=120).json()
        return time.perf_counter() - started, body["data"]["stats"]["avg_ms"]

    with ThreadPoolExecutor(2) as pool:  # the same moment, the same host
        api_future = pool.submit(api_ping, count)
        ref_future = pool.submit(iputils_ping, lab.target, count, 1.0)
        _, api_avg = api_future.result()
        _, ref_avg = ref_future.result()
    diff = abs(api_avg - ref_avg)
    rtt = Figure("ping avg RTT, API vs iputils ping, same host, same moment", api_avg, ref_avg, "ms",
                 "within 0.2 ms or 10%", api_avg / ref_avg if ref_avg else 0,
                 diff <= 0.2 or diff <= 0.1 * ref_avg, f"difference {diff:.3f} ms")
    api_wall = statistics.median(api_ping(4)[0] for _ in range(3))
    ref_wall = statistics.median(iputils_ping(lab.target, 4, 1.0)[0] for _ in range(3))
    wall = ratio_figure("wall time of a 4-packet API ping vs ping -c 4 -i 1", api_wall, ref_wall, "s", "<= 1.1x",
                        False, 1.1)
    return [rtt, wall]


def fig_rss(bench, database, label):
    """Worker RSS under mixed load (reads, pings, logins), one worker x 256 threads, on ``database``
    (a PostgreSQL URL, or "" for start.sh's embedded SQLite)."""
    api = bench.start_api(database, WORKERS="1", THREADS="256", RATELIMIT_STORAGE_URI="memory://", MAX_REQUESTS="0",
                          PROBE_ALLOWED_NETWORKS="127.0.0.1/32")
    url = database.replace("postgresql://", "postgresql+psycopg2://") if database else \
        f"sqlite:///{bench.workdir / 'instance' / 'probeops.db'}"
    engine = sa.create_engine(url)
    _, headers = seed_user(api.url, engine, "rssuser")
    engine.dispose()
    worker = psutil.Process(api.proc.pid).children()[0]
    reads = [f"{api.url}/api/users/me", f"{api.url}/api/probes/history?limit=10", f"{api.url}/api/health"]
    login = {"username": "rssuser", "password": PASSWORD}
    first, total = bench.sizes.rss_first, bench.sizes.rss_total

    def drive(n):
        pings = start_load(f"{api.url}/api/probes/ping", max(1, n // 10), 16, headers, "POST",
                           {"host": "127.0.0.1", "count": 1})
        logins = start_load(f"{api.url}/api/users/login", max(1, n // 200), 2, method="POST", body=login)
        for url in reads:
            load(url, n // len(reads), 32, headers)
        pings.communicate(timeout=600)
        logins.communicate(timeout=600)

    drive(first)
    rss_first = worker.memory_info().rss
    drive(total - first)
    rss_total = worker.memory_info().rss
    api.stop()
    return ratio_figure(f"worker RSS ({label}, mixed load) after {total:,} requests vs after {first:,}",
                        rss_total / 2**20, rss_first / 2**20, "MiB", "<= 1.1x", False, 1.1)


def fig_slow_clients(bench, api):
    from bench.slow_clients import health_p99_idle_and_trickled

    idle, busy, tricklers = health_p99_idle_and_trickled("127.0.0.1", api.port, smoke=bench.sizes is SMOKE)
    figure = ratio_figure(f"GET /health p99 (new connections) with {tricklers} trickling connections open",
                          busy, idle, "ms", "<= 2x idle and < 1 s", False, 2.0)
    figure.ok = figure.ok and busy < 1000
    return figure


def _hash_batch(args):
    import bcrypt

    rounds, n = args
    for _ in range(n):
        bcrypt.hashpw(b"x" * 44, bcrypt.gensalt(rounds))
    return n


def fig_logins(bench, api, engine):
    from concurrent.futures import ProcessPoolExecutor

    cores = os.cpu_count() or 1
    n = bench.sizes.logins
    started = time.perf_counter()
    with ProcessPoolExecutor(cores) as pool:
        done = sum(pool.map(_hash_batch, [(bench.bcrypt_rounds, max(1, n // cores))] * cores))
    hashes_per_second = done / (time.perf_counter() - started)
    seed_user(api.url, engine, "loginuser")
    body = {"username": "loginuser", "password": PASSWORD}
    result = load(f"{api.url}/api/users/login", n, max(2, 2 * cores), method="POST", body=body)
    assert result["statuses"] == {"200": n}, result["statuses"]
    return ratio_figure(f"logins/s vs bcrypt hashes/s at cost {bench.bcrypt_rounds} ({cores} processes)",
                        result["rps"], hashes_per_second, "/s", ">= 0.9x", True, 0.9)


def print_header(api):
    cores = os.cpu_count()
    print(f"\nProbeOps benchmarks — {cores} cores, API: {api.workers} gthread workers x {api.threads} threads")
    print(f"{'figure':<72} {'measured':>14} {'baseline':>14} {'ratio':>7} {'target':<22} result", flush=True)


def print_figure(f):
    print(f"{f.name:<72} {f.measured:>9.3f} {f.unit:<4} {f.baseline:>9.3f} {f.unit:<4} {f.ratio:>6.2f}x "
          f"{f.target:<22} {RESULT_WORDS[f.ok]}{'  ' + f.note if f.note else ''}", flush=True)


RESULT_WORDS = {True: "ok", False: "MISSED", None: "(shown)"}  # None: a figure shown without a target


def run(smoke=False, lab=None, postgres=None, redis_server=None, bcrypt_rounds=None, only=None, api_env=None):
    """Run the suite; returns the list of Figures. Servers given are reused, others made and stopped."""
    from bench.measurements import measurement_figures

    sizes = SMOKE if smoke else FULL
    rounds = bcrypt_rounds or (4 if smoke else 12)
    with contextlib.ExitStack() as stack:
        needs_lab = not only or set(only) & {"pings", "health", "rtt", "measurements"}
        if lab is None and needs_lab:
            from tests.lab.netlab import Lab

            lab = stack.enter_context(Lab())
            lab.verify_routes()
        if postgres is None:
            postgres = PostgresServer().start()
            stack.callback(postgres.stop)
        if redis_server is None:
            redis_server = RedisServer().start()
            stack.callback(redis_server.stop)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="probeops-bench-")))
        bench = Bench(sizes, lab, postgres, redis_server, workdir, rounds)
        stack.callback(bench.stop)
        bench.extra_env = dict(api_env or {})
        database = postgres.create_database(f"probeops_bench_{secrets.token_hex(3)}")
        api = bench.start_api(database)
        engine = sa.create_engine(database.replace("postgresql://", "postgresql+psycopg2://"))
        stack.callback(engine.dispose)
        _, headers = seed_user(api.url, engine, "bench")
        if lab is not None:
            lab.verify_routes()
        steps = {
            "throughput": lambda: [fig_throughput(bench, api, headers)],
            "history": lambda: [fig_history(bench, api, engine)],
            "pings": lambda: [fig_concurrent_pings(bench, api, headers)],
            "health": lambda: [fig_health_under_traceroutes(bench, api, headers)],
            "rtt": lambda: fig_ping_rtt_and_wall(bench, api, headers),
            "logins": lambda: [fig_logins(bench, api, engine)],
            "rss": lambda: [fig_rss(bench, database, "PostgreSQL"), fig_rss(bench, "", "SQLite")],
            "slow": lambda: [fig_slow_clients(bench, api)],
            "measurements": lambda: measurement_figures(bench, api, headers, smoke),
        }
        figures = []
        print_header(api)
        for name, step in steps.items():
            if only and name not in only:
                continue
            for figure in step():
                print_figure(figure)
                figures.append(figure)
        return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description="ProbeOps benchmarks")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that everything runs")
    parser.add_argument("--bcrypt-rounds", type=int, default=None, help="BCRYPT_ROUNDS for the API (12)")
    parser.add_argument("--only", nargs="*", help="throughput history pings health rtt logins rss slow measurements")
    parser.add_argument("--api-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the API under test, e.g. --api-env THREADS=8")
    args = parser.parse_args(argv)
    api_env = dict(item.split("=", 1) for item in args.api_env)
    run(smoke=args.smoke, bcrypt_rounds=args.bcrypt_rounds, only=args.only, api_env=api_env)


if __name__ == "__main__":
    main()
