"""Raw HTTP/1.1 error answers in the contract's JSON, for the server layer (no Flask involved)."""
import json
from http import HTTPStatus

from app.errors import error_body


def json_error(status, message, code=None, headers=None):
    """A complete ``Connection: close`` response with the contract's error body."""
    body = json.dumps(error_body(status, message, code)).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close", "X-Content-Type-Options: nosniff",
             "Cache-Control: no-store"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
