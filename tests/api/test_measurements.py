"""Measurements in the embedded mode (location `local`), through the test client on SQLite and PostgreSQL.

Probes are real pings to 127.0.0.1 (allowed in the tests' PROBE_ALLOWED_NETWORKS).
"""
import json
import socket
import threading
import time

import dns.message
import dns.rrset
import pytest

from app.db.models import Measurement, ProbeJob
from tests.conftest import count_rows

PING = {"type": "ping", "target": "127.0.0.1", "options": {"count": 2}}


def create(client, headers, **body):
    return client.post("/api/measurements", headers=headers, json={**PING, **body})


def wait_finished(client, headers, url, seconds=30):
    give_up = time.monotonic() + seconds
    while True:
        body = client.get(url, headers=headers).get_json()
        if body["status"] == "finished":
            return body
        assert time.monotonic() < give_up, body
        time.sleep(0.05)


def test_create_then_poll_until_finished(client, user, auth_headers, db_session):
    headers = auth_headers(user)
    response = create(client, headers)
    assert response.status_code == 202, response.get_json()
    created = response.get_json()
    assert created["status"] == "in-progress" and created["probes_count"] == 1
    assert len(created["id"]) == 16 and response.headers["Location"] == created["url"]
    assert created["url"].endswith(f"/api/measurements/{created['id']}")
    assert response.headers["X-RateLimit-Remaining-Day"] == "99"
    body = wait_finished(client, headers, created["url"])
    assert (body["id"], body["type"], body["target"], body["options"]) == (created["id"], "ping", "127.0.0.1",
                                                                           {"count": 2})
    (result,) = body["results"]
    assert result["location"]["name"] == "local" and set(result["location"]) >= {
        "name", "country", "city", "asn", "network", "latitude", "longitude", "tags", "version", "last_seen"}
    assert (result["status"], result["success"], result["code"]) == ("finished", True, None)
    assert "2 packets transmitted, 2 received" in result["result"] and result["data"]["stats"]["received"] == 2
    assert result["started_at"] and result["completed_at"] and body["updated_at"] >= body["created_at"]
    job = client.get(f"/api/probes/history/{result['job_id']}", headers=headers).get_json()
    assert (job["status"], job["location"], job["measurement_id"]) == ("completed", "local", created["id"])
    assert job["started_at"]
    listed = client.get("/api/probes/history", headers=headers).get_json()["jobs"][0]
    assert listed["measurement_id"] == created["id"] and listed["location"] == "local"


def test_etag_and_if_none_match(client, user, auth_headers):
    headers = auth_headers(user)
    url = create(client, headers).get_json()["url"]
    wait_finished(client, headers, url)
    first = client.get(url, headers=headers)
    tag = first.headers["ETag"]
    assert first.status_code == 200 and tag.startswith('"')
    again = client.get(url, headers={**headers, "If-None-Match": tag})
    assert again.status_code == 304 and again.headers["ETag"] == tag and not again.get_data()
    other = client.get(url, headers={**headers, "If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.headers["ETag"] == tag


def parse_events(text):
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if lines:
            fields = dict(line.split(": ", 1) for line in lines)
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_the_stream_sends_every_result_then_finished_then_closes(client, user, auth_headers):
    headers = auth_headers(user)
    created = create(client, headers, locations=[{"name": "local"}] * 3, limit=3).get_json()
    assert created["probes_count"] == 3
    response = client.get(f"/api/measurements/{created['id']}/stream", headers=headers)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = parse_events(response.get_data(as_text=True))  # returns once the server closes the stream
    names = [name for name, _ in events]
    assert names == ["result", "result", "result", "finished"]
    assert sorted(data["job_id"] for _, data in events[:3]) == sorted(r["job_id"] for r in events[3][1]["results"])
    assert all(data["status"] == "finished" and data["success"] for _, data in events[:3])
    assert events[3][1]["status"] == "finished"
    assert "id: finished\n" in response.get_data(as_text=True)


def test_a_client_reconnecting_after_finished_is_told_to_stop(client, user, make_user, auth_headers):
    """SSE clients reconnect to a closed stream with the last id they saw; after `finished`: 204
    (the SSE way to stop them), no body; before it, the stream again; another user's is still 404."""
    headers = auth_headers(user)
    created = create(client, headers).get_json()
    stream = f"/api/measurements/{created['id']}/stream"
    with client.get(stream, headers=headers) as first:  # closed: its stream slot goes back
        first.get_data()  # to its end
    again = client.get(stream, headers={**headers, "Last-Event-ID": "finished"})
    assert again.status_code == 204 and again.get_data() == b""
    with client.get(stream, headers={**headers, "Last-Event-ID": "12345"}) as resumed:
        assert [name for name, _ in parse_events(resumed.get_data(as_text=True))] == ["result", "finished"]
    other = client.get(stream, headers={**auth_headers(make_user("mallory")), "Last-Event-ID": "finished"})
    assert other.status_code == 404 and other.get_json()["code"] == "not_found"


def test_another_users_measurement_is_404(client, user, make_user, auth_headers):
    url = create(client, auth_headers(user)).get_json()["url"]
    mallory = auth_headers(make_user("mallory"))
    for path in (url, url + "/stream"):
        response = client.get(path, headers=mallory)
        assert response.status_code == 404 and response.get_json()["code"] == "not_found"
    assert client.get("/api/measurements/nope", headers=mallory).status_code == 404
    assert client.get("/api/measurements", headers=mallory).get_json()["measurements"] == []


def test_list_is_newest_first_and_paginated(client, user, auth_headers):
    headers = auth_headers(user)
    ids = [create(client, headers).get_json()["id"] for _ in range(3)]
    page = client.get("/api/measurements?limit=2", headers=headers).get_json()
    assert [m["id"] for m in page["measurements"]] == ids[::-1][:2]
    assert page["pagination"]["total"] == 3 and page["pagination"]["next"].endswith("limit=2&offset=2")
    rest = client.get("/api/measurements?limit=2&offset=2", headers=headers).get_json()
    assert [m["id"] for m in rest["measurements"]] == ids[:1]


@pytest.mark.parametrize("app_overrides", [{"TIER_QUOTAS": {"Free": (10, 1000), "Standard": (1000, 20000),
                                                            "Enterprise": (None, None)}}])
def test_quota_is_exact_under_parallel_creations(app, user, auth_headers, db_session):
    headers = auth_headers(user)
    codes = []
    barrier = threading.Barrier(20)

    def worker():
        barrier.wait()
        for _ in range(5):  # as a client does: a creation told to retry (the lock's bound, on a busy machine) retries
            response = app.test_client().post("/api/measurements", headers=headers,
                                              json={**PING, "options": {"count": 1},
                                                    "locations": [{"name": "local"}] * 3, "limit": 3})
            code = response.get_json().get("code")
            if code != "concurrency_limit":
                break
            time.sleep(float(response.headers["Retry-After"]))
        codes.append((response.status_code, code))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(codes, key=str) == sorted([(202, None)] * 3 + [(429, "quota_exceeded")] * 17, key=str)
    assert count_rows("probe_jobs") == 9 and count_rows("measurements") == 3  # nothing of the refused ones


def test_a_measurement_the_quota_cannot_cover_whole_starts_nothing(app, client, user, auth_headers, db_session):
    app.config["TIER_QUOTAS"] = {**app.config["TIER_QUOTAS"], "Free": (2, 1000)}
    response = create(client, auth_headers(user), locations=[{"name": "local"}] * 3, limit=3)
    assert response.status_code == 429 and response.get_json()["code"] == "quota_exceeded"
    assert "cannot cover 3" in response.get_json()["message"] and response.headers["Retry-After"]
    assert count_rows("probe_jobs") == 0 and count_rows("measurements") == 0


def test_no_matching_location(client, user, auth_headers):
    for locations in ([{"country": "ZZ"}], [{"name": "local"}, {"tag": "nowhere"}], [{"asn": 64500}]):
        response = create(client, auth_headers(user), locations=locations)
        assert response.status_code == 400 and response.get_json()["code"] == "no_matching_location", locations
    assert count_rows("probe_jobs") == 0


@pytest.mark.parametrize("body, field", [
    ({"type": "nope"}, "type"),
    ({"target": ""}, "target"),
    ({"target": "http://example.com/"}, "target"),
    ({"options": {"count": 0}}, "options.count"),
    ({"options": {"count": 11}}, "options.count"),
    ({"options": {"max_hops": 3}}, "options.max_hops"),
    ({"limit": 0}, "limit"),
    ({"limit": 17}, "limit"),
    ({"locations": [{"planet": "mars"}]}, "locations.0"),
    ({"locations": [{"country": "Germany"}]}, "locations.0"),
    ({"type": "dns", "target": "example.com", "options": {"record_type": "BOGUS"}}, "options.record_type"),
])
def test_validation_errors_name_the_field(client, user, auth_headers, body, field):
    response = create(client, auth_headers(user), **body)
    answer = response.get_json()
    assert response.status_code == 400 and answer["code"] == "validation_error", answer
    assert field in answer["fields"], answer
    assert count_rows("probe_jobs") == 0


@pytest.mark.parametrize("target", ["127.0.0.2", "localhost", "printer.local", "169.254.169.254"])
def test_literal_special_targets_are_refused_at_once(client, user, auth_headers, target):
    response = create(client, auth_headers(user), target=target)
    assert response.status_code == 403 and response.get_json()["code"] == "target_refused"
    assert count_rows("probe_jobs") == 0


def test_locations_lists_local(client, user, auth_headers):
    (location,) = client.get("/api/locations", headers=auth_headers(user)).get_json()["locations"]
    assert location["name"] == "local" and location["last_seen"]


@pytest.mark.parametrize("app_overrides, status, code", [
    ({"MEASUREMENT_STREAMS_PER_USER": 0}, 429, "concurrency_limit"),
    ({"MEASUREMENT_STREAMS_PER_WORKER": 0}, 503, "server_busy"),
])
def test_streams_are_capped(client, user, auth_headers, app_overrides, status, code):
    headers = auth_headers(user)
    created = create(client, headers).get_json()
    response = client.get(f"/api/measurements/{created['id']}/stream", headers=headers)
    assert response.status_code == status and response.get_json()["code"] == code


def test_a_result_nobody_delivers_ends_as_timeout_and_the_stream_says_so(app, client, user, auth_headers,
                                                                         db_session):
    from datetime import timedelta

    from app.services.probe_jobs import reserve_jobs
    from app.utils.clock import utcnow

    headers = auth_headers(user)
    now = utcnow()
    lost = Measurement(id="lostmeasurement1", user_id=user.id, type="ping", target="127.0.0.1",
                       options={"count": 1}, locations=[{"name": "gone", "tags": []}], limit=1, probes_count=1,
                       status="in-progress", created_at=now, updated_at=now)
    (job,), _ = reserve_jobs(user, "ping", "127.0.0.1", {"count": 1}, ["gone"], measurement=lost,
                             check_concurrency=False)  # never submitted: as if its agent vanished
    db_session.get(ProbeJob, job.id).deadline_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    events = parse_events(client.get("/api/measurements/lostmeasurement1/stream", headers=headers)
                          .get_data(as_text=True))
    assert [name for name, _ in events] == ["result", "finished"]
    assert (events[0][1]["status"], events[0][1]["success"]) == ("timeout", False)
    body = client.get("/api/measurements/lostmeasurement1", headers=headers).get_json()
    assert body["status"] == "finished" and body["results"][0]["status"] == "timeout"


def test_a_result_committed_while_the_stream_reads_is_sent_before_finished(app, user, db_session):
    """The last result commits with ``finished``. If it commits between the stream's read of the
    ended results and its read of the status, the stream must still send it before ``finished``."""
    from sqlalchemy import event

    from app.extensions import db
    from app.services import measurements as service
    from app.services.job_store import store_outcome
    from app.services.probe_jobs import reserve_jobs
    from app.utils.clock import utcnow

    now = utcnow()
    racing = Measurement(id="racingmeasurem01", user_id=user.id, type="ping", target="127.0.0.1",
                         options={"count": 1}, locations=[{"name": "a"}, {"name": "b"}], limit=2, probes_count=2,
                         status="in-progress", created_at=now, updated_at=now)
    (first, last), _ = reserve_jobs(user, "ping", "127.0.0.1", {"count": 1}, ["a", "b"], measurement=racing,
                                    check_concurrency=False)
    first_id, last_id = first.id, last.id
    db_session.commit()
    answered = {"status": "finished", "success": True, "result": "ok", "data": {}}
    assert store_outcome(first_id, answered)

    landed = []

    def last_result_lands(conn, cursor, statement, parameters, context, executemany):
        if not landed:  # after the stream's first read: committed on another connection before its second
            landed.append("storing")
            landed[0] = store_outcome(last_id, answered)

    sent = set()
    event.listen(db.engine, "after_cursor_execute", last_result_lands)
    try:
        for _ in range(3):
            results, status = service.ended_results("racingmeasurem01", {}, sent)
            sent |= {result["job_id"] for result in results}
            if status != "in-progress":
                break
    finally:
        event.remove(db.engine, "after_cursor_execute", last_result_lands)
    assert landed == [True]
    assert status == "finished" and sent == {first_id, last_id}


# -- a target the executor refuses after resolving it -----------------------------------------------
NAMESERVER = "127.53.0.1"  # a loopback address of its own: port 53 there is ours alone


class AnsweringNameserver:
    """Answers every A query with 127.0.0.2 (a loopback address the tests' policy refuses)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((NAMESERVER, 53))
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self):
        while not self.stop.is_set():
            try:
                wire, client = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            query = dns.message.from_wire(wire)
            answer = dns.message.make_response(query)
            question = query.question[0]
            if question.rdtype == 1:  # A
                answer.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", "127.0.0.2"))
            self.sock.sendto(answer.to_wire(), client)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def nameserver():
    try:
        server = AnsweringNameserver()
    except OSError as exc:
        pytest.skip(f"cannot bind {NAMESERVER}:53 ({exc})")
    with server:
        yield server


@pytest.mark.parametrize("app_overrides", [{"DNS_NAMESERVERS": [NAMESERVER]}])
def test_a_target_refused_by_the_executor_is_a_failed_result_that_uses_no_quota(client, user, auth_headers,
                                                                                 nameserver, db_session):
    headers = auth_headers(user)
    response = create(client, headers, target="sneaky.example.net")
    assert response.status_code == 202, response.get_json()
    body = wait_finished(client, headers, response.get_json()["url"])
    (result,) = body["results"]
    assert (result["status"], result["success"], result["code"]) == ("failed", False, "target_refused")
    assert "127.0.0.2" in result["result"]
    from app.services.quotas import usage_for

    assert usage_for(user).day_used == 0  # the refused result did not count
    # The synchronous path: 403 and no job at all.
    sync = client.post("/api/probes/ping", headers=headers, json={"host": "sneaky.example.net", "count": 1})
    assert sync.status_code == 403 and sync.get_json()["code"] == "target_refused"
    assert db_session.query(ProbeJob).count() == 1 and db_session.query(Measurement).count() == 1


# -- several Gunicorn workers (./start.sh) ---------------------------------------------------------
def _worker_serving(workers, conn):
    """The Gunicorn worker holding this keep-alive connection's server side."""
    port = conn.sock.getsockname()[1]
    for worker in workers:
        if any(c.raddr and c.raddr.port == port for c in worker.net_connections(kind="tcp")):
            return worker.pid
    return None


def _call(conn, method, path, headers, body=None):
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=payload, headers={**headers, **({"Content-Type": "application/json"}
                                                                     if payload else {})})
    response = conn.getresponse()
    return response.status, response.read()


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_created_in_one_gunicorn_worker_polled_in_another(tmp_path, database, request, redis_server):
    import http.client

    import psutil

    from tests.e2e.test_start_sh import register_and_login, workers_of
    from tests.support.gunicorn import StartedServer

    env = {"RATELIMIT_STORAGE_URI": redis_server.url, "WORKERS": "3", "THREADS": "4",
           "PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "PING_INTERVAL": "0.2", "RATELIMIT_DEFAULT": "1000 per minute"}
    if database == "postgresql":
        env["DATABASE_URL"] = request.getfixturevalue("postgres").create_database(f"probeops_meas_{database}")
    srv = StartedServer(env, tmp_path).start()
    try:
        workers = workers_of(srv, expected=3)
        assert len(workers) == 3
        workers = [psutil.Process(w.pid) for w in workers]
        headers = register_and_login(srv.url)
        creator = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        status, raw = _call(creator, "POST", "/api/measurements", headers,
                            {**PING, "options": {"count": 5}, "locations": [{"name": "local"}] * 2, "limit": 2})
        assert status == 202, raw
        created = json.loads(raw)
        created_in = _worker_serving(workers, creator)
        assert created_in is not None
        # New connections until one is served by another worker; poll there until finished.
        for _ in range(60):
            poller = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            status, raw = _call(poller, "GET", f"/api/measurements/{created['id']}", headers)
            assert status == 200, raw
            if _worker_serving(workers, poller) not in (created_in, None):
                break
            poller.close()
        else:
            pytest.fail("every connection went to the creating worker")
        body = json.loads(raw)
        assert body["status"] == "in-progress"  # 5 pings 0.2 s apart: still running
        give_up = time.monotonic() + 30
        while body["status"] != "finished":
            assert time.monotonic() < give_up, body
            time.sleep(0.1)
            status, raw = _call(poller, "GET", f"/api/measurements/{created['id']}", headers)
            body = json.loads(raw)
        assert [r["status"] for r in body["results"]] == ["finished", "finished"]
        assert all("5 packets transmitted, 5 received" in r["result"] for r in body["results"])
        creator.close()
        poller.close()
        # The event stream through the buffered Gunicorn worker: each event as it happens.
        import requests

        created = requests.post(f"{srv.url}/api/measurements", headers=headers, timeout=10,
                                json={**PING, "locations": [{"name": "local"}] * 2, "limit": 2}).json()
        with requests.get(f"{srv.url}/api/measurements/{created['id']}/stream", headers=headers, stream=True,
                          timeout=30) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            events = parse_events(stream.content.decode())  # returns when the server closes it
        assert [name for name, _ in events] == ["result", "result", "finished"]
    finally:
        srv.stop()


@pytest.mark.slow
def test_one_user_creating_50_measurements_at_once_is_never_503(tmp_path, postgres, redis_server):
    """Fifty creations by ONE user at the same moment, over 50 connections to 5 Gunicorn workers on
    PostgreSQL: they queue on the user's row for the quota reservation. Each is created (202) or,
    past the lock's bound, told to retry (429 concurrency_limit, Retry-After) - never 503, the
    database is healthy. The statement timeout is short here (0.5 s) so that the queue is longer
    than it (before, the waiting creations were cancelled by it: 503). The quota stays exact."""
    import concurrent.futures

    import requests

    from tests.e2e.test_start_sh import register_and_login
    from tests.support.gunicorn import StartedServer

    env = {"RATELIMIT_STORAGE_URI": redis_server.url, "WORKERS": "5", "THREADS": "16",
           "DATABASE_URL": postgres.create_database("probeops_meas_burst"), "DB_STATEMENT_TIMEOUT": "0.5",
           "PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "PING_INTERVAL": "0.2", "RATELIMIT_DEFAULT": "1000 per minute"}
    srv = StartedServer(env, tmp_path).start()
    try:
        headers = register_and_login(srv.url, name="burst")
        barrier = threading.Barrier(50)

        def create_one(_):
            with requests.Session() as session:
                session.get(f"{srv.url}/health", timeout=10)  # connected before the barrier
                barrier.wait()
                response = session.post(f"{srv.url}/api/measurements", headers=headers, timeout=30,
                                        json={**PING, "options": {"count": 1},
                                              "locations": [{"name": "local"}] * 2, "limit": 2})
                return response.status_code, response.json().get("code"), response.headers.get("Retry-After")

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(create_one, range(50)))
        assert not [a for a in answers if a[0] >= 500], (answers, srv.output()[-3000:])
        assert all(status == 202 or ((status, code) == (429, "concurrency_limit") and retry)
                   for status, code, retry in answers), answers
        created = sum(1 for status, _code, _retry in answers if status == 202)
        assert created >= 1
        usage = requests.get(f"{srv.url}/api/users/me/usage", headers=headers, timeout=10).json()
        assert usage["quota"]["day"]["used"] == 2 * created, usage  # exactly the created ones' results
        listed = requests.get(f"{srv.url}/api/measurements?limit=100", headers=headers, timeout=10).json()
        assert listed["pagination"]["total"] == created
        assert "unavailable" not in srv.output()  # no database outage logged either
    finally:
        srv.stop()


@pytest.mark.slow
def test_a_users_stream_cap_holds_across_gunicorn_workers(tmp_path, redis_server):
    """MEASUREMENT_STREAMS_PER_USER 2, three workers, one stream asked on each: 200, 200 and 429
    (counted in Redis, not per worker); once the streams end, their slots are back."""
    import psutil
    import redis as redis_lib

    from tests.api.test_sessions import _connections_on_every_worker
    from tests.e2e.test_start_sh import register_and_login, workers_of
    from tests.support.gunicorn import StartedServer

    shared = redis_lib.Redis.from_url(redis_server.url)
    for key in shared.scan_iter("probeops:streams:*"):  # other tests' users had the same ids
        shared.delete(key)
    env = {"RATELIMIT_STORAGE_URI": redis_server.url, "WORKERS": "3", "THREADS": "4",
           "PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "PING_INTERVAL": "0.5", "MEASUREMENT_STREAMS_PER_USER": "2",
           "RATELIMIT_DEFAULT": "1000 per minute", "RATELIMIT_AUTH": "1000 per minute"}
    srv = StartedServer(env, tmp_path).start()
    connections = []
    try:
        workers = [psutil.Process(w.pid) for w in workers_of(srv, expected=3)]
        headers = register_and_login(srv.url)
        connections = _connections_on_every_worker(srv.port, workers, headers)
        status, raw = _call(connections[0], "POST", "/api/measurements", headers, {**PING, "options": {"count": 10}})
        assert status == 202, raw  # ~4.5 s in progress
        stream = f"/api/measurements/{json.loads(raw)['id']}/stream"
        answers = []
        for conn in connections:  # one stream on each worker
            conn.request("GET", stream, headers=headers)
            answers.append(conn.getresponse())
        assert sorted(answer.status for answer in answers) == [200, 200, 429]
        refused = next(answer for answer in answers if answer.status == 429)
        assert json.loads(refused.read())["code"] == "concurrency_limit"
        for answer in answers:
            if answer.status == 200:
                assert b"event: finished" in answer.read()  # to its end: the measurement finished
        give_up = time.monotonic() + 5  # each worker gives its slot back as it closes the stream
        while sum(shared.zcard(key) for key in shared.scan_iter("probeops:streams:*")):
            assert time.monotonic() < give_up, "the streams' slots were not given back"
            time.sleep(0.05)
        status, raw = _call(connections[0], "GET", stream, headers)
        assert status == 200 and b"event: finished" in raw
    finally:
        for conn in connections:
            conn.close()
        srv.stop()


@pytest.mark.slow
def test_event_streams_never_take_every_request_thread(tmp_path, redis_server):
    """A worker with 4 threads: however many streams are asked for, at most half the threads hold
    one (the rest 503 server_busy), and the API keeps answering other requests meanwhile."""
    import requests

    from tests.e2e.test_start_sh import register_and_login
    from tests.support.gunicorn import StartedServer

    env = {"RATELIMIT_STORAGE_URI": redis_server.url, "WORKERS": "1", "THREADS": "4",
           "PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "MEASUREMENT_STREAMS_PER_USER": "10",
           "RATELIMIT_DEFAULT": "1000 per minute"}
    srv = StartedServer(env, tmp_path).start()
    streams = []
    try:
        headers = register_and_login(srv.url)
        created = requests.post(f"{srv.url}/api/measurements", headers=headers, timeout=10,
                                json={**PING, "options": {"count": 10}}).json()  # ~10 s in progress
        url = f"{srv.url}/api/measurements/{created['id']}/stream"
        answers = []
        for _ in range(4):
            response = requests.get(url, headers=headers, stream=True, timeout=10)
            answers.append(response.status_code)
            streams.append(response)
        assert answers == [200, 200, 503, 503], answers
        assert all(r.json()["code"] == "server_busy" for r in streams[2:])
        for _ in range(5):  # two threads are left for everything else
            assert requests.get(f"{srv.url}/api/health", timeout=5).status_code == 200
            assert requests.get(f"{srv.url}/api/measurements/{created['id']}", headers=headers,
                                timeout=5).json()["status"] == "in-progress"
    finally:
        for response in streams:
            response.close()
        srv.stop()
