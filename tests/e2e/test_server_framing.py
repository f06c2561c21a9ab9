"""Where a buffered request ends (app/server/framing.py), without a server."""
import pytest

from app.server.framing import Complete, Incomplete, Limits, Refused, frame

LIMITS = Limits(max_head=1024, max_request_line=256, max_body=100)
GET = b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n"


def post(headers, body=b""):
    return b"POST /x HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n" + body


def test_a_head_is_complete_at_its_empty_line_and_the_rest_is_the_next_request():
    assert frame(GET, LIMITS) == Complete(len(GET))
    assert frame(GET + b"GET /", LIMITS) == Complete(len(GET))
    assert frame(GET[:-1], LIMITS) == Incomplete(head_done=False)


def test_a_body_of_known_length():
    request = post(b"Content-Length: 5\r\n", b"hello")
    assert frame(request[:-2], LIMITS) == Incomplete(head_done=True, need=len(request))
    assert frame(request, LIMITS) == Complete(len(request))


def test_a_chunked_body_ends_after_its_last_chunk_and_trailers():
    request = post(b"Transfer-Encoding: chunked\r\n", b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert frame(request, LIMITS) == Complete(len(request))
    for cut in range(len(request) - 60, len(request)):
        assert isinstance(frame(request[:cut], LIMITS), Incomplete)


def test_oversized_requests_are_refused_before_they_end():
    assert frame(post(b"Content-Length: 101\r\n"), LIMITS) == Refused(
        413, "The request body is larger than 100 bytes", "body_too_large")
    chunks = post(b"Transfer-Encoding: chunked\r\n", b"40\r\n" + b"a" * 64 + b"\r\n40\r\n")
    assert frame(chunks, LIMITS).status == 413
    assert frame(b"GET /" + b"a" * 300, LIMITS).status == 414
    assert frame(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200, LIMITS).status == 431


@pytest.mark.parametrize("headers", [
    b"Transfer-Encoding: xchunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
    b"Content-Length: 3\r\nContent-Length: 4\r\n",
    b"Content-Length: -1\r\n",
])
def test_framing_gunicorn_refuses_is_handed_over_at_the_end_of_the_head(headers):
    request = post(headers)
    assert frame(request + b"abc", LIMITS) == Complete(len(request))


def test_bad_chunk_framing_is_refused():
    assert frame(post(b"Transfer-Encoding: chunked\r\n", b"zz\r\n"), LIMITS).status == 400
    assert frame(post(b"Transfer-Encoding: chunked\r\n", b"2\r\nabc\r\n"), LIMITS).status == 400


def test_expect_100_continue_is_reported_while_the_body_is_missing():
    request = post(b"Content-Length: 5\r\nExpect: 100-continue\r\n")
    assert frame(request, LIMITS).expects_continue
    assert not frame(request.replace(b"HTTP/1.1", b"HTTP/1.0"), LIMITS).expects_continue
