"""The one JSON parser for request bodies: bounded nesting and numbers, 400 ``invalid_json`` otherwise.

Every body is parsed here, whoever asks (webargs through flask-smorest, or ``request.get_json``):
Python's parser accepts nesting until the interpreter's recursion limit (a RecursionError, a
500), integers of up to 4,300 digits (a ValueError past that, or a slow conversion before it),
``NaN``/``Infinity`` and floats that overflow to ``inf``. No field of this API needs any of them.
"""
import json
import math

from flask.json.provider import DefaultJSONProvider
from flask.wrappers import Request
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import RequestEntityTooLarge

from app.errors import ApiError

MAX_DEPTH = 32
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # every integer the API stores or compares fits in 64 bits
MAX_NUMBER_CHARS = 40


class JSONBodyError(ValueError):
    """The body is JSON the API refuses to read (too deep, a number out of range)."""


def _int(text):
    if len(text) > MAX_NUMBER_CHARS or not INT_MIN <= int(text) <= INT_MAX:
        raise JSONBodyError("an integer outside the 64-bit range")
    return int(text)


def _float(text):
    value = float(text) if len(text) <= MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise JSONBodyError("a number too large")
    return value


def _constant(name):
    raise JSONBodyError(f"{name}, which is not JSON")


def _check_depth(value):
    """Refuse containers nested deeper than MAX_DEPTH (iteratively: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    raise JSONBodyError(f"objects or arrays nested more than {MAX_DEPTH} deep")
                stack.append((child, depth + 1))


def loads(data):
    """Parse a body (bytes or str); JSONBodyError or json.JSONDecodeError when it is refused."""
    if isinstance(data, bytes | bytearray):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise JSONBodyError("bytes that are not UTF-8") from None
    try:
        value = json.loads(data, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise JSONBodyError(f"objects or arrays nested more than {MAX_DEPTH} deep") from None
    _check_depth(value)
    return value


def invalid_json(exc):
    """The 400 for a body that cannot be read; the message names the reason, never the body."""
    if isinstance(exc, json.JSONDecodeError):
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    elif isinstance(exc, JSONBodyError):
        reason = f"it holds {exc}"
    else:
        reason = "it cannot be parsed"
    return ApiError(400, f"The body is not valid JSON ({reason}): send a JSON object", code="invalid_json")


class BodyParser(FlaskParser):
    """webargs' Flask parser reading bodies through ``loads``."""

    def _raw_load_json(self, req):
        if not is_json_request(req):
            return core.missing
        try:
            return loads(req.get_data(cache=True))
        except ValueError as exc:  # JSONDecodeError and JSONBodyError are ValueErrors
            raise invalid_json(exc) from None

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        raise invalid_json(error) from None


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, reading through ``loads`` (``request.get_json``)."""

    def loads(self, s, **kwargs):
        return loads(s)


class ApiRequest(Request):
    """A request whose unreadable JSON body is the contract's 400 ``invalid_json``, and whose
    streamed body that reaches MAX_CONTENT_LENGTH is a 413."""

    def get_data(self, cache=True, as_text=False, parse_form_data=False):
        data = super().get_data(cache=cache, as_text=False, parse_form_data=parse_form_data)
        limit = self.max_content_length
        # Werkzeug stops reading a chunked body (no Content-Length) at the limit without a word:
        # the caller would see truncated JSON instead of "too large".
        if self.content_length is None and limit is not None and len(data) >= limit:
            raise RequestEntityTooLarge()
        return data.decode(errors="replace") if as_text else data

    def on_json_loading_failed(self, e):
        if e is None:  # not a JSON content type
            raise ApiError(415, "Content-Type must be application/json")
        raise invalid_json(e) from None
