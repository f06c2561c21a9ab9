"""Agents for real: a Redis broker, the central worker and agents started with ./start.sh, and the
API as the test app dispatching through the broker (CELERY_BROKER_URL set).

- `loop_stack`: on loopback (no lab, no root needed beyond ping's raw socket): a broker of its
  own on 127.0.0.1, agents `alpha` and `beta` in this namespace, probes to 127.0.0.1; on SQLite
  and on PostgreSQL.
- `stack` (lab): the broker on the lab's host side (198.18.0.1), which every lab namespace routes
  to through r1, and agents inside lab namespaces at different points of the topology; probes
  only into 198.18.0.0/15.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ALLOWED_NETWORKS, build_app, migrate
from tests.support.servers import RedisServer, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
LAB_POLICY_DOMAINS = "test"
OFFLINE_SECONDS = 3  # agents in these tests: a silent one is offline after 3 s
SWEEP_SECONDS = 0.5  # the central worker's sweep period


class LabRedis(RedisServer):
    """redis-server bound on a lab address (reachable from every lab namespace), no persistence."""

    def __init__(self, host):
        super().__init__()
        self.host = host

    def start(self):
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed (run ./run_tests.sh, which installs it)")
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", self.host, "--save", "",
                                      "--appendonly", "no", "--protected-mode", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, host=self.host)
        return self

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}/0"


class Proc:
    """A ./start.sh process (agent or worker) with its log; stopped with its whole session."""

    def __init__(self, argv, env, log_path):
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        return self.log_path.read_text(errors="replace")

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(15)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.kill(signal.SIGTERM)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
        self.log.close()


def base_env(tmp_path):
    """What every ./start.sh process of these tests gets: PATH and nothing of ours."""
    bin_dir = os.path.dirname(sys.executable)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "PROBEOPS_SKIP_DOTENV": "1", "LOG_FORMAT": "text", "LOG_LEVEL": "info"}


class Stack:
    """The broker, the database, the central worker and the agents of one test module."""

    def __init__(self, broker, tmp_path, nameserver, database_url=None, **app_config):
        self.app_config = app_config
        self.broker = broker
        self.tmp = tmp_path
        self.nameserver = nameserver
        self.database_url = database_url or f"sqlite:///{tmp_path / 'probeops.db'}"
        self.agents = {}
        self.worker = None
        self.worker_metrics_port = free_port()

    def start_worker(self):
        env = {**base_env(self.tmp), "CELERY_BROKER_URL": self.broker.url, "DATABASE_URL": self.database_url,
               "APP_ENV": "development", "PROBEOPS_INSTANCE_PATH": str(self.tmp / "instance"),
               "JOB_SWEEP_SECONDS": str(SWEEP_SECONDS), "CENTRAL_WORKER_CONCURRENCY": "8",
               "WORKER_METRICS_PORT": str(self.worker_metrics_port)}
        self.worker = Proc([str(ROOT / "start.sh"), "worker"], env, self.tmp / "worker.log")
        return self.worker

    def start_agent(self, name, namespace=None, broker_url=None, **location):
        """`./start.sh agent` in `namespace` (None: the root namespace), with a scrubbed environment."""
        env = {**base_env(self.tmp), "CELERY_BROKER_URL": broker_url or self.broker.url, "AGENT_NAME": name,
               "AGENT_OFFLINE_SECONDS": str(OFFLINE_SECONDS), "AGENT_CONCURRENCY": "8",
               "PROBE_ALLOWED_NETWORKS": ALLOWED_NETWORKS, "PROBE_ALLOWED_DOMAINS": LAB_POLICY_DOMAINS,
               "DNS_NAMESERVERS": self.nameserver,
               **{f"AGENT_{key.upper()}": str(value) for key, value in location.items()}}
        argv = [str(ROOT / "start.sh"), "agent"]
        if namespace:
            argv = ["ip", "netns", "exec", namespace, *argv]
        agent = self.agents[name] = Proc(argv, env, self.tmp / f"agent-{name}.log")
        return agent

    def app(self, **overrides):
        """The API as a test app on the stack's database, dispatching through the broker."""
        config = {"CELERY_BROKER_URL": self.broker.url, "AGENT_OFFLINE_SECONDS": OFFLINE_SECONDS,
                  "PING_INTERVAL": 0.2, "PROBE_DEADLINE_MARGIN_SECONDS": 3.0, "BROKER_TIMEOUT": 0.8,
                  **self.app_config}
        config.update(overrides)
        return build_app(self.database_url, **config)

    def wait_online(self, app, names, seconds=30):
        """Wait until every agent in `names` is listed online and consuming."""
        from app.services.dispatch import get_dispatcher

        give_up = time.monotonic() + seconds
        while True:
            with app.app_context():
                online = {loc["name"] for loc in get_dispatcher().locations()}
            ready = all("ready." in self.agents[n].output() for n in names)
            if set(names) <= online and ready:
                return
            for name in names:
                if self.agents[name].proc.poll() is not None:
                    raise RuntimeError(f"agent {name} exited:\n{self.agents[name].output()}")
            if time.monotonic() > give_up:
                logs = "\n".join(self.agents[n].output()[-2000:] for n in names)
                raise RuntimeError(f"agents {names} not online after {seconds}s (online: {online}):\n{logs}")
            time.sleep(0.2)

    def stop(self):
        for agent in self.agents.values():
            agent.stop()
        if self.worker:
            self.worker.stop()


@pytest.fixture(scope="module")
def lab_broker(lab):
    server = LabRedis(lab.host_ip).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(lab, lab_broker, tmp_path_factory):
    """The central worker and three agents at different points of the lab, on a migrated SQLite file.

    - `svc`  in probeops-svc  (country DE, tags eu,lab): to the target via r1 (198.18.10.1), r2, r3
    - `late` in probeops-late (country US, tags us,lab): to the target via r3 (198.18.4.1)
    - `home` in the root namespace (country DE, tag home): via r1 (198.18.0.2), r2, r3
    """
    tmp = tmp_path_factory.mktemp("agents")
    s = Stack(lab_broker, tmp, lab.dns, PROBE_ALLOWED_DOMAINS=LAB_POLICY_DOMAINS)
    migrate(s.database_url)
    try:
        s.start_worker()
        s.start_agent("svc", "probeops-svc", country="DE", city="Frankfurt", asn=64500, tags="eu,lab",
                      network="Lab services", latitude=50.11, longitude=8.68)
        s.start_agent("late", "probeops-late", country="US", city="Ashburn", asn=64501, tags="us,lab")
        s.start_agent("home", None, country="DE", city="Berlin", asn=64502, tags="home")
        yield s
    finally:
        s.stop()


def serve(stack, names):
    """The API (test app) with the agents `names` online; yields (app, client)."""
    app = stack.app()
    stack.wait_online(app, names)
    with app.app_context():
        yield app, app.test_client()
        from app.extensions import db

        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def api(stack):
    yield from serve(stack, ["svc", "late", "home"])


@pytest.fixture(scope="module")
def loop_broker():
    """A broker of the module's own on loopback (tests stop and restart it)."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loop_stack(request, loop_broker, tmp_path_factory):
    """The central worker and agents `alpha` (DE, Frankfurt, tags eu,x) and `beta` (US, tags us,x)
    in this namespace, on a migrated database of each kind."""
    tmp = tmp_path_factory.mktemp(f"agents-{request.param}")
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database("probeops_agents")
    else:
        url = None
    s = Stack(loop_broker, tmp, "127.0.0.1", url)
    migrate(s.database_url)
    try:
        s.start_worker()
        s.start_agent("alpha", country="DE", city="Frankfurt", asn=64500, tags="eu,x")
        s.start_agent("beta", country="US", city="Ashburn", asn=64501, tags="us,x")
        yield s
    finally:
        s.stop()


@pytest.fixture
def loop_api(loop_stack):
    yield from serve(loop_stack, ["alpha", "beta"])


# -- helpers for the tests ----------------------------------------------------------------------
def headers_for(app, tier="Enterprise"):
    from app.auth.tokens import issue_token
    from app.services import users
    from app.utils.clock import utcnow

    name = f"u{uuid.uuid4().hex[:10]}"
    user = users.register(name, f"{name}@example.com", "correct horse battery staple", tier=tier)
    return {"Authorization": f"Bearer {issue_token(user, app.config['JWT_SECRET_KEY'], 60, utcnow())}"}


def create(client, headers, **body):
    response = client.post("/api/measurements", headers=headers, json=body)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def wait_finished(client, headers, measurement_id, seconds=60):
    give_up = time.monotonic() + seconds
    while True:
        body = client.get(f"/api/measurements/{measurement_id}", headers=headers).get_json()
        if body["status"] == "finished":
            return body
        assert time.monotonic() < give_up, body
        time.sleep(0.1)


def nice_of(pid):
    """(the process's nice value, its session's autogroup nice) as the kernel reports them.

    The autogroup is None for a session that never had one of its own (the boot session, e.g. a
    CI runner's): the kernel shows an empty file for it.
    """
    with open(f"/proc/{pid}/stat") as stat:
        nice = int(stat.read().rsplit(")", 1)[1].split()[16])  # field 19 of proc(5)
    with open(f"/proc/{pid}/autogroup") as autogroup:
        shown = autogroup.read().split()
    return nice, int(shown[-1]) if shown else None
