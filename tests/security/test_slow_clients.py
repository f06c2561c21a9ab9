"""Slow clients (issue 8 item 1): connections that trickle a request's head or body cost no thread,
so the API keeps answering, and they are cut at the head / body deadlines with a JSON 408."""
import json
import resource
import selectors
import socket
import time

import pytest
import requests

from tests.support.gunicorn import started_servers

pytestmark = pytest.mark.slow
TRICKLERS = 500
HEAD_TRICKLE = b"GET /health HTTP/1.1\r\nX"
BODY_TRICKLE = (b"POST /api/users/register HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{")


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * TRICKLERS:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * TRICKLERS), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def start(tmp_path):
    yield from started_servers(tmp_path)


@pytest.fixture
def sockets():
    opened = []

    def open_one(port, first_bytes=b""):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        opened.append(sock)
        if first_bytes:
            sock.sendall(first_bytes)
        return sock

    yield open_one
    for sock in opened:
        sock.close()


def trickle(socks, byte):
    for sock in socks:
        try:
            sock.send(byte)
        except OSError:
            pass  # already closed by the server


def answers_within(socks, seconds):
    """The first bytes each socket receives before ``seconds`` pass (b"" if it was closed silently)."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    answers, deadline = {}, time.monotonic() + seconds
    while len(answers) < len(socks) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            try:
                answers[key.fileobj] = key.fileobj.recv(4096)
            except ConnectionResetError:
                answers[key.fileobj] = b""
            selector.unregister(key.fileobj)
    selector.close()
    return answers


def test_500_trickling_connections_do_not_stop_the_api(start, sockets):
    srv = start(SERVER_HEADER_TIMEOUT="15", SERVER_BODY_TIMEOUT="15")
    heads = [sockets(srv.port, HEAD_TRICKLE) for _ in range(TRICKLERS // 2)]
    bodies = [sockets(srv.port, BODY_TRICKLE) for _ in range(TRICKLERS // 2)]
    statuses = []
    for _ in range(6):  # about 3 s of trickling, a byte every 0.5 s on every connection
        trickle(heads + bodies, b"a")
        statuses.append(requests.get(srv.url + "/health", timeout=5).status_code)
        time.sleep(0.5)
    assert statuses == [200] * 6
    assert not answers_within(heads + bodies, 0.5)  # still open: nobody was cut before the deadline


def test_a_trickled_head_is_cut_at_the_header_deadline(start, sockets):
    srv = start(SERVER_HEADER_TIMEOUT="2")
    slow = sockets(srv.port, HEAD_TRICKLE)
    began = time.monotonic()
    answer = b""
    while not answer and time.monotonic() - began < 15:
        trickle([slow], b"a")
        answer = answers_within([slow], 0.5).get(slow, b"")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["code"] == "bad_request"
    assert time.monotonic() - began < 10  # the deadline (2 s) and not the trickle ended it


def test_a_body_trickled_at_one_byte_a_second_is_cut_at_the_body_deadline(start, sockets):
    srv = start(SERVER_BODY_TIMEOUT="3")
    slow = sockets(srv.port, BODY_TRICKLE)
    began = time.monotonic()
    answer = b""
    while not answer and time.monotonic() - began < 20:
        trickle([slow], b" ")
        answer = answers_within([slow], 1.0).get(slow, b"")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - began < 12


def test_over_the_connection_cap_the_longest_idle_connections_are_closed(start, sockets):
    srv = start(WORKER_CONNECTIONS="100", SERVER_HEADER_TIMEOUT="60")  # only the cap may close them here
    idle = [sockets(srv.port) for _ in range(150)]
    assert requests.get(srv.url + "/health", timeout=5).status_code == 200
    closed = answers_within(idle, 3)
    assert len(closed) >= 50 and set(closed.values()) == {b""}  # closed without an answer
    assert set(closed) <= set(idle[:60])  # the oldest ones (a few later ones may go to make room for /health)
