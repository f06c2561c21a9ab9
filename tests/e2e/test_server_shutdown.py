"""Graceful shutdown (issue 8 item 24): after SIGTERM the probe in flight finishes, new connections
are refused at once, a request only partly received is answered 503 (JSON, Connection: close,
Retry-After), and readiness reports 503 as soon as shutdown begins."""
import json
import os
import signal
import socket
import threading
import time

import pytest
import requests

from app import lifecycle
from tests.support.gunicorn import StartedServer

PASSWORD = "correct horse battery staple"


def login(base):
    account = {"username": "drain", "email": "drain@example.com", "password": PASSWORD}
    assert requests.post(f"{base}/api/users/register", json=account, timeout=10).status_code == 201
    response = requests.post(f"{base}/api/users/login", json={"email": account["email"], "password": PASSWORD},
                             timeout=10)
    assert response.status_code == 200, response.text
    return {"Authorization": "Bearer " + response.json()["token"]}


@pytest.mark.slow
def test_sigterm_finishes_in_flight_probes_and_refuses_new_requests(tmp_path):
    srv = StartedServer({"PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "GRACEFUL_TIMEOUT": "20"}, tmp_path).start()
    try:
        assert not (tmp_path / ".gunicorn").exists()  # HOME: Gunicorn 27's control socket is turned off
        headers = login(srv.url)
        partial = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        partial.sendall(b"GET /health HTTP/1.1\r\nHost: a\r\n")  # head not finished yet
        result = {}

        def ping():
            result["ping"] = requests.post(f"{srv.url}/api/probes/ping", headers=headers,
                                           json={"host": "127.0.0.1", "count": 4}, timeout=30)

        worker = threading.Thread(target=ping)
        worker.start()
        time.sleep(1.0)  # the ping is running (about 3 s)
        os.kill(srv.proc.pid, signal.SIGTERM)  # the master, as `docker stop` does
        signalled = time.monotonic()
        while True:  # until the worker has handled the signal a new client is still served
            try:
                requests.get(srv.url + "/health", timeout=3)  # a ReadTimeout here: queued for nobody
            except requests.ConnectionError:
                break  # refused at once
            assert time.monotonic() - signalled < 5, "new connections still accepted after SIGTERM"
            time.sleep(0.1)

        raw = partial.recv(4096)
        partial.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert b"Connection: close" in head and b"Retry-After: " in head
        assert json.loads(body)["code"] == "service_unavailable"

        worker.join(30)
        ping_answer = result["ping"]
        assert ping_answer.status_code == 200 and ping_answer.json()["success"] is True
        assert ping_answer.headers["Connection"] == "close"
        assert srv.proc.wait(30) == 0
    finally:
        srv.stop()


@pytest.fixture
def draining():
    lifecycle.begin_shutdown()
    yield
    lifecycle._shutting_down.clear()  # the flag is process-wide: leave it as other tests expect it


def test_readiness_is_503_once_shutdown_begins(client, draining):
    response = client.get("/api/health/ready")
    assert response.status_code == 503
    assert response.json["code"] == "service_unavailable" and response.headers["Retry-After"]
    assert client.get("/health").status_code == 200  # liveness: the process still answers
