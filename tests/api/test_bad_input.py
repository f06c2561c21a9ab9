"""Bad input never causes a 500, an HTML page or a half-written row."""
import io
import re

import pytest

from tests.conftest import count_rows

WRITE_ENDPOINTS = [
    ("post", "/api/users/register", None),
    ("post", "/api/users/login", None),
    ("post", "/api/apikeys", "user"),
    ("put", "/api/apikeys/{key}", "user"),
    ("post", "/api/probes/ping", "user"),
    ("post", "/api/probes/traceroute", "user"),
    ("post", "/api/probes/dns", "user"),
    ("post", "/api/probes/whois", "user"),
    ("post", "/api/admin/users/{user}/role", "admin"),
    ("post", "/api/admin/users/{user}/tier", "admin"),
    ("post", "/api/admin/users/{user}/active", "admin"),
]

BAD_BODIES = [
    pytest.param({"data": b"{not json", "content_type": "application/json"}, 400, id="malformed-json"),
    pytest.param({"data": b"username=x", "content_type": "application/x-www-form-urlencoded"}, 415, id="form"),
    pytest.param({"data": b"<xml/>", "content_type": "text/xml"}, 415, id="xml"),
    pytest.param({"data": b"{}", "content_type": None}, 415, id="no-content-type"),
    pytest.param({"json": []}, 400, id="array"),
    pytest.param({"json": "string"}, 400, id="json-string"),
    pytest.param({"json": {"unexpected": 1}}, 400, id="unknown-field"),
    pytest.param({"data": b"\xff\xfe\x00", "content_type": "application/json"}, 400, id="not-utf8"),
    pytest.param({"data": b'{"a": "' + b"x" * 70000 + b'"}', "content_type": "application/json"}, 413, id="huge"),
]


@pytest.fixture
def prepared(client, user, admin, auth_headers):
    key_id = client.post("/api/apikeys", headers=auth_headers(user), json={}).get_json()["api_key"]["id"]
    return {"user": auth_headers(user), "admin": auth_headers(admin), "ids": {"key": key_id, "user": user.id}}


@pytest.mark.parametrize("method,path,who", WRITE_ENDPOINTS)
@pytest.mark.parametrize("request_kwargs,status", BAD_BODIES)
def test_bad_bodies_get_json_errors_and_write_nothing(client, prepared, method, path, who, request_kwargs, status):
    before = {table: count_rows(table) for table in ("users", "api_keys", "probe_jobs")}
    headers = prepared[who] if who else {}
    response = getattr(client, method)(path.format(**prepared["ids"]), headers=headers, **request_kwargs)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert {"error", "message", "code"} <= set(body) <= {"error", "message", "code", "fields"} and body["message"]
    assert {table: count_rows(table) for table in before} == before


@pytest.mark.parametrize("host", [
    "example.com; rm -rf /", "$(reboot)", "`id`", "a|b", "host name", "-c 100 example.com", "../../etc/passwd",
    "exa mple.com", "\u202eexample.com", "a" * 300, "", "   ", "http://example.com/",
])
@pytest.mark.parametrize("path,field", [("/api/probes/ping", "host"), ("/api/probes/traceroute", "host"),
                                        ("/api/probes/dns", "domain"), ("/api/probes/whois", "domain")])
def test_hostile_hosts_are_400_naming_the_field(client, user, auth_headers, host, path, field):
    response = client.post(path, headers=auth_headers(user), json={field: host})
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["message"]
    assert count_rows("probe_jobs") == 0


@pytest.mark.parametrize("body,field", [
    ({"host": "127.0.0.1", "count": 0}, "count"),
    ({"host": "127.0.0.1", "count": 11}, "count"),
    ({"host": "127.0.0.1", "count": "4"}, "count"),
    ({"host": "127.0.0.1", "count": True}, "count"),
    ({"host": "127.0.0.1", "count": 2.5}, "count"),
    ({"host": 127}, "host"),
    ({}, "host"),
])
def test_ping_parameters_out_of_range(client, user, auth_headers, body, field):
    response = client.post("/api/probes/ping", headers=auth_headers(user), json=body)
    assert response.status_code == 400
    assert field in response.get_json()["message"]
    assert count_rows("probe_jobs") == 0


@pytest.mark.parametrize("path,body,field", [
    ("/api/probes/traceroute", {"host": "127.0.0.1", "max_hops": 65}, "max_hops"),
    ("/api/probes/traceroute", {"host": "127.0.0.1", "max_hops": 0}, "max_hops"),
    ("/api/probes/dns", {"domain": "example.com", "record_type": "AXFR"}, "record_type"),
    ("/api/probes/dns", {"domain": "example.com", "nameserver": "dns.google"}, "nameserver"),
    ("/api/probes/dns", {"domain": "example.com", "nameserver": "127.0.0.1; ls"}, "nameserver"),
])
def test_other_probe_parameters(client, user, auth_headers, path, body, field):
    response = client.post(path, headers=auth_headers(user), json=body)
    assert response.status_code == 400
    assert field in response.get_json()["message"]
    assert count_rows("probe_jobs") == 0


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "offset=-1", "offset=x"])
def test_history_query_validation(client, user, auth_headers, query):
    response = client.get(f"/api/probes/history?{query}", headers=auth_headers(user))
    assert response.status_code == 400
    assert query.split("=")[0] in response.get_json()["message"]


def test_unicode_everywhere_is_fine(client):
    response = client.post("/api/users/register", json={"username": "zoë", "email": "zoë@example.com",
                                                        "password": "ünïcödé pässwörd ✓"})
    assert response.status_code == 400  # username charset; a clear message, not a crash
    assert "username" in response.get_json()["message"]


@pytest.mark.parametrize("method,path", [("get", "/no/such/thing"), ("get", "/api/nope"), ("delete", "/api/users/me"),
                                         ("patch", "/api/apikeys"), ("get", "/api/apikeys/abc")])
def test_unknown_urls_and_methods_are_json(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code in (404, 405)
    assert response.is_json and {"error", "message", "code"} <= set(response.get_json())


def test_unexpected_exception_is_a_generic_json_500(app, client, user, auth_headers, monkeypatch):
    from app.services import admin_users

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(admin_users, "search", explode)
    user.role = "admin"
    from app.extensions import db

    db.session.commit()
    response = client.get("/api/admin/users", headers=auth_headers(user))
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"] == "Internal Server Error"
    assert "secret internal detail" not in body["message"] and "request id" in body["message"]


@pytest.mark.parametrize("path", ["/api/apikeys/99999999999999999999", "/api/probes/history/99999999999999999999",
                                  "/api/apikeys/0"])
def test_ids_beyond_64_bits_are_404(client, user, auth_headers, path):
    response = client.get(path, headers=auth_headers(user))
    assert response.status_code == 404 and response.is_json


def test_unpaired_surrogates_are_400_not_500(client, user, auth_headers):
    raw = '{"username": "eve", "email": "eve@example.com", "password": "%s"}' % ("\\ud800" * 12)
    response = client.post("/api/users/register", data=raw, content_type="application/json")
    assert response.status_code == 400 and "password" in response.get_json()["message"]
    raw = '{"email": "\\ud800@x.com", "password": "xxxxxxxxxxxxxx"}'
    assert client.post("/api/users/login", data=raw, content_type="application/json").status_code == 400
    raw = '{"description": "\\ud800"}'
    response = client.post("/api/apikeys", data=raw, content_type="application/json", headers=auth_headers(user))
    assert response.status_code == 400 and "description" in response.get_json()["message"]
    assert count_rows("api_keys") == 0 and count_rows("users") == 1


@pytest.mark.parametrize("method,path", [("post", "/api/nothing"), ("put", "/api/health")])
def test_unknown_routes_with_a_non_json_body_are_404_or_405(client, method, path):
    response = getattr(client, method)(path, data="x", content_type="text/plain")
    assert response.status_code in (404, 405)


@pytest.mark.parametrize("nameserver,status", [("2001:4860:4860::8888%lo", 400), ("127.0.0.2", 403),
                                               ("dns.google", 400)])
def test_nameserver_goes_through_the_target_checks(client, user, auth_headers, nameserver, status):
    response = client.post("/api/probes/dns", headers=auth_headers(user),
                           json={"domain": "example.com", "nameserver": nameserver})
    assert response.status_code == status and "nameserver" in response.get_json()["message"]
    assert count_rows("probe_jobs") == 0


def test_reverse_lookup_of_a_private_address_is_refused(client, user, auth_headers):
    response = client.post("/api/probes/dns", headers=auth_headers(user), json={"domain": "10.0.0.5"})
    assert response.status_code == 403
    assert count_rows("probe_jobs") == 0


FUZZ_BODIES = [
    {"data": b"xxx", "content_type": "text/plain"},
    {"data": b"", "content_type": "application/json"},
    {"data": b"null", "content_type": "application/json"},
    {"data": b'{"a": 1}{"b": 2}', "content_type": "application/json"},
    {"data": b'\xef\xbb\xbf{"a": 1}', "content_type": "application/json"},
    {"data": b'{"a": [' + b"[" * 40 + b"]" * 40 + b"]}", "content_type": "application/merge-patch+json"},
    {"data": b'{"a": 1}', "content_type": "application/json", "headers": {"Content-Encoding": "gzip"}},
    {"query_string": "limit=99999999999999999999999&offset=%00&limit=2"},
]


# Pages that are not JSON by design (the OpenAPI document says so): the docs page and its assets, metrics.
NOT_JSON_PAGES = ("/api/docs", "/metrics")


def test_every_route_and_method_with_odd_input_is_json_and_never_500(app, client, admin, auth_headers):
    """A GET with a body, a body on a route that takes none, odd media types: never a 500, never HTML."""
    paths = sorted({re.sub(r"<[^>]+>", "1", rule.rule) for rule in app.url_map.iter_rules()})
    problems = []
    for path in paths:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            for kwargs in FUZZ_BODIES:
                kwargs = {**kwargs, "headers": {**auth_headers(admin), **kwargs.get("headers", {})}}
                response = client.open(path, method=method, **kwargs)
                page = path.startswith(NOT_JSON_PAGES) and response.status_code == 200
                if response.status_code >= 500 or response.get_data() and not response.is_json and not page:
                    problems.append((method, path, kwargs.get("data"), response.status_code))
    assert len(paths) > 15 and problems == []


@pytest.mark.parametrize("size,status", [(100, 201), (200_000, 413)])
def test_chunked_body_past_the_limit_is_413_not_truncated_json(client, user, auth_headers, size, status):
    body = b'{"description": "' + b"x" * size + b'"}'
    response = client.post("/api/apikeys", headers={**auth_headers(user), "Transfer-Encoding": "chunked"},
                           input_stream=io.BytesIO(body), content_type="application/json",
                           environ_overrides={"wsgi.input_terminated": True})  # as Gunicorn de-chunks
    assert response.status_code == status and response.is_json
