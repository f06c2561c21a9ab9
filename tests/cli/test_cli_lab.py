"""The `probeops` CLI against a live server probing the network lab (198.18.0.0/16 namespaces):
real packets to real hosts, names from the lab's own bind9, never the system resolver."""
import re

import pytest
import requests

from tests.cli.conftest import PASSWORD, SERVER_ENV, run
from tests.support.gunicorn import StartedServer

pytestmark = [pytest.mark.slow, pytest.mark.lab]


@pytest.fixture(scope="module")
def lab_server(lab, tmp_path_factory):
    env = {**SERVER_ENV, "PROBE_ALLOWED_NETWORKS": lab.allowed_networks, "PROBE_ALLOWED_DOMAINS": "test",
           "DNS_NAMESERVERS": lab.dns, "TRACEROUTE_HOP_TIMEOUT": "1"}
    srv = StartedServer(env, tmp_path_factory.mktemp("cli-lab-server")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def lab_config(lab_server, probeops, tmp_path_factory):
    response = requests.post(f"{lab_server.url}/api/users/register", timeout=10,
                             json={"username": "lena", "email": "lena@example.com", "password": PASSWORD})
    assert response.status_code == 201, response.text
    path = tmp_path_factory.mktemp("cli-lab-home") / "config.json"
    done = run(probeops, "login", "--url", lab_server.url, "--user", "lena", "--password", PASSWORD, config=path)
    assert done.returncode == 0, done.stderr
    return path


def test_traceroute_by_name_shows_the_lab_path(probeops, lab_config, lab_routes):
    done = run(probeops, "traceroute", f"target.{lab_routes.zone}", "--max-hops", "8", config=lab_config)
    assert done.returncode == 0, done.stdout + done.stderr
    hops = re.findall(r"^\s*\d+\s+(\S+)", done.stdout, re.MULTILINE)  # " 1  198.18.0.2  0.1 ms ..."
    assert hops == [*lab_routes.hops, lab_routes.target], done.stdout


def test_ping_and_dns_in_the_lab(probeops, lab_config, lab_routes):
    ping = run(probeops, "ping", lab_routes.target, "--count", "2", config=lab_config)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "2 packets transmitted, 2 received" in ping.stdout
    dns = run(probeops, "dns", f"target.{lab_routes.zone}", "--json", config=lab_config)
    assert dns.returncode == 0, dns.stdout + dns.stderr
    assert lab_routes.target in dns.stdout


def test_a_silent_host_is_a_failed_probe_exit_1(probeops, lab_config, lab_routes):
    done = run(probeops, "ping", lab_routes.silent, "--count", "1", config=lab_config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "100% packet loss" in done.stdout
