"""GET /metrics: Prometheus text counted across Gunicorn workers (multiprocess mode), behind METRICS_TOKEN."""
import os
import secrets
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gunicorn import STRONG_SECRET, StartedServer

PASSWORD = "correct horse battery staple"
TOKEN = "metrics-" + secrets.token_urlsafe(24)
SENT = 60  # GET /api/users/me, over fresh connections


def samples(text):
    """``{(name, frozenset(labels)): value}`` of a scrape, parsed by prometheus_client's own parser."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(parsed, name, **labels):
    return parsed.get((name, frozenset(labels.items())), 0.0)


# -- in process (the test client; single-process mode) ----------------------------------------

@pytest.fixture
def app_overrides():
    return {"METRICS_TOKEN": TOKEN}


def test_metrics_needs_the_token_when_set(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"X-API-Key": TOKEN}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401 and refused.json["code"] == "authentication_required"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "RateLimit-Limit" not in answer.headers  # exempt from rate limits


@pytest.mark.parametrize("app_overrides", [{"METRICS_TOKEN": ""}])
def test_metrics_is_open_without_a_token_and_counts_route_templates(client, app_overrides):
    before = samples(client.get("/metrics").text)
    assert client.get("/api/measurements/12345").status_code == 401
    assert client.get("/no/such/path").status_code == 404
    after = samples(client.get("/metrics").text)
    route = "/api/measurements/<measurement_id>"
    assert value(after, "probeops_http_requests_total", method="GET", route=route, status="401") == \
        value(before, "probeops_http_requests_total", method="GET", route=route, status="401") + 1
    assert value(after, "probeops_http_requests_total", method="GET", route="unmatched", status="404") == \
        value(before, "probeops_http_requests_total", method="GET", route="unmatched", status="404") + 1
    assert not [key for key in after if ("/no/such/path" in str(key)) or ("/metrics" in str(key))]
    assert value(after, "probeops_jobs", state="queued") == 0
    assert value(after, "probeops_metrics_source_up", source="database") == 1
    assert value(after, "probeops_locations_online") == 1
    assert abs(value(after, "probeops_location_last_seen_timestamp_seconds", location="local") - time.time()) < 60


@pytest.mark.parametrize("app_overrides", [{"METRICS_TOKEN": "", "RATELIMIT_DEFAULT": "2 per minute"}])
def test_rate_limit_rejections_are_counted_and_metrics_is_exempt(client, app_overrides):
    before = value(samples(client.get("/metrics").text), "probeops_rejections_total", kind="rate_limit")
    codes = [client.get("/api/users/me").status_code for _ in range(3)]
    assert codes == [401, 401, 429]
    for _ in range(3):  # the budget is spent, /metrics still answers
        parsed = samples(client.get("/metrics").text)
    assert value(parsed, "probeops_rejections_total", kind="rate_limit") == before + 1
    assert value(parsed, "probeops_http_requests_total", method="GET", route="/api/users/me", status="429") >= 1


def test_production_refuses_to_start_without_a_metrics_token(tmp_path):
    from app import create_app
    from app.config import ConfigError

    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        create_app({"APP_ENV": "production", "JWT_SECRET_KEY": STRONG_SECRET, "METRICS_TOKEN": "",
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/p.db"})


# -- ./start.sh with 3 workers (multiprocess mode) --------------------------------------------

def register_and_login(base):
    body = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    assert requests.post(f"{base}/api/users/register", json=body, timeout=10).status_code == 201
    login = requests.post(f"{base}/api/users/login", json={"email": body["email"], "password": PASSWORD}, timeout=10)
    return {"Authorization": "Bearer " + login.json()["token"]}


def scrape(srv, token=TOKEN):
    answer = requests.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.text


def workers(srv, expected, seconds=20):
    master = psutil.Process(srv.proc.pid)  # start.sh execs gunicorn: same pid
    deadline = time.monotonic() + seconds
    while len(master.children()) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return {child.pid for child in master.children()}


@pytest.fixture(params=["sqlite", "postgresql"])
def started(request, tmp_path, redis_server):
    env = {"WORKERS": "3", "THREADS": "8", "RATELIMIT_STORAGE_URI": redis_server.url,
           "RATELIMIT_DEFAULT": "100000 per hour", "APP_ENV": "production", "JWT_SECRET_KEY": STRONG_SECRET,
           "METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
           "PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "QUOTA_FREE_DAY": "2", "PING_INTERVAL": "0.05"}
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        env["DATABASE_URL"] = postgres.create_database(f"probeops_metrics_{secrets.token_hex(4)}")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"stale")  # a previous run's file: start.sh clears it
    srv = StartedServer(env, tmp_path).start()
    yield srv, tmp_path / "metrics"
    srv.stop()


@pytest.mark.slow
def test_metrics_across_three_workers_survive_a_killed_worker(started):
    srv, directory = started
    assert not (directory / "counter_1.db").exists()
    pids = workers(srv, expected=3)
    assert len(pids) == 3
    headers = register_and_login(srv.url)

    assert requests.get(f"{srv.url}/metrics", timeout=10).status_code == 401
    assert requests.get(f"{srv.url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401

    def me(_):  # a new connection each: the kernel hands them to whichever worker accepts
        return requests.get(f"{srv.url}/api/users/me", headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(me, range(SENT))) == [200] * SENT
    pings = [requests.post(f"{srv.url}/api/probes/ping", headers=headers, json={"host": "127.0.0.1", "count": 1},
                           timeout=30).status_code for _ in range(3)]
    assert pings == [200, 200, 429]  # QUOTA_FREE_DAY=2

    counting = {int(path.stem.split("_")[-1]) for path in directory.glob("counter_*.db")}
    assert len(counting & pids) >= 2, f"the requests reached only {counting & pids} of {pids}"
    parsed = samples(scrape(srv))
    me_route = {"method": "GET", "route": "/api/users/me", "status": "200"}
    assert value(parsed, "probeops_http_requests_total", **me_route) == SENT
    assert value(parsed, "probeops_http_request_duration_seconds_count", **me_route) == SENT
    assert value(parsed, "probeops_http_request_duration_seconds_bucket", le="+Inf", **me_route) == SENT
    ping_route = {"method": "POST", "route": "/api/probes/ping"}
    assert value(parsed, "probeops_http_requests_total", status="200", **ping_route) == 2
    assert value(parsed, "probeops_http_requests_total", status="429", **ping_route) == 1
    assert value(parsed, "probeops_probes_total", type="ping", outcome="completed", location="local") == 2
    assert value(parsed, "probeops_rejections_total", kind="quota") == 1
    assert value(parsed, "probeops_probes_in_flight", type="ping") == 0
    assert value(parsed, "probeops_jobs", state="queued") == 0
    assert value(parsed, "probeops_locations_online") == 1
    assert not [key for key in parsed if "/metrics" in str(key)]  # scrapes are not counted

    # A worker killed and replaced: what it counted is still there, and the new one adds to it.
    victim = sorted(counting & pids)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (victim in workers(srv, 3) or len(workers(srv, 3)) < 3):
        time.sleep(0.2)
    replaced = workers(srv, expected=3)
    assert victim not in replaced and len(replaced) == 3
    assert not list(directory.glob(f"gauge_livesum_{victim}.db"))  # child_exit: its in-flight gauge is gone
    parsed = samples(scrape(srv))
    assert value(parsed, "probeops_http_requests_total", **me_route) == SENT
    assert value(parsed, "probeops_probes_total", type="ping", outcome="completed", location="local") == 2
    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(me, range(12))) == [200] * 12
    parsed = samples(scrape(srv))
    assert value(parsed, "probeops_http_requests_total", **me_route) == SENT + 12

    text = scrape(srv)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian's prometheus package; run_tests.sh installs it)")
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
