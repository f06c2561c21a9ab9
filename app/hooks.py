"""Per-request hooks: request id, JSON-only bodies, identity, timing, quota headers."""
import time
import uuid

from flask import current_app, g, request
from sqlalchemy import event

from app.auth.identity import identify_request
from app.errors import ApiError
from app.services import stats

BODY_METHODS = ("POST", "PUT", "PATCH")


def start_request():
    """Stamp the request with an id and a start time."""
    g.request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
    g.started = time.perf_counter()


def require_json_body():
    """415 for a body that is not JSON; an empty body is left to validation (400)."""
    if request.method not in BODY_METHODS or request.routing_exception is not None:
        return  # unknown URL or method: the 404/405 says more than a 415 would
    has_body = (request.content_length or 0) > 0 or "chunked" in request.headers.get("Transfer-Encoding", "")
    if request.mimetype and not request.is_json or has_body and not request.is_json:
        raise ApiError(415, "Content-Type must be application/json")


def finish_request(response):
    """Add the request id and quota headers; count the request for the status page."""
    response.headers["X-Request-ID"] = g.get("request_id", "")
    user = g.get("current_user")
    if user is not None and response.status_code < 500:
        usage = g.get("quota_usage")
        if usage is None:
            from app.services.quotas import usage_for

            usage = usage_for(user)
        for name, value in usage.headers().items():
            response.headers.setdefault(name, value)
    if "started" in g:
        stats.counter.record((time.perf_counter() - g.started) * 1000,
                             current_app.config["STATS_FLUSH_SECONDS"])
    return response


def skip_preflight():
    """CORS preflights are never rate limited."""
    return request.method == "OPTIONS"


def init_app(app):
    """Register the hooks in order (identity must run before the rate limiter's hook)."""
    from app.extensions import limiter

    app.before_request(start_request)
    app.before_request(require_json_body)
    app.before_request(identify_request)
    app.after_request(finish_request)
    limiter.request_filter(skip_preflight)


def init_sqlite_pragmas(engine):
    """SQLite with several workers: WAL so readers don't block the writer, and a busy timeout."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
