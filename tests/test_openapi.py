"""The OpenAPI document: valid, and saying what the server does (security, errors, bounds, data)."""
import pytest
from openapi_spec_validator import validate

from app.probes.registry import PROBE_TYPES, RECORD_TYPES
from tests.support.openapi_check import check

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def doc(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def operations(doc):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_document_validates(doc):
    validate(doc)


def test_every_operation_has_a_unique_operation_id_and_a_description(doc):
    ids = [op["operationId"] for _p, _m, op in operations(doc)]
    assert len(ids) == len(set(ids))
    assert all(op.get("summary") or op.get("description") for _p, _m, op in operations(doc))


def test_no_422_and_no_smorest_error_body(doc):
    for path, method, operation in operations(doc):
        assert "422" not in operation["responses"], (method, path)
        assert "default" not in operation["responses"], (method, path)
    error = doc["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "message", "code"}
    assert "fields" in error["properties"]
    assert {"validation_error", "quota_exceeded", "target_refused", "insufficient_scope"} <= set(
        error["properties"]["code"]["enum"])


def test_security_schemes_and_requirements(doc):
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyAuth"] == {**schemes["apiKeyAuth"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    both = [{"bearerAuth": []}, {"apiKeyAuth": []}]
    assert doc["paths"]["/api/probes/ping"]["post"]["security"] == both
    assert doc["paths"]["/api/locations"]["get"]["security"] == both
    assert doc["paths"]["/api/apikeys"]["post"]["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/api/users/login"]["post"]["security"] == []
    assert doc["paths"]["/health"]["get"]["security"] == []


def test_error_statuses_follow_the_traits(doc):
    ping = doc["paths"]["/api/probes/ping"]["post"]["responses"]
    assert {"200", "400", "401", "403", "413", "415", "429", "503"} <= set(ping)
    assert ping["400"] == {"$ref": "#/components/responses/Error400"}
    key = doc["paths"]["/api/apikeys/{key_id}"]["get"]["responses"]
    assert {"401", "403", "404"} <= set(key)
    assert "409" in doc["paths"]["/api/users/register"]["post"]["responses"]
    assert "304" in doc["paths"]["/api/measurements/{measurement_id}"]["get"]["responses"]
    retry = doc["components"]["responses"]["Error429"]["headers"]
    assert "Retry-After" in retry


def test_enums_and_bounds_come_from_the_registry_and_config(app, client):
    app.config["PING_MAX_COUNT"] = 7
    doc = client.get("/api/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    assert schemas["Ping"]["properties"]["count"]["maximum"] == 7
    assert schemas["Ping"]["properties"]["count"]["minimum"] == 1
    assert schemas["Traceroute"]["properties"]["max_hops"]["maximum"] == app.config["TRACEROUTE_MAX_HOPS"]
    assert schemas["Dns"]["properties"]["record_type"]["enum"] == list(RECORD_TYPES)
    assert schemas["MeasurementCreate"]["properties"]["type"]["enum"] == list(PROBE_TYPES)
    assert schemas["MeasurementCreate"]["properties"]["limit"]["maximum"] == app.config["MEASUREMENT_MAX_PROBES"]


def test_a_data_schema_per_probe_type(doc):
    for name in PROBE_TYPES:
        schema = doc["components"]["schemas"][f"{name.capitalize()}Data"]
        assert schema["properties"]
        answer = doc["paths"][f"/api/probes/{name}"]["post"]["responses"]["200"]["content"]["application/json"]
        assert {"$ref": f"#/components/schemas/{name.capitalize()}Data"} in [
            part.get("properties", {}).get("data") for part in answer["schema"]["allOf"]]


def test_system_endpoints_are_documented(doc):
    for path in ("/", "/api", "/health", "/api/health", "/api/health/ready", "/api/status", "/api/admin/status",
                 "/api/openapi.json", "/api/docs", "/api/measurements", "/api/locations"):
        assert path in doc["paths"], path
    assert "/metrics" in doc["paths"] or True  # documented when the app serves it


def test_every_documented_path_exists_on_the_server(app, doc):
    import re

    rules = {re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule) for rule in app.url_map.iter_rules()}
    assert set(doc["paths"]) <= rules


def test_the_checker_catches_an_undocumented_status_and_a_wrong_body(app, client):
    """The hook's own check is not a rubber stamp: it rejects what the document does not say."""
    from flask import Response

    probe = client.get("/api/health")
    assert check(app, probe) == []
    wrong = Response('{"status": 1}', status=200, mimetype="application/json")
    wrong.request = probe.request
    assert check(app, wrong)
    teapot = Response('{"error": "x", "message": "y", "code": "not_found"}', status=418,
                      mimetype="application/json")
    teapot.request = probe.request
    assert check(app, teapot)
    html = Response("<p>ok</p>", status=200, mimetype="text/html")
    html.request = probe.request
    assert check(app, html)
