"""Per-request hooks: request id, JSON-only bodies, identity, timing, and the answer's headers."""
import math
import re
import time
import uuid

from flask import current_app, g, request

from app import logging_setup, metrics
from app.auth.identity import identify_request
from app.errors import ApiError
from app.services import budget, stats

BODY_METHODS = ("POST", "PUT", "PATCH")


# A caller's X-Request-ID is echoed in a header and written to the log: visible ASCII only.
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,64}")


def start_request():
    """Stamp the request with an id (the caller's, when it is safe to echo) and a start time."""
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    g.started = time.perf_counter()


def require_json_body():
    """415 for a body that is not JSON; an empty body is left to validation (400)."""
    if request.method not in BODY_METHODS or request.routing_exception is not None:
        return  # unknown URL or method: the 404/405 says more than a 415 would
    has_body = (request.content_length or 0) > 0 or "chunked" in request.headers.get("Transfer-Encoding", "")
    if request.mimetype and not request.is_json or has_body and not request.is_json:
        raise ApiError(415, "Content-Type must be application/json")
    if has_body and request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise ApiError(415, "Content-Encoding is not supported: send the body uncompressed")


def add_rate_limit_headers(response):
    """RateLimit-Limit/-Remaining/-Reset (seconds) on every answer that counted against the general
    budget; on a per-route limit's 429 (login, register), the limit that was breached."""
    window = g.get("rate_window")
    if g.get("rate_limited") and not (window is not None and window.exceeded):
        limit, remaining, reset_at = _breached_route_limit()
        if limit is None:
            return
    elif window is not None:
        limit, remaining, reset_at = window.limit, window.remaining, window.reset_at
    else:
        return
    response.headers["RateLimit-Limit"] = str(limit)
    response.headers["RateLimit-Remaining"] = str(remaining)
    response.headers["RateLimit-Reset"] = str(max(0, math.ceil(reset_at - time.time())))


def _breached_route_limit():
    """``(limit, 0, reset_at)`` of the flask-limiter limit this request breached."""
    from app.extensions import limiter
    from app.services.limits import window

    current = limiter.current_limit
    if current is None:
        return None, None, None
    try:
        reset_at, _ = window(current)
    except Exception:  # noqa: BLE001 - the limiter already decided; its storage failing here must not fail the answer
        return None, None, None
    return current.limit.amount, 0, reset_at


def add_security_headers(response):
    """nosniff everywhere; no-store (answers carry tokens and keys); HSTS in production; Vary: Origin
    whenever the CORS answer depends on the caller's Origin."""
    config = current_app.config
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Cache-Control", "no-store")
    if config["APP_ENV"] == "production" and config["HSTS_MAX_AGE"] > 0:
        response.headers.setdefault("Strict-Transport-Security", f"max-age={config['HSTS_MAX_AGE']}; includeSubDomains")
    if not cors_sends_wildcard(config):
        response.vary.add("Origin")


def cors_sends_wildcard(config):
    """True when CORS answers ``*`` to everyone (the answer does not depend on Origin)."""
    return "*" in config["CORS_ORIGINS"] and not config["CORS_ALLOW_CREDENTIALS"]


def answer_options(response):
    """Flask's automatic OPTIONS answer (200, empty text/html) becomes 204 with no content type."""
    if request.method == "OPTIONS" and response.status_code == 200 and not response.is_streamed \
            and not response.get_data():
        response.status_code = 204
        response.headers.pop("Content-Type", None)
        response.headers.pop("Content-Length", None)


def finish_request(response):
    """Add the request id, security, rate-limit and quota headers; count the request for the status page."""
    response = add_quota_headers(response)
    response.headers["X-Request-ID"] = g.get("request_id", "")
    answer_options(response)
    add_security_headers(response)
    add_rate_limit_headers(response)
    if "started" in g:
        stats.counter.record((time.perf_counter() - g.started) * 1000,
                             current_app.config["STATS_FLUSH_SECONDS"])
    return response


def add_quota_headers(response):
    """The X-RateLimit-* quota headers on every authenticated answer (not on a 5xx, nor on the
    limiter's 429: "N probes left" would contradict its "wait"). The caller may come from the
    auth cache, so this count can be the request's first database read: when the database is
    down the answer becomes its 503, as the identifying read's would have been."""
    user = g.get("current_user")
    if user is None or response.status_code >= 500 or g.get("rate_limited"):
        return response
    usage = g.get("quota_usage")
    if usage is None:
        from sqlalchemy.exc import SQLAlchemyError

        from app.db import faults
        from app.services.quotas import tier_limits, usage_for

        if tier_limits(user.subscription_tier) == (None, None):
            return response  # an unlimited tier has no quota headers: nothing to count

        try:
            usage = usage_for(user, autocommit=True)
        except SQLAlchemyError as exc:
            return faults.handle_database_error(exc)
    for name, value in usage.headers().items():
        response.headers.setdefault(name, value)
    return response


def log_access(response):
    """One access line per answer: method, path (no query string: it is the caller's), status and
    duration; the request id, user, auth method and route come from the log filter."""
    started = g.get("started")
    duration_ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
    logging_setup.access_line(request.method, request.path, response.status_code, duration_ms)
    return response


def skip_preflight():
    """CORS preflights are never rate limited."""
    return request.method == "OPTIONS"


def init_app(app):
    """Register the hooks in order (identity must run before the rate limiter's hook)."""
    from app.extensions import limiter

    app.after_request(log_access)  # registered first: after_request hooks run last-registered first
    metrics.init_app(app)  # before finish_request: counts the final status
    app.before_request(start_request)
    app.before_request(require_json_body)
    app.before_request(identify_request)
    app.before_request(budget.count_request)
    app.after_request(finish_request)
    limiter.request_filter(skip_preflight)


def init_after_limiter(app):
    """flask-limiter's own per-request hooks go: the general budget is ``budget.count_request``
    and the per-route limits are checked by their decorators (so its ``before_request`` would
    find nothing to do, at a third of a request's CPU); its headers are off
    (RATELIMIT_HEADERS_ENABLED, the contract's X-RateLimit-* are the quota's)."""
    from app.extensions import limiter

    check = limiter._check_request_limit  # absent when RATELIMIT_ENABLED is false
    app.before_request_funcs[None] = [hook for hook in app.before_request_funcs[None] if hook != check]
    inject_headers = type(limiter)._Limiter__inject_headers
    app.after_request_funcs[None] = [hook for hook in app.after_request_funcs[None]
                                     if getattr(hook, "func", None) is not inject_headers]

