"""Gunicorn's own answers (malformed or oversized requests) are the contract's JSON (issue 8 item 5),
and requests still frame correctly through the buffering worker (chunked, pipelined, 100-continue)."""
import json
import select
import socket

import pytest
import requests

from tests.support.gunicorn import StartedServer

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    srv = StartedServer({}, tmp_path_factory.mktemp("server-errors")).start()
    yield srv.port
    srv.stop()


def exchange(port, payload, timeout=10):
    """Send ``payload`` (stopping early if the server answers first) and return its whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        view = memoryview(payload)
        while view:
            readable, writable, _ = select.select([sock], [sock], [], timeout)
            if readable:
                break  # answered before reading everything (413, 431, ...)
            try:
                view = view[sock.send(view[:65536]):]
            except (BrokenPipeError, ConnectionResetError):
                break
        return read_until_closed(sock, timeout)


def read_until_closed(sock, timeout):
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def parse(raw):
    """(status, lower-cased headers, body) of the first response in ``raw``."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body[:int(headers.get("content-length", len(body)))]


def assert_contract_error(raw, status, code):
    got, headers, body = parse(raw)
    assert got == status, raw[:300]
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert set(payload) == {"error", "message", "code"} and payload["code"] == code and payload["message"]
    assert b"<html" not in raw.lower()


def test_a_60_kb_header_is_431_json(port):
    raw = exchange(port, b"GET /health HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n")
    assert_contract_error(raw, 431, "bad_request")


def test_a_head_over_the_limit_is_431_without_waiting_for_its_end(port):
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"b" * 4000) for i in range(20))  # 80 KB, never terminated
    raw = exchange(port, b"GET /health HTTP/1.1\r\nHost: a\r\n" + fields)
    assert_contract_error(raw, 431, "bad_request")


def test_a_long_request_line_is_414_json(port):
    assert_contract_error(exchange(port, b"GET /" + b"a" * 6000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"), 414, "bad_request")


def test_a_malformed_request_is_400_json(port):
    assert_contract_error(exchange(port, b"NOT HTTP AT ALL\r\n\r\n"), 400, "bad_request")
    conflicting = b"GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"
    assert_contract_error(exchange(port, conflicting), 400, "bad_request")


def test_an_unknown_transfer_coding_is_501_json(port):
    raw = exchange(port, b"POST /api/users/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: xchunked\r\n\r\n")
    assert_contract_error(raw, 501, "bad_request")


def test_a_10_mb_chunked_body_is_413_body_too_large(port):
    chunk = b"a" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(160)) + b"0\r\n\r\n"
    raw = exchange(port, b"POST /api/users/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert_contract_error(raw, 413, "body_too_large")


def test_a_declared_body_over_the_limit_is_413_at_once(port):
    raw = exchange(port, b"POST /api/users/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 10485760\r\n\r\n{")
    assert_contract_error(raw, 413, "body_too_large")


def test_a_malformed_chunked_body_is_400_json(port):
    raw = exchange(port, b"POST /api/users/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    assert_contract_error(raw, 400, "bad_request")


def test_a_small_chunked_body_reaches_the_app(port):
    body = json.dumps({"username": "chunky", "email": "chunky@example.com", "password": PASSWORD}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    raw = exchange(port, b"POST /api/users/register HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
    status, _, answer = parse(raw)
    assert status == 201, raw[:400]
    assert json.loads(answer)["user"]["username"] == "chunky"


def test_pipelined_requests_on_one_connection_are_all_answered(port):
    raw = exchange(port, b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n" * 3
                         + b"GET /api HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200 OK") == 4


def test_expect_100_continue_gets_one_interim_answer_then_the_result(port):
    body = json.dumps({"username": "expecting", "email": "expecting@example.com", "password": PASSWORD}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /api/users/register HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        raw = read_until_closed(sock, 10)
    assert raw.startswith(b"HTTP/1.1 201") and b"100 Continue" not in raw


def test_keep_alive_still_works(port):
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
