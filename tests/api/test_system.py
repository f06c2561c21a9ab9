"""Root, health and readiness."""
import pytest


@pytest.mark.parametrize("path", ["/", "/api"])
def test_root_describes_the_api(client, path):
    body = client.get(path).get_json()
    assert body["name"] == "ProbeOps API"
    assert body["version"]
    assert body["docs"] == "/api/docs" and body["endpoints"]["openapi"] == "/api/openapi.json"
    assert "/api/probes/ping" in body["endpoints"]["probes"]


@pytest.mark.parametrize("path", ["/health", "/api/health"])
def test_health(client, path):
    response = client.get(path)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["timestamp"].endswith("+00:00")


def test_ready_reports_each_check(client):
    response = client.get("/api/health/ready")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "rate_limit_storage": "ok"}}


def test_ready_names_the_failing_database(app, client):
    from app.extensions import db

    db.engine.dispose()
    app.config["SQLALCHEMY_DATABASE_URI"]  # noqa: B018 - the url stays, the engine is broken below
    broken = db.engines[None]
    original = broken.url
    db.engines[None] = db.create_engine(original.set(host="127.0.0.1", port=1)) if original.get_backend_name() \
        == "postgresql" else db.create_engine("sqlite:////nonexistent-dir/x.db")
    try:
        response = client.get("/api/health/ready")
    finally:
        db.engines[None] = broken
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["database"] == "unavailable"
    assert "database" in body["message"]


def test_openapi_document_lists_every_route(client):
    spec = client.get("/api/openapi.json").get_json()
    for path in ["/api/users/register", "/api/users/login", "/api/apikeys/{key_id}", "/api/probes/ping",
                 "/api/probes/history", "/api/admin/users/{user_id}/tier", "/api/admin/status"]:
        assert path in spec["paths"], path


def test_cors_preflight(client):
    response = client.options("/api/probes/ping", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-API-Key, Content-Type"})
    assert response.status_code == 204 and not response.get_data()  # OPTIONS answers carry no body
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Max-Age"] == "3600"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "x-api-key" in allowed and "content-type" in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_cors_exposes_quota_headers(client):
    response = client.get("/api/health", headers={"Origin": "https://app.example.com"})
    exposed = response.headers["Access-Control-Expose-Headers"]
    assert "X-RateLimit-Remaining-Day" in exposed and "Retry-After" in exposed


def test_ready_is_503_when_the_database_answers_reads_but_takes_no_writes(database_url):
    """Item 23: readiness checks that the database accepts a write, within DB_READY_TIMEOUT."""
    import sqlite3

    import psycopg2

    from tests.conftest import build_app

    app = build_app(database_url, DB_SQLITE_BUSY_TIMEOUT=0.2, DB_READY_TIMEOUT=1.0)
    client = app.test_client()
    assert client.get("/api/health/ready").status_code == 200
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock; reads still pass
    else:
        holder = psycopg2.connect(database_url)
        holder.cursor().execute("LOCK TABLE request_stats IN EXCLUSIVE MODE")
    try:
        assert client.get("/api/users/me").status_code == 401  # the app still answers
        response = client.get("/api/health/ready")
    finally:
        holder.rollback()
        holder.close()
    assert response.status_code == 503
    body = response.get_json()
    assert body["code"] == "service_unavailable" and body["checks"]["database"] != "ok"
    assert response.headers["Retry-After"]
    assert client.get("/api/health/ready").status_code == 200
