"""The HTTP surface under attack: hostile JSON, forged forwarding headers, security headers,
machine-readable errors and one rate-limit budget per caller (issue 8, items 2, 15, 16, 17)."""
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from app.config import ConfigError
from tests.conftest import PASSWORD, build_app, count_rows
from tests.support.gunicorn import STRONG_SECRET, StartedServer

DEEP = "[" * 20000 + "]" * 20000
HUGE_INT = '{"email": "alice@example.com", "password": ' + "9" * 5000 + "}"


def post_raw(client, path, raw, headers=None):
    return client.post(path, data=raw, content_type="application/json", headers=headers or {})


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.is_json, response.headers.get("Content-Type")
    body = response.get_json()
    assert body["code"] == code and body["error"] and body["message"], body
    return body


# --- item 2: hostile JSON is a 400, never a 500 with a traceback ---------------------------------

@pytest.mark.parametrize("raw", [DEEP, '{"a":' * 10000 + "1" + "}" * 10000, HUGE_INT],
                         ids=["deep-arrays", "deep-objects", "5000-digit-integer"])
def test_hostile_json_on_login_is_400_without_a_traceback(client, user, raw, caplog):
    caplog.set_level(logging.INFO)
    body = assert_error(post_raw(client, "/api/users/login", raw), 400, "invalid_json")
    assert "JSON" in body["message"]
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]


@pytest.mark.parametrize("raw,reason", [
    ('{"host": "127.0.0.1", "count": ' + "1" * 25 + "}", "64-bit"),
    ('{"host": "127.0.0.1", "count": 1e999}', "too large"),
    ('{"host": "127.0.0.1", "count": NaN}', "not JSON"),
    ('{"host": "127.0.0.1", "count": -Infinity}', "not JSON"),
    ('{"host": "127.0.0.1", "count": ' + "1" * 400 + ".5}", "too large"),
    ("[" * 33 + "]" * 33, "nested"),
])
def test_insane_numbers_and_nesting_are_refused_on_every_endpoint(client, user, auth_headers, raw, reason):
    for path, headers in (("/api/probes/ping", auth_headers(user)), ("/api/apikeys", auth_headers(user)),
                          ("/api/users/register", {}), ("/api/users/login", {})):
        body = assert_error(post_raw(client, path, raw, headers), 400, "invalid_json")
        assert reason in body["message"], (path, body["message"])
    assert count_rows("probe_jobs") == 0 and count_rows("api_keys") == 0


def test_sane_json_still_reads(client, user, auth_headers):
    nested_ok = '{"description": "k", "x": ' + "[" * 30 + "]" * 30 + "}"
    assert_error(post_raw(client, "/api/apikeys", nested_ok, auth_headers(user)), 400, "validation_error")
    response = post_raw(client, "/api/probes/ping", '{"host": "127.0.0.1", "count": 9223372036854775807}',
                        auth_headers(user))
    assert_error(response, 400, "validation_error")  # a 64-bit number reaches validation, which names the field
    assert "count" in response.get_json()["fields"]


def test_request_get_json_reads_through_the_same_parser(app):
    from flask import request

    from app.errors import ApiError

    with app.test_request_context("/x", method="POST", data=DEEP, content_type="application/json"):
        with pytest.raises(ApiError) as caught:
            request.get_json()
    assert caught.value.status == 400 and caught.value.code == "invalid_json"
    with app.test_request_context("/x", method="POST", data='{"a": [1, 2.5]}', content_type="application/json"):
        assert request.get_json() == {"a": [1, 2.5]}


# --- item 15: links never carry the client's Host or X-Forwarded-*; proxies by address ------------

FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
          "X-Forwarded-For": "203.0.113.7"}


def make_jobs(client, headers, n):
    for _ in range(n):
        response = client.post("/api/probes/ping", headers=headers, json={"host": "127.0.0.1", "count": 1})
        assert response.status_code == 200


def test_history_links_are_relative_and_ignore_forged_host(client, user, auth_headers):
    headers = auth_headers(user)
    make_jobs(client, headers, 3)
    page = client.get("/api/probes/history?limit=1&offset=1", headers={**headers, **FORGED}).get_json()["pagination"]
    assert page["next"] == "/api/probes/history?limit=1&offset=2"
    assert page["previous"] == "/api/probes/history?limit=1&offset=0"


@pytest.mark.parametrize("app_overrides", [{"PUBLIC_BASE_URL": "https://api.example.com/",
                                            "TRUSTED_PROXIES": "127.0.0.1"}])
def test_history_links_use_the_public_base_url(client, user, auth_headers):
    headers = auth_headers(user)
    make_jobs(client, headers, 2)
    page = client.get("/api/probes/history?limit=1", headers={**headers, **FORGED}).get_json()["pagination"]
    assert page["next"] == "https://api.example.com/api/probes/history?limit=1&offset=1"


@pytest.mark.parametrize("value", ["1", "2", "127.0.0.1,1", "proxy.example", "10.0.0.0/33"])
def test_trusted_proxies_must_be_addresses(database_url, value):
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        build_app(database_url, TRUSTED_PROXIES=value)


@pytest.mark.parametrize("value", ["ftp://x.example", "api.example.com", "https://x.example/?a=1"])
def test_public_base_url_must_be_an_http_url(database_url, value):
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        build_app(database_url, PUBLIC_BASE_URL=value)


def anonymous_codes(client, peer, forwarded_for_values):
    return [client.get("/api/users/me", environ_base={"REMOTE_ADDR": peer},
                       headers={"X-Forwarded-For": value}).status_code for value in forwarded_for_values]


@pytest.mark.parametrize("app_overrides", [{"RATELIMIT_DEFAULT": "2 per minute", "TRUSTED_PROXIES": "10.0.0.0/8"}])
def test_forwarded_for_is_believed_only_from_a_trusted_proxy(client):
    # A client that is not a proxy cannot pick a fresh address for each request ...
    assert anonymous_codes(client, "192.0.2.10", ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [401, 401, 429]
    # ... while the proxy's forwarded addresses are distinct clients, each with its own budget.
    assert anonymous_codes(client, "10.1.2.3", ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [401, 401, 401]


def test_trusted_proxy_chain_is_walked_from_the_right():
    from app.proxies import TrustedProxies, parse_trusted_proxies

    seen = {}

    def inner(environ, start_response):
        seen.update(addr=environ["REMOTE_ADDR"], scheme=environ["wsgi.url_scheme"])
        return []

    middleware = TrustedProxies(inner, parse_trusted_proxies("127.0.0.1, 10.0.0.0/8, fd00::/8"))

    def peer(addr, xff, proto="https"):
        middleware({"REMOTE_ADDR": addr, "HTTP_X_FORWARDED_FOR": xff, "HTTP_X_FORWARDED_PROTO": proto,
                    "wsgi.url_scheme": "http"}, None)
        return seen["addr"], seen["scheme"]

    assert peer("127.0.0.1", "1.2.3.4, 203.0.113.5, 10.0.0.9") == ("203.0.113.5", "https")  # forged head ignored
    assert peer("fd00::1", "2001:db8::7") == ("2001:db8::7", "https")
    assert peer("127.0.0.1", "not-an-ip") == ("127.0.0.1", "https")
    assert peer("192.0.2.1", "203.0.113.5", "https") == ("192.0.2.1", "http")  # untrusted peer: nothing believed
    assert parse_trusted_proxies("0") == [] and parse_trusted_proxies("") == []


# --- item 16: security headers ------------------------------------------------------------------

def test_every_answer_is_nosniff_and_no_store(client, user, auth_headers):
    answers = [
        client.post("/api/users/login", json={"email": "alice@example.com", "password": PASSWORD}),
        client.post("/api/apikeys", headers=auth_headers(user), json={"description": "k"}),
        client.get("/api/users/me", headers=auth_headers(user)),
        client.get("/api/nothing-here"),
        client.get("/health"),
        client.options("/api/users/login"),
    ]
    assert [r.status_code for r in answers] == [200, 201, 200, 404, 200, 204]
    for response in answers:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in response.headers  # not in testing/development


def test_hsts_in_production(database_url):
    app = build_app(database_url, APP_ENV="production", JWT_SECRET_KEY=STRONG_SECRET, CORS_ORIGINS=["https://app.example"],
                    METRICS_TOKEN="metrics-token")
    with app.app_context():
        response = app.test_client().get("/health")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


@pytest.mark.parametrize("app_overrides", [{"CORS_ORIGINS": ["https://app.example"]}])
def test_vary_origin_when_the_origin_is_echoed(client):
    echoed = client.get("/health", headers={"Origin": "https://app.example"})
    assert echoed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in echoed.headers.get("Vary", "")
    other = client.get("/health")  # the same URL without Origin must not be served from a shared cache
    assert "Origin" in other.headers.get("Vary", "")


def test_wildcard_cors_needs_no_vary(client):
    assert "Origin" not in client.get("/health", headers={"Origin": "https://x.example"}).headers.get("Vary", "")


def test_x_request_id_is_an_allowed_and_exposed_cors_header(client):
    preflight = client.options("/api/users/me", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "X-Request-ID, Authorization"})
    assert "x-request-id" in preflight.headers["Access-Control-Allow-Headers"].lower()
    exposed = client.get("/health", headers={"Origin": "https://app.example"}).headers["Access-Control-Expose-Headers"]
    for name in ("X-Request-ID", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert name in exposed


@pytest.mark.parametrize("given,echoed", [("abc-123.x", True), ("x" * 64, True), ("x" * 65, False),
                                          ("a\x00b", False), ("é", False), ("a b", False), ("a\x7fb", False)])
def test_request_id_is_echoed_only_when_safe(client, given, echoed):
    answer = client.get("/health", headers={"X-Request-ID": given}).headers["X-Request-ID"]
    assert (answer == given) is echoed and answer.isascii() and answer.isprintable() and " " not in answer


@pytest.mark.parametrize("path", ["/", "/api", "/health", "/api/users/login", "/api/users/me", "/api/probes/history",
                                  "/api/apikeys", "/api/apikeys/1", "/api/openapi.json"])
def test_options_is_204_without_an_html_content_type(client, path):
    response = client.options(path)
    assert response.status_code == 204 and not response.get_data()
    assert "Content-Type" not in response.headers and response.headers["Allow"]


# --- item 17: machine-readable codes on every error path ----------------------------------------

def test_every_error_path_has_its_code(client, user, auth_headers):
    headers = auth_headers(user)
    assert_error(client.get("/api/nope"), 404, "not_found")
    assert_error(client.delete("/api/users/me", headers=headers), 405, "method_not_allowed")
    assert_error(client.post("/api/users/login", data=b'{"a": "' + b"x" * 70000 + b'"}',
                             content_type="application/json"), 413, "body_too_large")
    assert_error(client.post("/api/users/login", data="a=b", content_type="application/x-www-form-urlencoded"),
                 415, "unsupported_media_type")
    assert_error(post_raw(client, "/api/users/login", "{nope"), 400, "invalid_json")
    body = assert_error(client.post("/api/probes/ping", headers=headers, json={"count": 99}), 400, "validation_error")
    assert set(body["fields"]) == {"host", "count"} and all(body["fields"].values())
    body = assert_error(client.get("/api/probes/history?limit=0", headers=headers), 400, "validation_error")
    assert list(body["fields"]) == ["limit"]
    assert_error(client.get("/api/users/me"), 401, "authentication_required")


# --- item 17: one rate-limit budget per caller, with RateLimit-* headers ------------------------

@pytest.mark.parametrize("app_overrides", [{"RATELIMIT_DEFAULT": "4 per minute"}])
def test_one_budget_per_user_across_endpoints(client, user, make_user, auth_headers):
    headers = auth_headers(user)
    paths = ["/api/users/me", "/api/probes/history", "/api/apikeys", "/api/users/me"]
    answers = [client.get(path, headers=headers) for path in paths]
    assert [r.status_code for r in answers] == [200] * 4
    assert [r.headers["RateLimit-Remaining"] for r in answers] == ["3", "2", "1", "0"]
    for response in answers:
        assert response.headers["RateLimit-Limit"] == "4" and 0 < int(response.headers["RateLimit-Reset"]) <= 60
    refused = client.get("/api/probes/history", headers=headers)  # a different endpoint: same budget
    body = assert_error(refused, 429, "rate_limited")
    assert "retry in" in body["message"] and 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Remaining"] == "0" and refused.headers["RateLimit-Limit"] == "4"
    assert not [name for name in refused.headers.keys() if name.startswith("X-RateLimit")]  # no quota headers
    other = make_user("bob")
    assert client.get("/api/users/me", headers=auth_headers(other)).status_code == 200


@pytest.mark.parametrize("app_overrides", [{"RATELIMIT_DEFAULT": "2 per minute"}])
def test_anonymous_budget_is_per_ip_and_health_is_free(client):
    for _ in range(5):
        response = client.get("/health")
        assert response.status_code == 200 and "RateLimit-Limit" not in response.headers
    codes = [client.get(path).status_code for path in ("/api/users/me", "/api/probes/history", "/api/apikeys")]
    assert codes == [401, 401, 429]
    assert client.get("/api/users/me", environ_base={"REMOTE_ADDR": "127.0.0.2"}).status_code == 401


@pytest.mark.parametrize("app_overrides", [{"RATELIMIT_DEFAULT": "100 per minute", "RATELIMIT_AUTH": "2 per minute"}])
def test_login_keeps_its_tighter_limit(client, user):
    codes = [client.post("/api/users/login", json={"email": "nobody@example.com", "password": "wrong password!"})
             for _ in range(3)]
    assert [r.status_code for r in codes] == [401, 401, 429]
    assert codes[-1].headers["RateLimit-Limit"] == "2" and codes[-1].headers["RateLimit-Remaining"] == "0"
    assert client.get("/api/users/me").status_code == 401  # the general budget is not spent


# --- against Gunicorn: several workers, Redis ---------------------------------------------------

@pytest.mark.slow
def test_one_budget_across_endpoints_and_workers_with_redis(tmp_path, postgres, redis_server):
    url = postgres.create_database("probeops_sec_http_budget")
    # A Redis database of its own: this test spends the loopback address's budget, which other
    # tests on the shared Redis (same limit string, same address) would otherwise inherit.
    storage = redis_server.url.rsplit("/", 1)[0] + "/7"
    srv = StartedServer({"DATABASE_URL": url, "RATELIMIT_STORAGE_URI": storage, "WORKERS": "3",
                         "THREADS": "4", "RATELIMIT_DEFAULT": "10 per minute", "RATELIMIT_AUTH": "100 per minute",
                         "APP_ENV": "production", "JWT_SECRET_KEY": STRONG_SECRET, "METRICS_TOKEN": "metrics-token"},
                        tmp_path).start()
    try:
        base = srv.url
        requests.post(f"{base}/api/users/register", json={"username": "alice", "email": "alice@example.com",
                                                          "password": PASSWORD}, timeout=10)
        token = requests.post(f"{base}/api/users/login", json={"email": "alice@example.com", "password": PASSWORD},
                              timeout=10).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        paths = ["/api/users/me", "/api/probes/history", "/api/apikeys", "/api/openapi.json"] * 4
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda path: requests.get(base + path, headers=headers, timeout=10), paths))
        assert sorted(r.status_code for r in answers) == [200] * 10 + [429] * 6
        for refused in (r for r in answers if r.status_code == 429):
            assert refused.json()["code"] == "rate_limited" and "X-RateLimit-Remaining-Day" not in refused.headers
            assert refused.headers["RateLimit-Remaining"] == "0"
        requests.post(f"{base}/api/users/register", json={"username": "bob", "email": "bob@example.com",
                                                          "password": PASSWORD}, timeout=10)
        token = requests.post(f"{base}/api/users/login", json={"email": "bob@example.com", "password": PASSWORD},
                              timeout=10).json()["token"]
        bob = [requests.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
               for path in paths[:10]]  # whichever worker answers, one counter
        assert [r.headers["RateLimit-Remaining"] for r in bob] == [str(n) for n in range(9, -1, -1)]
        # X-Forwarded-For from a peer that is not a configured proxy changes nothing
        codes = [requests.get(f"{base}/api/users/me", headers={"X-Forwarded-For": f"198.51.100.{i}"},
                              timeout=10).status_code for i in range(10)]
        assert codes == [401] * 6 + [429] * 4  # two registrations and logins spent 4 of the loopback address's 10
    finally:
        srv.stop()


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.backend.yml"])
def test_compose_trusts_exactly_its_proxy_service_and_the_host(name):
    import ipaddress
    from pathlib import Path

    from app.proxies import parse_trusted_proxies
    from tests.test_deploy_files import load_compose

    data = load_compose(Path(__file__).resolve().parents[2] / name)
    trusted = parse_trusted_proxies(data["services"]["api"]["environment"]["TRUSTED_PROXIES"])
    proxy = ipaddress.ip_address(data["services"]["proxy"]["networks"]["default"]["ipv4_address"])
    subnet = ipaddress.ip_network(data["networks"]["default"]["ipam"]["config"][0]["subnet"])
    assert proxy in subnet and [net.num_addresses for net in trusted] == [1, 1]
    assert {net.network_address for net in trusted} == {proxy, next(subnet.hosts())}  # the proxy and the gateway
