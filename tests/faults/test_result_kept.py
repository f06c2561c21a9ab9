"""Issue 8 item 21 (results): a probe that finishes while PostgreSQL is down keeps its result.

A dedicated PostgreSQL (not the session's shared one) is stopped (fast shutdown) or hung (every
server process SIGSTOPped) while a real ping to 127.0.0.1 runs, and brought back after the probe
has finished.
"""
import threading
import time

import psycopg2
import pytest

from tests.conftest import PASSWORD, build_app, migrate
from tests.support.servers import PostgresServer

pytestmark = pytest.mark.slow

PING = {"host": "127.0.0.1", "count": 4}  # 4 packets, 0.05 s apart (test config): done in well under 2 s


OUTAGES = {
    "stopped": (PostgresServer.halt, PostgresServer._run),   # fast shutdown, then started again
    "hung": (PostgresServer.pause, PostgresServer.resume),   # every server process SIGSTOPped, then SIGCONT
}


@pytest.fixture
def pg():
    server = PostgresServer().start()
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


def fail_while_running(pg, url, outage):
    """Wait for the probe's row to be committed as running, then take PostgreSQL away under it."""
    deadline = time.monotonic() + 10
    while (row := job_row(url)) is None or row[1] != "running":
        assert time.monotonic() < deadline, "the probe's job never appeared"
        time.sleep(0.005)
    OUTAGES[outage][0](pg)
    return row[0]


def test_a_result_finished_during_a_short_outage_is_stored_and_answered(pg):
    app, url = make_app(pg, PING_INTERVAL=0.3, PROBE_RESULT_WAIT_SECONDS=20)
    headers = register(app)
    thread, answer = ping_in_thread(app, headers)
    job_id = fail_while_running(pg, url, "stopped")
    time.sleep(2.5)  # the probe (4 x 0.3 s) finishes while the database is down
    assert thread.is_alive(), "the caller must wait for the database, not get an error"
    OUTAGES["stopped"][1](pg)
    thread.join(30)
    assert answer["status"] == 200, answer
    assert answer["body"]["job_id"] == job_id and answer["body"]["success"] is True
    assert "4 packets transmitted" in answer["body"]["result"]
    _, status, success, result, data = job_row(url, job_id)
    assert (status, success) == ("completed", True)
    assert result == answer["body"]["result"] and data["stats"]["received"] == 4


@pytest.mark.parametrize("outage", sorted(OUTAGES))
def test_a_result_finished_during_a_long_outage_is_kept_and_written_later(pg, outage):
    app, url = make_app(pg, PING_INTERVAL=0.3, PROBE_RESULT_WAIT_SECONDS=1, PROBE_DEADLINE_MARGIN_SECONDS=60)
    headers = register(app)
    thread, answer = ping_in_thread(app, headers)
    job_id = fail_while_running(pg, url, outage)
    thread.join(30)
    # Before: 500 and "could not be stored". Now: 503 with Retry-After, and the result is kept.
    assert answer["status"] == 503, answer
    assert answer["body"]["code"] == "service_unavailable" and int(answer["headers"]["Retry-After"]) >= 1
    assert f"job {job_id}" in answer["body"]["message"]
    time.sleep(1.0)  # the worker keeps trying while the database is still away
    OUTAGES[outage][1](pg)
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
