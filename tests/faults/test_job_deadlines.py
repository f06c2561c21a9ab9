"""Issue 8 item 22: a job whose worker is killed mid-probe ends as failed while the server runs.

Real Gunicorn through ./start.sh; the worker running a 10-packet ping to 127.0.0.1 gets SIGKILL
(what the kernel's OOM killer sends); the master forks a new worker, whose sweep ends the job
once its deadline has passed — no restart of the server needed.
"""
import os
import signal
import sqlite3
import threading
import time
from datetime import UTC, datetime

import psutil
import psycopg2
import pytest
import requests

from tests.support.gunicorn import StartedServer

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"
SWEEP_SECONDS = 1.0
# Deadline of a 10-packet ping: 10 x 1 s interval + 2 s timeout (the defaults) + this margin.
ENV = {"PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "PROBE_DEADLINE_MARGIN_SECONDS": "2",
       "JOB_SWEEP_SECONDS": str(SWEEP_SECONDS), "WORKERS": "1", "THREADS": "8"}


class JobTable:
    """Reads probe_jobs straight from the database the server uses."""

    def __init__(self, url=None, sqlite_path=None):
        self.url, self.sqlite_path = url, sqlite_path

    def newest(self):
        if self.sqlite_path:
            conn = sqlite3.connect(self.sqlite_path, timeout=10)
        else:
            conn = psycopg2.connect(self.url)
        try:
            cur = conn.cursor()
            cur.execute("SELECT id, status, result, created_at, deadline_at, completed_at FROM probe_jobs "
                        "ORDER BY id DESC LIMIT 1")
            return cur.fetchone()
        finally:
            conn.close()


def aware(value):
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def login(base):
    body = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    assert requests.post(f"{base}/api/users/register", json=body, timeout=10).status_code == 201
    token = requests.post(f"{base}/api/users/login", json={"username": "alice", "password": PASSWORD},
                          timeout=10).json()["token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def started(request, tmp_path):
    env = dict(ENV)
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database("probeops_deadlines")
        env["DATABASE_URL"] = url
        table = JobTable(url=url)
    else:
        table = JobTable(sqlite_path=str(tmp_path / "instance" / "probeops.db"))
    server = StartedServer(env, tmp_path).start()
    yield server, table
    server.stop()


def test_a_killed_workers_job_ends_as_timeout_within_its_deadline_while_the_server_runs(started):
    server, table = started
    headers = login(server.url)
    master = psutil.Process(server.proc.pid)
    (worker,) = master.children()

    def slow_ping():
        try:
            requests.post(f"{server.url}/api/probes/ping", headers=headers, json={"host": "127.0.0.1", "count": 10},
                          timeout=60)
        except requests.RequestException:
            pass  # its worker is killed: the connection drops

    threading.Thread(target=slow_ping, daemon=True).start()
    give_up = time.monotonic() + 10
    while (row := table.newest()) is None or row[1] != "running":
        assert time.monotonic() < give_up, "the ping's job never appeared"
        time.sleep(0.05)
    job_id, _, _, created_at, deadline_at, _ = row
    created_at, deadline_at = aware(created_at), aware(deadline_at)
    assert (deadline_at - created_at).total_seconds() == pytest.approx(10 * 1.0 + 2.0 + 2.0, abs=0.01)

    os.kill(worker.pid, signal.SIGKILL)  # mid-probe, as the OOM killer would
    worker.wait(10)
    seconds_to_deadline = (deadline_at - datetime.now(UTC)).total_seconds()
    give_up = time.monotonic() + seconds_to_deadline + SWEEP_SECONDS + 10
    while (row := table.newest())[1] == "running":
        # Before: the row stayed running until the next ./start.sh.
        assert time.monotonic() < give_up, f"job {job_id} still running past its deadline + sweep period"
        time.sleep(0.2)
    assert row[0] == job_id
    assert (row[1], row[2]) == ("timeout", "The probe did not finish within its deadline")
    completed_at = aware(row[5])
    assert deadline_at <= completed_at  # not ended while its probe could still have been running

    # The same server, with the worker the master forked in place of the killed one, still serves.
    assert server.proc.poll() is None
    (replacement,) = master.children()
    assert replacement.pid != worker.pid
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    again = requests.post(f"{server.url}/api/probes/ping", headers=headers, json={"host": "127.0.0.1", "count": 1},
                          timeout=30)
    assert again.status_code == 200 and again.json()["success"] is True
