"""System endpoints: API root, liveness and readiness."""
from flask import Blueprint, current_app, jsonify

from app.extensions import limiter
from app.lifecycle import is_shutting_down
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
}


@blp.get("/")
@blp.get("/api")
@limiter.exempt
def root():
    """Name, version and a map of the API."""
    return jsonify(name="ProbeOps API", version=current_app.config["VERSION"],
                   docs="/api/openapi.json", endpoints=ENDPOINTS)


@blp.get("/health")
@blp.get("/api/health")
@limiter.exempt
def health():
    """Liveness: the process answers."""
    return jsonify(status="ok", timestamp=utcnow().isoformat())


@blp.get("/api/health/ready")
@limiter.exempt
def ready():
    """Readiness: the database and the rate-limit storage answer (503 naming what fails)."""
    if is_shutting_down():  # SIGTERM: a balancer must move on while in-flight requests finish
        response = jsonify(error="Service Unavailable", message="Not ready: shutting down",
                           code="service_unavailable", status="shutting_down")
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    ok, checks = readiness()
    if ok:
        return jsonify(status="ok", checks=checks)
    failing = ", ".join(name for name, value in checks.items() if value != "ok")
    response = jsonify(error="Service Unavailable", message=f"Not ready: {failing} unavailable",
                       status="unavailable", checks=checks)
    response.status_code = 503
    return response
