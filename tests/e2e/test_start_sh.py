"""./start.sh as an operator runs it, and Gunicorn with several workers sharing limits."""
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from tests.support.gunicorn import STRONG_SECRET, StartedServer, started_servers

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"


@pytest.fixture
def server(tmp_path):
    yield from started_servers(tmp_path)


def register_and_login(base, name="alice"):
    response = requests.post(f"{base}/api/users/register",
                             json={"username": name, "email": f"{name}@example.com", "password": PASSWORD}, timeout=10)
    assert response.status_code == 201, response.text
    response = requests.post(f"{base}/api/users/login", json={"email": f"{name}@example.com", "password": PASSWORD},
                             timeout=10)
    assert response.status_code == 200, response.text
    return {"Authorization": "Bearer " + response.json()["token"]}


def workers_of(srv, expected=None, seconds=15):
    """Gunicorn's workers; with ``expected``, wait until that many have been forked."""
    master = psutil.Process(srv.proc.pid)  # start.sh execs gunicorn: same pid
    assert "gunicorn" in " ".join(master.cmdline())
    deadline = time.monotonic() + seconds
    while expected is not None and len(master.children()) < expected and time.monotonic() < deadline:
        time.sleep(0.1)  # /health answers once the first worker is up; the others follow
    return master.children()


def test_start_sh_with_no_configuration(server, tmp_path):
    srv = server()
    assert (tmp_path / "instance" / "probeops.db").exists()  # the embedded SQLite default
    assert (tmp_path / "instance" / "jwt_secret").exists()    # generated once, shared by workers
    headers = register_and_login(srv.url)
    me = requests.get(f"{srv.url}/api/users/me", headers=headers, timeout=10)
    assert me.status_code == 200 and me.json()["username"] == "alice"
    assert requests.get(f"{srv.url}/api/health/ready", timeout=10).json()["checks"]["database"] == "ok"
    log = srv.output()
    assert "applying migrations" in log and "1 worker(s)" in log and "gthread" in log
    assert "memory://" in log  # it says why it runs one worker
    assert srv.stop() == 0


def test_production_refuses_a_weak_secret(tmp_path):
    srv = StartedServer({"APP_ENV": "production", "JWT_SECRET_KEY": "change-me"}, tmp_path)
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY"):
        srv.start(timeout=30)
    srv.stop()


def test_admin_from_environment_and_stale_jobs(server, postgres):
    url = postgres.create_database("probeops_e2e_admin")
    srv = server(DATABASE_URL=url, APP_ENV="production", JWT_SECRET_KEY=STRONG_SECRET, METRICS_TOKEN="metrics-token",
                 ADMIN_USERNAME="ops", ADMIN_EMAIL="ops@example.com", ADMIN_PASSWORD=PASSWORD)
    token = requests.post(f"{srv.url}/api/users/login", json={"username": "ops", "password": PASSWORD},
                          timeout=10).json()["token"]
    status = requests.get(f"{srv.url}/api/admin/status", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert status.status_code == 200
    assert status.json()["database"]["engine"] == "postgresql" and status.json()["database"]["users_count"] == 1


def test_rate_limit_is_exact_across_workers_with_redis(server, postgres, redis_server):
    url = postgres.create_database("probeops_e2e_limits")
    srv = server(DATABASE_URL=url, RATELIMIT_STORAGE_URI=redis_server.url, WORKERS="3", THREADS="4",
                 RATELIMIT_DEFAULT="10 per minute", RATELIMIT_AUTH="100 per minute", APP_ENV="production",
                 JWT_SECRET_KEY=STRONG_SECRET, METRICS_TOKEN="metrics-token")
    assert len(workers_of(srv, expected=3)) == 3
    headers = register_and_login(srv.url)
    with ThreadPoolExecutor(8) as pool:
        def me(_):
            return requests.get(f"{srv.url}/api/users/me", headers=headers, timeout=10).status_code

        codes = list(pool.map(me, range(16)))
    assert sorted(codes) == [200] * 10 + [429] * 6
    refused = requests.get(f"{srv.url}/api/users/me", headers=headers, timeout=10)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.json()["error"] == "Too Many Requests"
    # another user has their own budget
    other = register_and_login(srv.url, "bob")
    assert requests.get(f"{srv.url}/api/users/me", headers=other, timeout=10).status_code == 200


def test_memory_storage_runs_one_worker_so_limits_stay_exact(server):
    srv = server(WORKERS="3", THREADS="4", RATELIMIT_DEFAULT="10 per minute", RATELIMIT_AUTH="100 per minute")
    assert len(workers_of(srv)) == 1
    assert "12 threads" in srv.output()
    assert "worker recycling (--max-requests) is off" in srv.output()  # a recycle would reset the counters
    headers = register_and_login(srv.url)
    codes = [requests.get(f"{srv.url}/api/users/me", headers=headers, timeout=10).status_code for _ in range(12)]
    assert codes == [200] * 10 + [429] * 2


def test_quota_is_exact_across_workers(server, postgres, redis_server):
    url = postgres.create_database("probeops_e2e_quota")
    srv = server(DATABASE_URL=url, RATELIMIT_STORAGE_URI=redis_server.url, WORKERS="3", THREADS="8",
                 QUOTA_FREE_DAY="4", CONCURRENT_PROBES_FREE="50", PROBE_ALLOWED_NETWORKS="127.0.0.1/32",
                 APP_ENV="production", JWT_SECRET_KEY=STRONG_SECRET, RATELIMIT_DEFAULT="1000 per minute",
                 METRICS_TOKEN="metrics-token")
    headers = register_and_login(srv.url)

    def ping(_):
        return requests.post(f"{srv.url}/api/probes/ping", headers=headers, json={"host": "127.0.0.1", "count": 1},
                             timeout=30)

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(ping, range(12)))
    assert sorted(r.status_code for r in responses) == [200] * 4 + [429] * 8
    remaining = sorted(r.headers["X-RateLimit-Remaining-Day"] for r in responses if r.status_code == 200)
    assert remaining == ["0", "1", "2", "3"]
    history = requests.get(f"{srv.url}/api/probes/history", headers=headers, timeout=10).json()
    assert history["pagination"]["total"] == 4
    me = requests.get(f"{srv.url}/api/users/me", headers=headers, timeout=10)
    assert me.headers["X-RateLimit-Remaining-Day"] == "0" and me.headers["X-RateLimit-Limit-Day"] == "4"
