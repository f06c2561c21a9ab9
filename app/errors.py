"""The one place every failure becomes the contract's JSON error body.

``{"error": "<HTTP reason phrase>", "message": "<what to fix>", "code": "<stable code>"}`` and,
for a 400 from validation, ``"fields": {"<field>": ["<message>", ...]}`` — for errors raised by
views and services (ApiError), by Flask/Werkzeug (404, 405, 413, ...), by validation, by the
rate limiter (429 + Retry-After) and for anything unexpected (a logged 500 with a request id;
exception text never reaches the client).
"""
import logging
import math
import time
from http import HTTPStatus

from flask import g, jsonify
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from app import metrics
from app.services.budget import BudgetExceeded

log = logging.getLogger("probeops")

DEFAULT_MESSAGES = {
    400: "The request is invalid",
    404: "The requested resource was not found",
    405: "The method is not allowed for this URL",
    413: "The request body is too large",
    415: "Content-Type must be application/json",
    500: "An internal error occurred",
}

# The contract's machine-readable codes (docs/api.md, "Errors"; the OpenAPI document): the code an
# error gets when whoever raised it did not name a more precise one.
DEFAULT_CODES = {
    400: "validation_error",
    401: "authentication_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    414: "bad_request",
    415: "unsupported_media_type",
    429: "rate_limited",
    431: "bad_request",
    500: "internal_error",
    501: "bad_request",
    503: "service_unavailable",
}


def default_code(status):
    """The code for ``status`` when nothing more precise is known."""
    if status in DEFAULT_CODES:
        return DEFAULT_CODES[status]
    return "internal_error" if status >= 500 else "bad_request"


class ApiError(Exception):
    """An error with an HTTP status, a message for the caller, a contract ``code``, optional
    ``fields`` (validation) and optional headers."""

    def __init__(self, status, message, headers=None, code=None, fields=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.code = code or default_code(status)
        self.fields = fields


def error_body(status, message, code=None, fields=None):
    """The contract's error body as a dict (also used outside Flask, e.g. by the server layer)."""
    body = {"error": HTTPStatus(status).phrase, "message": message, "code": code or default_code(status)}
    if fields:
        body["fields"] = fields
    return body


def error_response(status, message, headers=None, code=None, fields=None):
    """Build the JSON error response for ``status``."""
    response = jsonify(error_body(status, message, code, fields))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _field_messages(messages, prefix="", out=None):
    """Turn marshmallow's nested ``{"json": {"host": ["..."]}}`` into ``{"host": ["..."]}``."""
    out = {} if out is None else out
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = prefix if key in ("json", "query", "_schema") else (f"{prefix}.{key}" if prefix else str(key))
            _field_messages(value, name, out)
    elif isinstance(messages, list | tuple):
        for value in messages:
            _field_messages(value, prefix, out)
    else:
        out.setdefault(prefix or "_body", []).append(str(messages).rstrip("."))
    return out


def validation_error(messages):
    """The 400 for webargs/marshmallow messages: a sentence naming every field, plus ``fields``."""
    fields = _field_messages(messages)
    if list(fields) == ["_body"] and any("json" in text.lower() for text in fields["_body"]):
        return ApiError(400, "The body is not valid JSON: send a JSON object", code="invalid_json")
    summary = "; ".join(f"{name}: {text}" if name != "_body" else text
                        for name, texts in fields.items() for text in texts)
    return ApiError(400, "Invalid input: " + summary, fields=fields)


def handle_api_error(exc):
    metrics.rejected(exc.status, exc.code)
    return error_response(exc.status, exc.message, exc.headers, exc.code, exc.fields)


def handle_rate_limit(exc):
    """A per-route limit (flask-limiter: login, register) is spent."""
    from app.services.limits import retry_after_seconds

    return _rate_limited(exc.description, retry_after_seconds())


def handle_budget_exceeded(exc):
    """The general budget (app.services.budget) is spent."""
    return _rate_limited(exc.window.description, max(1, math.ceil(exc.window.reset_at - time.time())))


def _rate_limited(description, retry):
    g.rate_limited = True  # the answer's headers describe the breached limit, not the probe quota
    metrics.rejected(429, "rate_limited")
    message = f"Rate limit exceeded ({description}); retry in {retry} seconds"
    return error_response(429, message, {"Retry-After": str(retry)}, code="rate_limited")


def handle_http_exception(exc):
    status = exc.code or 500
    messages = (getattr(exc, "data", None) or {}).get("messages")
    if messages:  # webargs validation failure: name the fields
        return handle_api_error(validation_error(messages))
    message = DEFAULT_MESSAGES.get(status) or exc.description or HTTPStatus(status).phrase
    headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
    return error_response(status, message, headers)


def handle_unexpected(exc):
    from app.extensions import db

    log.exception("unhandled error (request %s)", g.get("request_id", "-"))
    db.session.rollback()
    return error_response(500, f"An internal error occurred (request id {g.get('request_id', '-')})")


def init_app(app):
    """Register the handlers on the app, so they cover unknown URLs and every blueprint."""
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(RateLimitExceeded, handle_rate_limit)
    app.register_error_handler(BudgetExceeded, handle_budget_exceeded)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
    from app.db import faults

    faults.init_app(app)  # database / Redis unavailable: 503 with Retry-After, logged once per outage
