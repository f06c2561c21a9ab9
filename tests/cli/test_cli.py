"""The probeops CLI end to end: `pip install .` into a throwaway venv, its script against a real ./start.sh.

The server is the embedded default (SQLite, measurements run in-process at `local`) on a free
loopback port, with PROBE_ALLOWED_NETWORKS=127.0.0.1/32: every probe goes to loopback only.
"""
import json
import os
import signal
import stat
import subprocess

import psutil
import pytest
import requests

from tests.cli.conftest import PASSWORD, SERVER_ENV, run
from tests.support.gunicorn import StartedServer

pytestmark = pytest.mark.slow



# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = StartedServer(SERVER_ENV, tmp_path_factory.mktemp("cli-server")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def account(server):
    """A registered user (username, email)."""
    response = requests.post(f"{server.url}/api/users/register", timeout=10,
                             json={"username": "clara", "email": "clara@example.com", "password": PASSWORD})
    assert response.status_code == 201, response.text
    return "clara", "clara@example.com"


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, probeops, server, account):
    """The config written by `probeops login` (logged in once for the module)."""
    path = tmp_path_factory.mktemp("cli-home") / "conf" / "config.json"
    done = run(probeops, "login", "--url", server.url, "--user", account[1], "--password", PASSWORD,
               config=path)
    assert done.returncode == 0, done.stderr
    return path


# -- install ----------------------------------------------------------------------------------------
def test_pip_install_installs_only_the_cli(probeops):
    venv_python = probeops.parent / "python"
    files = subprocess.run([str(probeops.parent / "pip"), "show", "-f", "probeops"], capture_output=True, text=True,
                           check=True).stdout
    listed = [line.strip() for line in files.split("Files:")[1].splitlines() if line.strip()]
    assert any(name.startswith("probeops_cli/") for name in listed)
    assert not [name for name in listed if name.startswith(("app/", "tests/", "migrations/", "main.py"))]
    # The client imports neither the server nor Flask.
    check = ("import sys, probeops_cli.main; "
             "assert not {'app', 'flask'} & set(sys.modules), sorted(m for m in sys.modules if m in ('app', 'flask'))")
    subprocess.run([str(venv_python), "-c", check], check=True, cwd="/", timeout=60)
    done = subprocess.run([str(probeops), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "ping" in done.stdout and "locations" in done.stdout


def test_from_help_says_how_locations_map(probeops, tmp_path):
    done = run(probeops, "ping", "--help", config=tmp_path / "c.json")
    assert done.returncode == 0
    flat = " ".join(done.stdout.split())
    for words in ("--from LOCATION", "tag:eu", "country", "city:Berlin", "AS1234", "--limit", "--count", "--json"):
        assert words in flat


# -- login ------------------------------------------------------------------------------------------
def test_login_stores_only_an_api_key_0600(config_file, server, account):
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_file.parent.stat().st_mode) == 0o700
    stored = json.loads(config_file.read_text())
    assert stored["url"] == server.url
    assert stored["api_key"].startswith("probeops")
    text = config_file.read_text()
    assert PASSWORD not in text and "token" not in text and "eyJ" not in text  # no password, no JWT
    # The key works on its own, and it is named for this machine.
    me = requests.get(f"{server.url}/api/users/me", headers={"X-API-Key": stored["api_key"]}, timeout=10)
    assert me.status_code == 200 and me.json()["username"] == account[0]
    jwt = requests.post(f"{server.url}/api/users/login", json={"email": account[1], "password": PASSWORD},
                        timeout=10).json()["token"]
    keys = requests.get(f"{server.url}/api/apikeys", headers={"Authorization": f"Bearer {jwt}"}, timeout=10).json()
    mine = [key for key in keys["api_keys"] if key["id"] == stored["api_key_id"]]
    assert mine and os.uname().nodename in (mine[0].get("name") or mine[0]["description"])


def test_login_with_a_wrong_password_exits_2(probeops, server, account, tmp_path):
    config = tmp_path / "config.json"
    done = run(probeops, "login", "--url", server.url, "--user", account[0], "--password", "not the password",
               config=config)
    assert done.returncode == 2
    assert "invalid_credentials" in done.stderr
    assert not config.exists()


def test_login_again_replaces_the_key_it_held(probeops, server, account, tmp_path):
    config = tmp_path / "again" / "config.json"
    keys = []
    for _ in range(2):
        assert run(probeops, "login", "--url", server.url, "--user", account[0], "--password", PASSWORD,
                   config=config).returncode == 0
        keys.append(json.loads(config.read_text())["api_key"])
    assert keys[0] != keys[1]
    assert requests.get(f"{server.url}/api/users/me", headers={"X-API-Key": keys[0]}, timeout=10).status_code == 401
    assert requests.get(f"{server.url}/api/users/me", headers={"X-API-Key": keys[1]}, timeout=10).status_code == 200


def test_login_asks_what_it_is_not_given(probeops, server, account, tmp_path):
    config = tmp_path / "asked" / "config.json"
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8", "PROBEOPS_CONFIG": str(config)}
    done = subprocess.run([str(probeops), "login"], input=f"{server.url}\n{account[0]}\n{PASSWORD}\n", env=environ,
                          capture_output=True, text=True, timeout=60, start_new_session=True)  # no tty: stdin
    assert done.returncode == 0, done.stdout + done.stderr
    assert "API URL" in done.stdout and "Email or username" in done.stdout and "Password" in done.stderr  # getpass
    assert PASSWORD not in done.stdout + done.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and json.loads(config.read_text())["url"] == server.url


# -- probes -----------------------------------------------------------------------------------------
def test_ping_loopback_prints_the_result_and_exits_0(probeops, config_file, server):
    done = run(probeops, "ping", "127.0.0.1", "--count", "2", config=config_file)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "=== local: ok" in done.stdout
    assert "2 packets transmitted, 2 received" in done.stdout
    measurement = done.stderr.split("measurement ")[1].split(",")[0]
    assert f"GET /api/measurements/{measurement}/stream 200" in server.output()  # live, from the event stream


def test_refused_target_prints_the_message_and_exits_2(probeops, config_file):
    done = run(probeops, "ping", "10.0.0.1", config=config_file)
    assert done.returncode == 2
    assert "not allowed" in done.stderr and "[target_refused]" in done.stderr and "HTTP 403" in done.stderr
    assert done.stdout == ""


def test_a_probe_that_runs_and_fails_exits_1(probeops, config_file):
    if any(conn.laddr and conn.laddr.port == 53 for conn in psutil.net_connections("udp")):
        pytest.skip("a DNS server listens on this host: the query would not stay unanswered on loopback")
    done = run(probeops, "dns", "example.com", "--nameserver", "127.0.0.1", "--type", "aaaa", config=config_file)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "=== local: failed" in done.stdout
    assert "127.0.0.1" in done.stdout


def test_json_output_is_the_measurement(probeops, config_file):
    done = run(probeops, "traceroute", "127.0.0.1", "--max-hops", "3", "--from", "local", "--json",
               config=config_file)
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["type"] == "traceroute" and body["status"] == "finished" and body["options"]["max_hops"] == 3
    (result,) = body["results"]
    assert result["location"]["name"] == "local" and result["success"] is True
    assert result["status"] == "finished" and "127.0.0.1" in result["result"]


def test_usage_errors_exit_2(probeops, config_file):
    done = run(probeops, "ping", "127.0.0.1", "--count", "99", config=config_file)
    assert done.returncode == 2 and "count" in done.stderr and "validation_error" in done.stderr
    done = run(probeops, "ping", "127.0.0.1", "--from", "tag:nowhere", config=config_file)
    assert done.returncode == 2 and "no_matching_location" in done.stderr
    done = run(probeops, "ping", "127.0.0.1", "--from", "planet:mars", config=config_file)
    assert done.returncode == 2 and "planet" in done.stderr  # refused by the CLI itself, before any request


def test_the_environment_is_enough(probeops, server, config_file, tmp_path):
    key = json.loads(config_file.read_text())["api_key"]
    env = {"PROBEOPS_URL": server.url, "PROBEOPS_API_KEY": key}
    done = run(probeops, "ping", "127.0.0.1", "--count", "1", config=tmp_path / "none.json", env=env)
    assert done.returncode == 0, done.stderr
    assert "1 packets transmitted, 1 received" in done.stdout
    done = run(probeops, "locations", config=tmp_path / "none.json", env={**env, "PROBEOPS_API_KEY": "probeops_bad"})
    assert done.returncode == 2 and "HTTP 401" in done.stderr
    done = run(probeops, "history", config=tmp_path / "none.json", env={"PROBEOPS_URL": server.url})
    assert done.returncode == 2 and "probeops login" in done.stderr


def test_interrupted_it_says_where_the_measurement_goes_on(probeops, config_file):
    environ = {"PATH": os.environ["PATH"], "HOME": str(config_file.parent), "PROBEOPS_CONFIG": str(config_file)}
    proc = subprocess.Popen([str(probeops), "ping", "127.0.0.1", "--count", "10"], env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stderr.readline()  # printed once the measurement exists; 10 pings 0.2 s apart follow
    assert "measurement" in first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    measurement = first.split("measurement ")[1].split(",")[0]
    assert f"measurement {measurement} goes on at the server" in err and "Traceback" not in err


# -- reading ----------------------------------------------------------------------------------------
def test_history_lists_the_jobs(probeops, config_file):
    created = json.loads(run(probeops, "ping", "127.0.0.1", "--count", "1", "--json", config=config_file).stdout)
    job_id = created["results"][0]["job_id"]
    done = run(probeops, "history", "--limit", "5", config=config_file)
    assert done.returncode == 0
    assert done.stdout.splitlines()[0].split()[:3] == ["ID", "TYPE", "TARGET"]
    row = next(line for line in done.stdout.splitlines() if line.split()[0] == str(job_id))
    assert "ping" in row and "127.0.0.1" in row and "local" in row and created["id"] in row
    page = json.loads(run(probeops, "history", "--json", config=config_file).stdout)
    assert page["jobs"][0]["id"] == job_id and page["jobs"][0]["measurement_id"] == created["id"]


def test_locations_lists_local(probeops, config_file):
    done = run(probeops, "locations", config=config_file)
    assert done.returncode == 0
    assert any(line.split()[0] == "local" for line in done.stdout.splitlines()[1:])
    listed = json.loads(run(probeops, "locations", "--json", config=config_file).stdout)
    assert [loc["name"] for loc in listed["locations"]] == ["local"]


def test_usage_shows_quota_and_rate_limit_left(probeops, config_file):
    done = run(probeops, "usage", config=config_file)
    assert done.returncode == 0
    assert "probes this day" in done.stdout and "requests (rate limit)" in done.stdout
    figures = json.loads(run(probeops, "usage", "--json", config=config_file).stdout)
    day = figures["quota"]["day"]
    assert day["limit"] == 100 and day["used"] >= 1 and day["remaining"] == day["limit"] - day["used"]
    assert figures["rate_limit"]["limit"] == 1000 and figures["rate_limit"]["remaining"] < 1000


# -- polling ----------------------------------------------------------------------------------------
def test_polling_with_etag_when_the_stream_is_refused(probeops, tmp_path_factory):
    """A server that allows no event stream (MEASUREMENT_STREAMS_PER_USER=0): the CLI polls instead."""
    srv = StartedServer({**SERVER_ENV, "MEASUREMENT_STREAMS_PER_USER": "0"}, tmp_path_factory.mktemp("poll")).start()
    try:
        requests.post(f"{srv.url}/api/users/register", timeout=10,
                      json={"username": "paul", "email": "paul@example.com", "password": PASSWORD})
        config = tmp_path_factory.mktemp("poll-home") / "config.json"
        assert run(probeops, "login", "--url", srv.url, "--user", "paul", "--password", PASSWORD,
                   config=config).returncode == 0
        done = run(probeops, "ping", "127.0.0.1", "--count", "5", config=config)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "5 packets transmitted, 5 received" in done.stdout
        measurement = done.stderr.split("measurement ")[1].split(",")[0]
        log = srv.output()
        assert f"GET /api/measurements/{measurement}/stream 429" in log
        assert f"GET /api/measurements/{measurement} 304" in log  # 5 pings 0.2 s apart: polled unchanged
        assert f"GET /api/measurements/{measurement} 200" in log
    finally:
        srv.stop()
