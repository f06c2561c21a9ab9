"""The probeops CLI with agents: --from filters choose among real agents (./start.sh agent over a
real Redis), each result printed with its location. Agents and the API run in the root namespace
with PROBE_ALLOWED_NETWORKS=127.0.0.1/32: every probe goes to loopback only (no lab needed)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.conftest import PASSWORD, SERVER_ENV, run
from tests.support.gunicorn import StartedServer
from tests.support.servers import RedisServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
AGENTS = {
    "fra-1": {"AGENT_COUNTRY": "DE", "AGENT_CITY": "Frankfurt", "AGENT_ASN": "64500", "AGENT_TAGS": "eu,cli"},
    "ber-1": {"AGENT_COUNTRY": "DE", "AGENT_CITY": "Berlin", "AGENT_ASN": "64502", "AGENT_TAGS": "eu"},
    "nyc-1": {"AGENT_COUNTRY": "US", "AGENT_CITY": "New York", "AGENT_ASN": "64501", "AGENT_TAGS": "us,cli"},
}


def start_sh(role, env, log_path):
    """`./start.sh worker|agent` in its own session, with its output in ``log_path``."""
    bin_dir = os.path.dirname(sys.executable)
    environ = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(log_path.parent), "LANG": "C.UTF-8",
               "PROBEOPS_SKIP_DOTENV": "1", "LOG_FORMAT": "text", **env}
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen([str(ROOT / "start.sh"), role], cwd=ROOT, env=environ, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, log


def stop(proc, log):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    log.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, probeops):
    """Redis, the API with CELERY_BROKER_URL, the central worker, three agents; yields the config path."""
    tmp = tmp_path_factory.mktemp("cli-agents")
    redis = RedisServer().start()
    database = f"sqlite:///{tmp / 'probeops.db'}"
    common = {"CELERY_BROKER_URL": redis.url, "PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "PING_INTERVAL": "0.2"}
    processes = []
    server = StartedServer({**SERVER_ENV, **common, "DATABASE_URL": database}, tmp)
    try:
        server.start()  # migrates the database before the worker uses it
        processes.append(start_sh("worker", {**common, "DATABASE_URL": database, "APP_ENV": "development",
                                             "PROBEOPS_INSTANCE_PATH": str(tmp / "instance")}, tmp / "worker.log"))
        for name, location in AGENTS.items():
            processes.append(start_sh("agent", {**common, "AGENT_NAME": name, **location}, tmp / f"agent-{name}.log"))
        import requests

        requests.post(f"{server.url}/api/users/register", timeout=10,
                      json={"username": "ana", "email": "ana@example.com", "password": PASSWORD})
        config = tmp / "home" / "config.json"
        assert run(probeops, "login", "--url", server.url, "--user", "ana", "--password", PASSWORD,
                   config=config).returncode == 0
        give_up = time.monotonic() + 60
        while True:  # wait, through the CLI itself, until every agent is online
            done = run(probeops, "locations", "--json", config=config)
            online = {loc["name"] for loc in json.loads(done.stdout)["locations"]} if done.returncode == 0 else set()
            if online >= set(AGENTS):
                break
            if time.monotonic() > give_up:
                logs = "\n".join(p[0].args[-1] + ": " + Path(p[1].name).read_text()[-1500:] for p in processes)
                pytest.fail(f"agents not online after 60 s (online: {online}):\n{logs}")
            time.sleep(0.5)
        yield config
    finally:
        for proc, log in processes:
            stop(proc, log)
        server.stop()
        redis.stop()


def test_locations_lists_every_agent(probeops, fleet):
    done = run(probeops, "locations", config=fleet)
    assert done.returncode == 0
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert set(rows) == set(AGENTS)
    assert "Frankfurt" in rows["fra-1"] and "64500" in rows["fra-1"] and "eu,cli" in rows["fra-1"]
    assert "US" in rows["nyc-1"] and "New York" in rows["nyc-1"]


@pytest.mark.parametrize(("from_", "expected"), [
    (["nyc-1"], {"nyc-1"}),                 # a bare word: the agent's name
    (["US"], {"nyc-1"}),                    # two letters: a country
    (["city:Berlin"], {"ber-1"}),
    (["AS64500"], {"fra-1"}),
    (["asn:64502"], {"ber-1"}),
    (["tag:us", "name:fra-1"], {"nyc-1", "fra-1"}),  # one result per --from by default
])
def test_from_chooses_the_agents(probeops, fleet, from_, expected):
    args = [arg for value in from_ for arg in ("--from", value)]
    done = run(probeops, "ping", "127.0.0.1", "--count", "1", *args, "--json", config=fleet)
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert {result["location"]["name"] for result in body["results"]} == expected
    assert all(result["success"] for result in body["results"])


def test_each_result_is_printed_with_its_location(probeops, fleet):
    done = run(probeops, "ping", "127.0.0.1", "--count", "2", "--from", "DE", "--limit", "2", config=fleet)
    assert done.returncode == 0, done.stdout + done.stderr
    headers = [line for line in done.stdout.splitlines() if line.startswith("=== ")]
    assert sorted(headers) == ["=== ber-1 (Berlin, DE, AS64502): ok", "=== fra-1 (Frankfurt, DE, AS64500): ok"]
    assert done.stdout.count("2 packets transmitted, 2 received") == 2
    assert "2 location(s)" in done.stderr


def test_a_tag_no_agent_has_exits_2(probeops, fleet):
    done = run(probeops, "dns", "example.com", "--from", "tag:mars", config=fleet)
    assert done.returncode == 2
    assert "no_matching_location" in done.stderr and "HTTP 400" in done.stderr
