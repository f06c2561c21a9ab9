"""System endpoints: API root, liveness, readiness and Prometheus metrics."""
import math
import time

from flask import Blueprint, Response, current_app, g, jsonify, request

from app import metrics
from app.errors import ApiError
from app.extensions import limiter
from app.lifecycle import is_shutting_down
from app.services import stats
from app.services.status import readiness
from app.utils.clock import utcnow

blp = Blueprint("system", __name__)

ENDPOINTS = {
    "users": "/api/users",
    "api_keys": "/api/apikeys",
    "probes": ["/api/probes/ping", "/api/probes/traceroute", "/api/probes/dns", "/api/probes/whois"],
    "history": "/api/probes/history",
    "admin": "/api/admin",
    "health": "/api/health",
    "openapi": "/api/openapi.json",
    "docs": "/api/docs",
}


@blp.get("/")
@blp.get("/api")
@limiter.exempt
def root():
    """Name, version and a map of the API."""
    return jsonify(name="ProbeOps API", version=current_app.config["VERSION"],
                   docs="/api/docs", endpoints=ENDPOINTS)


@blp.get("/health")
@blp.get("/api/health")
@limiter.exempt
def health():
    """Liveness: the process answers. Never touches the database: the request is counted without
    letting its answer wait on a flush of the request counters (the next API request flushes)."""
    started = g.pop("started", None)
    if started is not None:
        stats.counter.record((time.perf_counter() - started) * 1000, math.inf)
    return jsonify(status="ok", timestamp=utcnow().isoformat())


@blp.get("/api/health/ready")
@limiter.exempt
def ready():
    """Readiness: not shutting down, the database accepts writes, the rate-limit storage answers
    (200, the check saying ``degraded`` while limits fall back to memory); 503 naming what fails."""
    if is_shutting_down():  # SIGTERM: a balancer must move on while in-flight requests finish
        response = jsonify(error="Service Unavailable", message="Not ready: shutting down",
                           code="service_unavailable", status="shutting_down")
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    status, checks = readiness()
    if status != "unavailable":
        return jsonify(status=status, checks=checks)
    failing = ", ".join(name for name, value in checks.items() if value != "ok" and not value.startswith("degraded"))
    response = jsonify(error="Service Unavailable", message=f"Not ready: {failing} unavailable",
                       code="service_unavailable", status="unavailable", checks=checks)
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


@blp.get("/metrics")
@limiter.exempt
def metrics_text():
    """Prometheus text format, counted across every worker; ``Bearer <METRICS_TOKEN>`` when that is set."""
    if not metrics.token_accepted(current_app.config, request.headers.get("Authorization")):
        raise ApiError(401, "GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'",
                       {"WWW-Authenticate": 'Bearer realm="metrics"'}, code="authentication_required")
    return Response(metrics.scrape(), mimetype=None, content_type=metrics.CONTENT_TYPE)
