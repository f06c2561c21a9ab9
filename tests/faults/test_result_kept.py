"""Issue 8 item 21 (results): a probe that finishes while PostgreSQL is down keeps its result.

A dedicated PostgreSQL (not the session's shared one) is stopped with ``pg_ctl stop -m fast``
while a real ping to 127.0.0.1 runs, and started again after the probe has finished.
"""
import os
import shutil
import subprocess
import threading
import time

import psycopg2
import pytest

from tests.conftest import PASSWORD, build_app, migrate
from tests.support.servers import PostgresServer, _pg_bin

pytestmark = pytest.mark.slow

PING = {"host": "127.0.0.1", "count": 4}  # 4 packets, 0.05 s apart (test config): done in well under 2 s


class RestartablePostgres(PostgresServer):
    """The session's PostgresServer, with a real stop and start of the same data directory."""

    def pg_ctl(self, *args):
        subprocess.run(self._as_owner([_pg_bin("pg_ctl"), "-D", self.data, *args]), check=True,
                       capture_output=True, timeout=60)

    def down(self):
        self.pg_ctl("stop", "-m", "fast", "-w")

    def up(self):
        options = f"-p {self.port} -h 127.0.0.1 -k {self.dir} -c fsync=off -c synchronous_commit=off"
        self.pg_ctl("start", "-w", "-o", options, "-l", os.path.join(self.dir, "restart.log"))
        self._wait_ready()

    def stop(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self.pg_ctl("stop", "-m", "immediate", "-w")
        if self.proc:
            self.proc.wait(15)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pg():
    server = RestartablePostgres().start()
    yield server
    server.stop()


def make_app(pg, **overrides):
    url = pg.create_database("probeops_kept")
    migrate(url)
    return build_app(url, **overrides), url


def register(app):
    client = app.test_client()
    body = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    assert client.post("/api/users/register", json=body).status_code == 201
    token = client.post("/api/users/login", json={"username": "alice", "password": PASSWORD}).get_json()["token"]
    return {"Authorization": f"Bearer {token}"}


def job_row(url, job_id=None):
    """The newest (or the given) job, read straight from PostgreSQL; None while it is down."""
    try:
        conn = psycopg2.connect(url, connect_timeout=2)
    except psycopg2.OperationalError:
        return None
    try:
        with conn.cursor() as cur:
            where, args = ("WHERE id = %s", (job_id,)) if job_id else ("", ())
            cur.execute(f"SELECT id, status, success, result, data FROM probe_jobs {where} ORDER BY id DESC LIMIT 1",
                        args)
            return cur.fetchone()
    finally:
        conn.close()


def ping_in_thread(app, headers):
    answer = {}

    def run():
        response = app.test_client().post("/api/probes/ping", headers=headers, json=PING)
        answer.update(status=response.status_code, body=response.get_json(), headers=dict(response.headers))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answer


def stop_while_running(pg, url):
    """Wait for the probe's row to be committed as running, then stop PostgreSQL under it."""
    deadline = time.monotonic() + 10
    while (row := job_row(url)) is None or row[1] != "running":
        assert time.monotonic() < deadline, "the probe's job never appeared"
        time.sleep(0.005)
    pg.down()
    return row[0]


def test_a_result_finished_during_a_short_outage_is_stored_and_answered(pg):
    app, url = make_app(pg, PING_INTERVAL=0.3, PROBE_RESULT_WAIT_SECONDS=20)
    headers = register(app)
    thread, answer = ping_in_thread(app, headers)
    job_id = stop_while_running(pg, url)
    time.sleep(2.5)  # the probe (4 x 0.3 s) finishes while the database is down
    assert thread.is_alive(), "the caller must wait for the database, not get an error"
    pg.up()
    thread.join(30)
    assert answer["status"] == 200, answer
    assert answer["body"]["job_id"] == job_id and answer["body"]["success"] is True
    assert "4 packets transmitted" in answer["body"]["result"]
    _, status, success, result, data = job_row(url, job_id)
    assert (status, success) == ("completed", True)
    assert result == answer["body"]["result"] and data["stats"]["received"] == 4


def test_a_result_finished_during_a_long_outage_is_kept_and_written_later(pg):
    app, url = make_app(pg, PING_INTERVAL=0.3, PROBE_RESULT_WAIT_SECONDS=1, PROBE_DEADLINE_MARGIN_SECONDS=60)
    headers = register(app)
    thread, answer = ping_in_thread(app, headers)
    job_id = stop_while_running(pg, url)
    thread.join(30)
    # Before: 500 and "could not be stored". Now: 503 with Retry-After, and the result is kept.
    assert answer["status"] == 503, answer
    assert answer["body"]["code"] == "service_unavailable" and int(answer["headers"]["Retry-After"]) >= 1
    assert f"job {job_id}" in answer["body"]["message"]
    time.sleep(1.0)  # the worker keeps trying while the database is still down
    pg.up()
    give_up = time.monotonic() + 30
    while (row := job_row(url, job_id)) is None or row[1] == "running":
        assert time.monotonic() < give_up, "the kept result was never written"
        time.sleep(0.2)
    _, status, success, result, data = row
    assert (status, success) == ("completed", True)
    assert "4 packets transmitted, 4 received" in result and data["stats"]["received"] == 4
    client = build_app(url).test_client()  # fresh pools: stale connections after a restart are item 21's other part
    detail = client.get(f"/api/probes/history/{job_id}", headers=headers)
    assert detail.status_code == 200 and detail.get_json()["status"] == "completed"
