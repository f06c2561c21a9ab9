"""Measurement figures (issue 9): probes dispatched through Celery to agents over the lab.

    python -m bench --only measurements          # full: ten agents, 50 ten-location measurements
    python -m bench --smoke --only measurements  # seconds: two agents, three two-location ones

What runs: a second API (``./start.sh`` with ``CELERY_BROKER_URL`` on the bench's Redis, its own
PostgreSQL database), the central worker (``./start.sh worker``) and N agents (``./start.sh
agent``, one process each, ``AGENT_NAME`` bench-01…, tag ``bench``), all in the root namespace of
the lab, probing only the lab's target. The embedded API the other figures use is the baseline of
the synchronous ping. Three figures, each against a baseline of the same run:

- results in flight: N measurements x N locations posted at once (client processes started
  ahead, firing together), wall time (first measurement created -> last result stored, the
  rows' own timestamps) against one measurement alone; and ``/api/health`` p99, asked at a
  monitor's pace, while those results are in flight (from the last POST's answer on) against
  idle; the p99 while the POSTs themselves are answered is shown beside it, without a target;
- dispatch overhead: POST -> first result seen by the client (GET every few ms), against the same
  ping run directly here by the engine (``run_spec``), the probe's own duration;
- a synchronous ping through an agent against the same ping on the embedded API.
"""
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import requests
import sqlalchemy as sa

from app.services.celery_dispatch import LOCATIONS_CACHE_SECONDS
from bench.load import percentile
from tests.support.gunicorn import ROOT

AGENT_TAG = "bench"
# The ten agents stand in for ten remote sites, which would take none of the API host's CPU: here
# they run at the lowest CPU priority (AGENT_NICE) and under SCHED_IDLE (AGENT_CPU_POLICY), taking
# what the API and the central worker leave, and yielding the CPU at once to any of them that
# wakes. The central worker runs as start.sh runs it (WORKER_NICE, 10 by default).
AGENT_NICE = "19"
AGENT_CPU_POLICY = "idle"
# The bench's own work while a burst runs shares the 2 cores with what it measures: it reads the
# rows (PostgreSQL's CPU; the figure comes from their timestamps, not from when the bench notices)
# no more often than this, and looks at its client processes (no CPU to speak of) every
# POLL_SECONDS. The processes' CPU is read before and after a burst only (Fleet.cpu_seconds).
POLL_SECONDS = 0.05
ROWS_POLL_SECONDS = 0.25
CLIENT_POLL_SECONDS = 0.005  # the client's GET while waiting for a first result
# /api/health is asked like a monitor asks it, at the same pace idle and busy: each of 2
# connections every 20 ms, 100 requests a second (~160 samples a burst, pooled over the bursts).
# Faster, the monitor would be a load of its own on the 2 cores it measures: a health request
# costs the API ~0.8 ms of CPU (measured), so 400 a second took ~0.3 core, plus the client's.
HEALTH_CONNECTIONS = 2
HEALTH_INTERVAL = 0.02
CLIENTS_READY_SECONDS = 1.5  # the burst's client processes start, connect, then fire together after this
CREATING_HEALTH_SECONDS = 0.5  # the health load while the burst's POSTs are answered


@dataclass
class MeasurementSizes:
    """How much work the measurement figures do."""

    agents: int
    measurements: int
    users: int  # the measurements at once come from this many users (a user's creations queue on its row)
    ping_count: int
    alone_runs: int
    bursts: int  # measured bursts (the figure is their median), after a warm-up one if warmup_burst
    warmup_burst: bool
    overhead_samples: int
    sync_count: int
    sync_runs: int


FULL = MeasurementSizes(agents=10, measurements=50, users=10, ping_count=3, alone_runs=3, bursts=5,
                        warmup_burst=True, overhead_samples=20, sync_count=4, sync_runs=3)
SMOKE = MeasurementSizes(agents=2, measurements=3, users=3, ping_count=1, alone_runs=1, bursts=1,
                         warmup_burst=False, overhead_samples=2, sync_count=2, sync_runs=1)


def agent_name(index):
    return f"bench-{index + 1:02d}"


class Fleet:
    """The Celery side: an API in Celery mode, the central worker and the agents (start.sh roles)."""

    def __init__(self, bench, sizes):
        self.bench, self.sizes = bench, sizes
        self.broker = bench.redis.url.rsplit("/", 1)[0] + "/5"  # the rate limits keep database 0
        self.procs = []
        self.api = None
        self.database = None

    def role_env(self, **extra):
        bin_dir = os.path.dirname(sys.executable)
        workdir = self.bench.workdir
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(workdir), "LANG": "C.UTF-8",
               "PROBEOPS_SKIP_DOTENV": "1", "PROBEOPS_INSTANCE_PATH": str(workdir / "instance"),
               "CELERY_BROKER_URL": self.broker, "LOG_LEVEL": "warning"}
        env.update(extra)
        return env

    def start_role(self, role, env, label):
        log = open(self.bench.workdir / f"{label}.log", "wb")  # noqa: SIM115 - the child keeps its copy
        proc = subprocess.Popen([str(ROOT / "start.sh"), role], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        proc.label = label
        self.procs.append(proc)
        return proc

    def start(self):
        """The API (migrations), then the central worker and the agents; returns when all are online."""
        bench, lab = self.bench, self.bench.lab
        self.database = bench.postgres.create_database(f"probeops_bench_celery_{os.getpid()}")
        self.api = bench.start_api(self.database, CELERY_BROKER_URL=self.broker, DEFAULT_LOCATION=agent_name(0),
                                   MEASUREMENT_MAX_PROBES=str(max(16, self.sizes.agents)))
        self.start_role("worker", self.role_env(**bench.api_env(self.database)), "central-worker")
        concurrency = str(max(16, self.sizes.measurements + 8))
        for index in range(self.sizes.agents):
            self.start_role("agent", self.role_env(
                AGENT_NAME=agent_name(index), AGENT_TAGS=AGENT_TAG, AGENT_CONCURRENCY=concurrency,
                AGENT_NICE=AGENT_NICE, AGENT_CPU_POLICY=AGENT_CPU_POLICY,
                PROBE_ALLOWED_NETWORKS=lab.allowed_networks, DNS_NAMESERVERS=lab.dns),
                agent_name(index))
        self.engine = sa.create_engine(self.database.replace("postgresql://", "postgresql+psycopg2://"))
        from bench.run import seed_user

        self.user_id, self.headers = seed_user(self.api.url, self.engine, "agentbench")
        self.burst_users = [seed_user(self.api.url, self.engine, f"burst{i}") for i in range(self.sizes.users)]
        self.user_ids = [self.user_id] + [user_id for user_id, _ in self.burst_users]
        self.wait_online(timeout=120)
        return self

    def wait_online(self, timeout):
        names = {agent_name(i) for i in range(self.sizes.agents)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            body = requests.get(f"{self.api.url}/api/locations", headers=self.headers, timeout=10).json()
            if names <= {loc["name"] for loc in body.get("locations", [])}:
                # Each API worker keeps its list of online agents for a second: another worker
                # may still hold a list read before the agents came up (a 400 no_matching_location).
                time.sleep(LOCATIONS_CACHE_SECONDS + 0.2)
                return
            time.sleep(0.5)
        raise RuntimeError(f"agents not online after {timeout}s")

    def check_alive(self):
        for proc in self.procs:
            if proc.poll() is not None:
                log = (self.bench.workdir / f"{proc.label}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{proc.label} exited with {proc.returncode}:\n{log}")

    def cpu_seconds(self):
        """CPU seconds (user + system) used so far by each role's processes, children included.

        A process that has ended and been waited for (a Gunicorn worker recycled by --max-requests)
        is in its parent's children times, so two samples, before and after a burst, count all
        of it: the bench does not walk /proc while it measures (one walk costs milliseconds of
        CPU on the 2 cores it measures; sampled every half second it showed in the health p99).
        """
        import psutil

        roots = {"api": [self.api.proc.pid], "agents": [p.pid for p in self.procs if p.label.startswith("bench-")],
                 "central worker": [p.pid for p in self.procs if p.label == "central-worker"],
                 "PostgreSQL": [self.bench.postgres.proc.pid], "Redis": [self.bench.redis.proc.pid]}
        children = {}
        for proc in psutil.process_iter(["ppid"]):  # one walk of /proc for every role
            children.setdefault(proc.info["ppid"], []).append(proc.pid)
        used = {}
        for role, pids in roots.items():
            used[role], stack = 0.0, list(pids)
            while stack:
                pid = stack.pop()
                stack += children.get(pid, [])
                with contextlib.suppress(psutil.Error):
                    times = psutil.Process(pid).cpu_times()
                    used[role] += times.user + times.system + times.children_user + times.children_system
        return used

    def print_logs(self, tail=4000):
        """The end of every role's log, on stderr (why a figure could not be measured)."""
        logs = [(proc.label, self.bench.workdir / f"{proc.label}.log") for proc in self.procs]
        if self.api is not None:
            logs.append(("api", self.api.log_path))
        for label, path in logs:
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace")
                problems = [line for line in text.splitlines() if any(
                    word in line for word in ("WARNING", "ERROR", "Traceback", '"status": 5'))]
                print(f"--- {label} ---\n{text[-tail:]}\n--- {label}: warnings and errors ---\n"
                      + "\n".join(problems[-20:]), file=sys.stderr)

    def stop(self):
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if self.api is not None:
            self.api.stop()
            self.bench.servers.remove(self.api)
        with contextlib.suppress(AttributeError):
            self.engine.dispose()


# -- helpers ----------------------------------------------------------------------------------------------
def measurement_body(target, count, limit):
    return {"type": "ping", "target": target, "options": {"count": count}, "locations": [{"tag": AGENT_TAG}],
            "limit": limit}


def load_argv(url, requests_total, concurrency, headers=None, method="GET", body=None, duration=None,
              start_at=None, interval=None, latencies=False):
    argv = [sys.executable, "-m", "bench.load", "--url", url, "--requests", str(requests_total),
            "--concurrency", str(concurrency), "--method", method] + (["--latencies"] if latencies else [])
    if start_at:
        argv += ["--start-at", repr(start_at)]
    if interval:
        argv += ["--interval", repr(interval)]
    if duration:
        argv += ["--duration", str(duration)]
    if body is not None:
        argv += ["--body", json.dumps(body)]
    for name, value in (headers or {}).items():
        argv += ["--header", f"{name}: {value}"]
    return argv


def spawn_load(*args, start_on_stdin=False, monitor=False, **kwargs):
    """bench/load.py in its own process; ``monitor``: in a session of its own, as a monitor runs
    elsewhere (the scheduler's autogroups do not share its CPU with the bench's other processes)."""
    argv = load_argv(*args, **kwargs) + (["--start-on-stdin"] if start_on_stdin else [])
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=monitor,
                            stdin=subprocess.PIPE if start_on_stdin else None)


def finish_load(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    return json.loads(out)


def check_posts(posts):
    """For each POST load that has ended: every answer must be 202, else stop with what came back."""
    for proc, expected in posts or ():
        if proc.poll() is None:
            continue
        if not hasattr(proc, "result"):
            proc.result = finish_load(proc)
        if proc.result["statuses"] != {"202": expected}:
            raise RuntimeError(f"POST /api/measurements answered {proc.result['statuses']} "
                               f"({proc.result['errors']} connection errors) for {expected}")


def post_measurements(url, users, how_many, body, start_at=None):
    """``how_many`` POSTs at once, spread over ``users`` (headers), one bench/load.py process each
    (``start_at``: all of them fire at that moment, not as each process gets going)."""
    posts = []
    for index, headers in enumerate(users):
        share = how_many // len(users) + (1 if index < how_many % len(users) else 0)
        if share:
            posts.append((spawn_load(url, share, share, headers, "POST", body, start_at=start_at), share))
    return posts


def end_posts(posts):
    for proc, _ in posts:
        proc.wait(120)
    check_posts(posts)


def wait_finished(fleet, before, expected, timeout, posts=None, on_posts_done=None):
    """Poll the rows until ``expected`` measurements made after the user's first ``before`` have finished.

    Returns (wall seconds from the first one created to the last result stored, peak results
    running at once, results by status).
    """
    deadline = time.monotonic() + timeout
    peak = 0
    rows_read = float("-inf")
    query = sa.text("""
        WITH m AS (SELECT id, status, created_at, updated_at FROM measurements WHERE user_id = ANY(:u)
                   ORDER BY created_at DESC LIMIT :n)
        SELECT (SELECT count(*) FROM measurements WHERE user_id = ANY(:u)),
               (SELECT count(*) FROM m WHERE status = 'finished'),
               (SELECT EXTRACT(EPOCH FROM max(updated_at) - min(created_at)) FROM m),
               (SELECT count(*) FROM probe_jobs j JOIN m ON j.measurement_id = m.id WHERE j.status = 'running')""")
    while True:
        if time.monotonic() - rows_read >= ROWS_POLL_SECONDS:  # the first pass reads them
            rows_read = time.monotonic()
            with fleet.engine.connect() as conn:
                made, finished, wall, running = conn.execute(query, {"u": fleet.user_ids, "n": expected}).one()
            peak = max(peak, running)
        check_posts(posts)
        if on_posts_done is not None and all(proc.poll() is not None for proc, _ in posts):
            on_posts_done()
            on_posts_done = None
        if made >= before + expected and finished == expected:
            break
        if time.monotonic() > deadline:
            with fleet.engine.connect() as conn:
                jobs = conn.execute(sa.text("SELECT id, status, location, deadline_at, started_at FROM probe_jobs "
                                            "ORDER BY id DESC LIMIT 12")).all()
            raise RuntimeError(f"{finished}/{expected} measurements finished after {timeout}s "
                               f"({made - before} of them made); latest jobs: {jobs}")
        time.sleep(POLL_SECONDS)
    with fleet.engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("""
            SELECT j.status || CASE WHEN j.success THEN '' ELSE ' (unsuccessful)' END, count(*)
            FROM probe_jobs j
            JOIN (SELECT id FROM measurements WHERE user_id = ANY(:u) ORDER BY created_at DESC LIMIT :n) m
              ON j.measurement_id = m.id GROUP BY 1"""), {"u": fleet.user_ids, "n": expected}).all())
        timeline = conn.execute(sa.text("""
            WITH m AS (SELECT id, created_at FROM measurements WHERE user_id = ANY(:u)
                       ORDER BY created_at DESC LIMIT :n), t0 AS (SELECT min(created_at) AS t FROM m)
            SELECT EXTRACT(EPOCH FROM (SELECT max(created_at) FROM m) - t0.t),
                   EXTRACT(EPOCH FROM max(j.started_at) - t0.t), EXTRACT(EPOCH FROM max(j.completed_at) - t0.t)
            FROM probe_jobs j JOIN m ON j.measurement_id = m.id, t0 GROUP BY t0.t"""),
                                {"u": fleet.user_ids, "n": expected}).one()
    statuses["timeline"] = "created by {:.2f} s, all started by {:.2f} s, all stored by {:.2f} s".format(
        *(float(v) for v in timeline))
    return float(wall), peak, statuses


def measurements_made(fleet):
    with fleet.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM measurements WHERE user_id = ANY(:u)"),
                            {"u": fleet.user_ids}).scalar()


def run_measurements(fleet, how_many, timeout=300):
    """POST ``how_many`` N-location measurements at once (bench/load.py), wait for every result."""
    sizes, lab = fleet.sizes, fleet.bench.lab
    before = measurements_made(fleet)
    body = measurement_body(lab.target, sizes.ping_count, sizes.agents)
    posts = post_measurements(f"{fleet.api.url}/api/measurements", [fleet.headers], how_many, body)
    wall, peak, statuses = wait_finished(fleet, before, how_many, timeout, posts)
    end_posts(posts)
    return wall, peak, statuses


# -- the figures ------------------------------------------------------------------------------------------
@dataclass
class Burst:
    """One burst of ``sizes.measurements`` measurements at once, as measured."""

    wall: float  # first measurement created -> last result stored (the rows' timestamps)
    note: str  # statuses, timeline and CPU by role
    in_flight: list  # /api/health latencies (ms) while the results are in flight
    creating: list  # /api/health latencies (ms) while the POSTs are answered
    health_outlasted: bool  # the results ended before the in-flight health load did


def run_burst(fleet, window):
    """POST the burst (client processes started ahead, firing together) and ask /api/health meanwhile."""
    sizes, api = fleet.sizes, fleet.api
    before = measurements_made(fleet)
    body = measurement_body(fleet.bench.lab.target, sizes.ping_count, sizes.agents)
    start_at = time.time() + CLIENTS_READY_SECONDS
    posts = post_measurements(f"{api.url}/api/measurements", [h for _, h in fleet.burst_users],
                              sizes.measurements, body, start_at)
    creating_proc = spawn_health(api.url, CREATING_HEALTH_SECONDS, start_at=start_at)
    in_flight_proc = spawn_health(api.url, window, start_on_stdin=True)
    cpu_before = fleet.cpu_seconds()

    creating = []

    def all_created():  # every POST has answered 202: every result is dispatched
        # the creation monitor ends by itself; its exit is the bench's CPU, so it ends before the window opens
        creating.extend(finish_load(creating_proc)["latencies_ms"])
        in_flight_proc.stdin.write("go\n")
        in_flight_proc.stdin.flush()

    wall, peak, statuses = wait_finished(fleet, before, sizes.measurements, 300, posts,
                                         on_posts_done=all_created)
    cpu = {role: used - cpu_before[role] for role, used in fleet.cpu_seconds().items()}
    health_outlasted = in_flight_proc.poll() is None
    in_flight = finish_load(in_flight_proc)["latencies_ms"]
    end_posts(posts)
    timeline = statuses.pop("timeline")
    total_cpu = sum(cpu.values())
    note = (f"peak {peak} running at once; " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
            + f"; {timeline}; CPU {total_cpu:.1f} s in all "
            + f"({total_cpu / (sizes.measurements * sizes.agents) * 1000:.0f} ms a result): "
            + ", ".join(f"{role} {seconds:.1f}" for role, seconds in cpu.items()))
    return Burst(wall, note, in_flight, creating, health_outlasted)


def spawn_health(api_url, duration, **when):
    """The health monitor: /api/health at HEALTH_INTERVAL on each of HEALTH_CONNECTIONS, every latency
    kept (``when``: start_at or start_on_stdin, as spawn_load takes them)."""
    return spawn_load(f"{api_url}/api/health", 0, HEALTH_CONNECTIONS, duration=duration, interval=HEALTH_INTERVAL,
                      latencies=True, monitor=True, **when)


def idle_health(fleet, window):
    """/api/health latencies (ms) at the bursts' pace with nothing else running."""
    return finish_load(spawn_health(fleet.api.url, window))["latencies_ms"]


def fig_in_flight(fleet):
    """Wall time of N x N results at once vs one measurement alone; /api/health p99 meanwhile vs idle.

    A warm-up burst first (each API worker's database pool grows to a burst's size, the agents
    start their probe threads), then ``sizes.bursts`` measured ones, each after an idle health
    sample: the wall time is their median, the health p99s are over every burst's samples. Two
    health loads run in a burst: one while the measurements are being created (the API busy with
    the POSTs: shown, no target), one from when every POST has answered, that is while the
    results are in flight and nothing else asks the API (the issue's target).
    """
    from bench.run import Figure, ratio_figure

    sizes = fleet.sizes
    run_measurements(fleet, 1)  # warm-up: connections to the broker and the database in every process
    alone = statistics.median(run_measurements(fleet, 1)[0] for _ in range(sizes.alone_runs))
    window = max(0.5, 0.8 * alone)  # inside the in-flight period, which lasts at least as long as one alone
    finish_load(spawn_load(f"{fleet.api.url}/api/health", 100, HEALTH_CONNECTIONS))
    warmup = run_burst(fleet, window) if sizes.warmup_burst else None
    idle, bursts = [], []
    for _ in range(sizes.bursts):
        idle += idle_health(fleet, window)
        bursts.append(run_burst(fleet, window))
    wall = statistics.median(burst.wall for burst in bursts)
    median_burst = min(bursts, key=lambda burst: abs(burst.wall - wall))
    total = sizes.measurements * sizes.agents
    runs = ", ".join(f"{burst.wall:.2f}" for burst in bursts)
    warmed = f"; warm-up burst {warmup.wall:.2f} s" if warmup else ""
    flight = ratio_figure(f"{sizes.measurements} ping measurements x {sizes.agents} agents at once, "
                          f"{sizes.users} users ({total} results), wall time, median of {len(bursts)} bursts",
                          wall, alone, "s", "<= 1.5x one alone", False, 1.5,
                          f"bursts {runs} s{warmed}; the median one: {median_burst.note}")
    busy = sorted(latency for burst in bursts for latency in burst.in_flight)
    creating = sorted(latency for burst in bursts for latency in burst.creating)
    idle_p99 = percentile(sorted(idle), 0.99)
    note = "; the results ended before the health load did" if any(b.health_outlasted for b in bursts) else ""
    health_fig = ratio_figure(f"GET /api/health p99 while {total} results are in flight", percentile(busy, 0.99),
                              idle_p99, "ms", "<= 2x idle p99", False, 2.0,
                              f"{len(busy)} requests over {len(bursts)} x {window:.2f} s, idle {len(idle)}{note}")
    creating_p99 = percentile(creating, 0.99)
    creating_fig = Figure(f"GET /api/health p99 while those {sizes.measurements} measurements are created",
                          creating_p99, idle_p99, "ms", "-", creating_p99 / idle_p99, None,
                          f"{len(creating)} requests over the first {CREATING_HEALTH_SECONDS} s of each burst")
    assert isinstance(flight, Figure)
    return [flight, health_fig, creating_fig]


def direct_ping_seconds(lab):
    """One ping of count 1 run here by the engine the agents run (the probe's own duration)."""
    from app.probes.execute import run_spec
    from app.probes.spec import LocalPolicy, ProbeSpec

    bounds = {"ping_interval": 1.0, "ping_timeout": 2.0, "dns_timeout": 3.0}
    spec = ProbeSpec("ping", lab.target, {"count": 1}, bounds, time.time() + 30)
    started = time.perf_counter()
    outcome = run_spec(spec, LocalPolicy(allowed_networks=lab.allowed_networks))
    seconds = time.perf_counter() - started
    assert outcome["success"], outcome
    return seconds


def first_result_seconds(fleet, session):
    """POST a one-location ping (count 1) and GET it until its result has ended: seconds, client side."""
    body = {"type": "ping", "target": fleet.bench.lab.target, "options": {"count": 1},
            "locations": [{"name": agent_name(0)}]}
    started = time.perf_counter()
    created = session.post(f"{fleet.api.url}/api/measurements", json=body, timeout=30)
    assert created.status_code == 202, created.text
    url, etag = urljoin(fleet.api.url + "/", created.headers["Location"]), None
    while True:
        answer = session.get(url, headers={"If-None-Match": etag} if etag else {}, timeout=30)
        if answer.status_code == 200:
            etag = answer.headers.get("ETag")
            results = answer.json()["results"]
            if any(r["status"] != "in-progress" for r in results):
                assert results[0]["success"], results[0]
                return time.perf_counter() - started
        if time.perf_counter() - started > 30:
            raise RuntimeError("no result after 30 s")
        time.sleep(CLIENT_POLL_SECONDS)


def fig_dispatch_overhead(fleet):
    """POST -> first result through Celery, against the probe's own duration run directly."""
    from bench.run import Figure

    lab = fleet.bench.lab
    session = requests.Session()
    session.headers.update(fleet.headers)
    first_result_seconds(fleet, session)  # warm-up
    direct_ping_seconds(lab)
    through, direct = [], []
    for _ in range(fleet.sizes.overhead_samples):  # interleaved: the same moments for both
        direct.append(direct_ping_seconds(lab))
        through.append(first_result_seconds(fleet, session))
    measured, baseline = statistics.median(through) * 1000, statistics.median(direct) * 1000
    diff = measured - baseline
    return Figure(f"POST /api/measurements -> first result through Celery (ping count 1), median of "
                  f"{len(through)}", measured, baseline, "ms", "<= probe's own + 50 ms",
                  measured / baseline if baseline else float("inf"), diff <= 50.0,
                  f"overhead {diff:.1f} ms (p90 {sorted(through)[int(0.9 * (len(through) - 1))] * 1000:.1f} ms)")


def sync_ping_seconds(url, headers, target, count):
    started = time.perf_counter()
    answer = requests.post(f"{url}/api/probes/ping", json={"host": target, "count": count}, headers=headers,
                           timeout=120)
    seconds = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    return seconds


def fig_sync_through_agent(fleet, embedded_api, embedded_headers):
    """POST /api/probes/ping answered through an agent against the same ping on the embedded API."""
    from bench.run import ratio_figure

    sizes, lab = fleet.sizes, fleet.bench.lab
    sync_ping_seconds(fleet.api.url, fleet.headers, lab.target, 1)  # warm-up
    sync_ping_seconds(embedded_api.url, embedded_headers, lab.target, 1)
    agent, embedded = [], []
    for _ in range(sizes.sync_runs):
        agent.append(sync_ping_seconds(fleet.api.url, fleet.headers, lab.target, sizes.sync_count))
        embedded.append(sync_ping_seconds(embedded_api.url, embedded_headers, lab.target, sizes.sync_count))
    return ratio_figure(f"synchronous POST /api/probes/ping (count {sizes.sync_count}) through an agent vs "
                        "embedded, wall", statistics.median(agent), statistics.median(embedded), "s", "<= 1.1x",
                        False, 1.1)


def measurement_figures(bench, api, headers, smoke=False):
    """Start the Celery side, measure the three figures, stop it."""
    fleet = Fleet(bench, SMOKE if smoke else FULL)
    try:
        fleet.start()
        figures = fig_in_flight(fleet)
        figures.append(fig_dispatch_overhead(fleet))
        figures.append(fig_sync_through_agent(fleet, api, headers))
        fleet.check_alive()
        return figures
    except Exception:
        fleet.print_logs()
        raise
    finally:
        fleet.stop()
