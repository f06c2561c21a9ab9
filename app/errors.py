"""The one place every failure becomes the contract's JSON error body.

``{"error": "<HTTP reason phrase>", "message": "<what to fix>"}`` — for errors raised by
views (ApiError), by Flask/Werkzeug (404, 405, 413, ...), by validation (400 naming the
field), by the rate limiter (429 + Retry-After) and for anything unexpected (a logged
500 with a request id; exception text never reaches the client).
"""
import logging
from http import HTTPStatus

from flask import g, jsonify
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException

log = logging.getLogger("probeops")

DEFAULT_MESSAGES = {
    400: "The request is invalid",
    404: "The requested resource was not found",
    405: "The method is not allowed for this URL",
    413: "The request body is too large",
    415: "Content-Type must be application/json",
    500: "An internal error occurred",
}


class ApiError(Exception):
    """An error with an HTTP status, a message for the caller and optional headers."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status, message, headers=None):
    """Build the JSON error response for ``status``."""
    response = jsonify(error=HTTPStatus(status).phrase, message=message)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _flatten(messages, prefix=""):
    """Turn marshmallow's nested ``{"json": {"host": ["..."]}}`` into ``["host: ...", ...]``."""
    if isinstance(messages, dict):
        out = []
        for key, value in messages.items():
            name = prefix if key in ("json", "query", "_schema") else (f"{prefix}.{key}" if prefix else str(key))
            out.extend(_flatten(value, name))
        return out
    if isinstance(messages, list | tuple):
        return [item for value in messages for item in _flatten(value, prefix)]
    text = str(messages).rstrip(".")
    return [f"{prefix}: {text}" if prefix else text]


def handle_api_error(exc):
    return error_response(exc.status, exc.message, exc.headers)


def handle_rate_limit(exc):
    from app.services.limits import retry_after_seconds

    retry = retry_after_seconds()
    message = f"Rate limit exceeded ({exc.description}); retry in {retry} seconds"
    return error_response(429, message, {"Retry-After": str(retry)})


def handle_http_exception(exc):
    status = exc.code or 500
    messages = (getattr(exc, "data", None) or {}).get("messages")
    if messages:  # webargs validation failure: name the fields
        return error_response(400, "Invalid input: " + "; ".join(_flatten(messages)))
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
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
