"""Incremental HTTP/1.1 request framing: is the request in this buffer complete yet?

Only as much parsing as it takes to know where a request ends (RFC 9112 section 6): the head ends
at the first empty line, the body is ``Content-Length`` bytes or a chunked body up to its last
chunk and trailers. Everything else (validation of names, values, methods) stays Gunicorn's job:
when a head is malformed in a way that affects framing, the request is called complete at the end
of its head so that Gunicorn's parser sees it and answers its error.
"""
from dataclasses import dataclass

HEAD_END = b"\r\n\r\n"
MAX_CHUNK_LINE = 1024  # a chunk-size line with extensions; longer is an attack, not a client


@dataclass(frozen=True)
class Limits:
    """What one request may hold."""

    max_head: int
    max_request_line: int
    max_body: int


@dataclass(frozen=True)
class Incomplete:
    """More bytes are needed; ``head_done`` says whether the body is what is still missing, ``need``
    how long the buffer must get before framing is worth trying again (0: unknown)."""

    head_done: bool
    expects_continue: bool = False
    need: int = 0


@dataclass(frozen=True)
class Complete:
    """The request ends at ``end`` (bytes after it belong to the next, pipelined, request)."""

    end: int


@dataclass(frozen=True)
class Refused:
    """The request cannot be accepted: answer ``status`` with ``code`` and close."""

    status: int
    message: str
    code: str


def frame(buf, limits):
    """Incomplete, Complete or Refused for the request at the start of ``buf``."""
    head_end = buf.find(HEAD_END)
    if head_end < 0:
        return _incomplete_head(buf, limits)
    body_start = head_end + len(HEAD_END)
    if body_start > limits.max_head:
        return Refused(431, f"The request head is larger than {limits.max_head} bytes", "bad_request")
    headers = _framing_headers(buf[:head_end])
    if headers is None:  # malformed framing headers: Gunicorn's parser names the problem
        return Complete(body_start)
    length, codings, expects_continue = headers
    if codings:
        if codings != ["chunked"] or length is not None:
            return Complete(body_start)  # Gunicorn refuses these (501 / 400) without reading the body
        return _chunked(buf, body_start, limits, expects_continue)
    if not length:
        return Complete(body_start)
    if length > limits.max_body:
        return Refused(413, f"The request body is larger than {limits.max_body} bytes", "body_too_large")
    if len(buf) - body_start >= length:
        return Complete(body_start + length)
    return Incomplete(head_done=True, expects_continue=expects_continue, need=body_start + length)


def _incomplete_head(buf, limits):
    line_end = buf.find(b"\r\n")
    if (line_end < 0 and len(buf) > limits.max_request_line) or line_end > limits.max_request_line:
        return Refused(414, f"The request line is longer than {limits.max_request_line} bytes", "bad_request")
    if len(buf) > limits.max_head:
        return Refused(431, f"The request head is larger than {limits.max_head} bytes", "bad_request")
    return Incomplete(head_done=False)


def _framing_headers(head):
    """(content length or None, transfer codings, expects 100-continue), or None when malformed."""
    lowered = head.lower()
    if b"\r\ncontent-length:" not in lowered and b"\r\ntransfer-encoding:" not in lowered \
            and b"\r\nexpect:" not in lowered:
        return None, [], False  # the common case (GET): no line-by-line walk
    lines = head.split(b"\r\n")
    request_line = lines[0].split(b" ")
    http10 = request_line[-1].strip().upper() == b"HTTP/1.0"
    lengths, codings, expects_continue = set(), [], False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name, value = name.strip().lower(), value.strip()
        if name == b"content-length":
            if not value.isdigit():
                return None
            lengths.add(int(value))
        elif name == b"transfer-encoding":
            codings += [c.strip().lower().decode("latin-1") for c in value.split(b",") if c.strip()]
        elif name == b"expect":
            expects_continue = value.lower() == b"100-continue" and not http10
    if len(lengths) > 1:
        return None
    return (lengths.pop() if lengths else None), codings, expects_continue


def _chunked(buf, pos, limits, expects_continue):
    """Walk the chunks from ``pos``: Complete after the trailers, Incomplete, or Refused."""
    total = 0
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            if len(buf) - pos > MAX_CHUNK_LINE:
                return Refused(400, "Invalid chunked body: chunk-size line too long", "bad_request")
            return Incomplete(head_done=True, expects_continue=expects_continue)
        size_text = buf[pos:line_end].split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            return Refused(400, "Invalid chunked body: bad chunk size", "bad_request")
        size = int(size_text, 16)
        pos = line_end + 2
        if size == 0:
            return _trailers(buf, pos, limits, expects_continue)
        total += size
        if total > limits.max_body:
            return Refused(413, f"The request body is larger than {limits.max_body} bytes", "body_too_large")
        if len(buf) < pos + size + 2:
            return Incomplete(head_done=True, expects_continue=expects_continue)
        if buf[pos + size:pos + size + 2] != b"\r\n":
            return Refused(400, "Invalid chunked body: chunk not followed by CRLF", "bad_request")
        pos += size + 2


def _trailers(buf, pos, limits, expects_continue):
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            if len(buf) - pos > limits.max_head:
                return Refused(431, "The request trailers are too large", "bad_request")
            return Incomplete(head_done=True, expects_continue=expects_continue)
        if line_end == pos:
            return Complete(line_end + 2)
        pos = line_end + 2
