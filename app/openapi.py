"""The OpenAPI document: flask-smorest's, finished from what the views, the auth decorator and the
probe registry really do, so it cannot drift from the server.

``document(app)`` is what ``/api/openapi.json`` serves. Per operation it adds, from the view's
traits: the security requirement (read from ``auth_required``'s arguments), the error responses
every such operation can give (body → 400/413/415, query → 400, path id → 404, auth → 401/403,
every blueprint route → 429 and 503, plus each view's own in ``EXTRA_STATUSES``), an
operationId, enums and bounds from ``app.probes.registry`` and a ``data`` schema per probe type;
and it documents the system endpoints that flask-smorest does not see.
"""
import copy
import inspect
import re

from app.probes.registry import PROBE_TYPES, RECORD_TYPES

BEARER = "bearerAuth"
API_KEY = "apiKeyAuth"
SECURITY_SCHEMES = {
    BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
             "description": "`Authorization: Bearer <jwt>` from `POST /api/users/login`."},
    API_KEY: {"type": "apiKey", "in": "header", "name": "X-API-Key",
              "description": "`X-API-Key: <key>` from `POST /api/apikeys` (`ApiKey` and `Api-Key` are accepted too)."},
}

# The contract's machine-readable codes, plus the few the server layer uses for malformed HTTP.
ERROR_CODES = [
    "validation_error", "invalid_json", "unsupported_media_type", "body_too_large", "authentication_required",
    "invalid_credentials", "token_expired", "token_revoked", "account_disabled", "forbidden", "target_refused",
    "not_found", "conflict", "rate_limited", "quota_exceeded", "concurrency_limit", "server_busy",
    "service_unavailable", "no_matching_location", "insufficient_scope", "internal_error", "method_not_allowed",
    "bad_request", "resolver_error",
]

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message", "code"],
    "properties": {
        "error": {"type": "string", "description": "The HTTP reason phrase", "example": "Bad Request"},
        "message": {"type": "string", "description": "What went wrong, for a person",
                    "example": "Invalid input: count: Must be between 1 and 10"},
        "code": {"type": "string", "enum": ERROR_CODES, "description": "Stable, for programs",
                 "example": "validation_error"},
        "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                   "description": "A 400 from validation: the messages per field",
                   "example": {"count": ["Must be between 1 and 10"]}},
    },
}

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
ERROR_DESCRIPTIONS = {
    400: "Bad input: malformed JSON (`invalid_json`) or an invalid field (`validation_error`, with `fields`)",
    401: "No or bad credentials (`authentication_required`, `invalid_credentials`, `token_expired`, "
         "`token_revoked`)",
    403: "Not allowed: wrong role, a key on a JWT-only route, a key outside its scopes (`insufficient_scope`), "
         "a refused target (`target_refused`) or a disabled account",
    404: "Not found (also another user's object)",
    405: "Method not allowed (`method_not_allowed`): werkzeug's answer for an id out of range on a write",
    409: "Conflict (duplicate username or email, the last active admin)",
    413: "Body larger than MAX_CONTENT_LENGTH (`body_too_large`)",
    415: "Body is not JSON (`unsupported_media_type`)",
    429: "Rate limit (`rate_limited`), probe quota (`quota_exceeded`) or concurrency (`concurrency_limit`); "
         "see Retry-After",
    500: "Internal error (`internal_error`, with a request id in the message)",
    503: "Temporarily unavailable: database or broker away (`service_unavailable`) or at capacity "
         "(`server_busy`); see Retry-After",
}

# Statuses a view gives beyond what its traits imply (the view's own logic), by Flask endpoint.
PROBE_EXTRAS = {403, 429}
EXTRA_STATUSES = {
    "users.register": {409},
    "users.login": {401, 403},
    "users.refresh": {401},
    "users.update_me": {409},
    "admin.set_role": {409},
    "admin.set_active": {409},
    "admin.update_user": {409},
    "probes.ping": PROBE_EXTRAS, "probes.traceroute": PROBE_EXTRAS, "probes.dns": PROBE_EXTRAS,
    "probes.whois": PROBE_EXTRAS,
    "measurements.create_measurement": PROBE_EXTRAS,
    "measurements.stream_measurement": {429},
}
ALWAYS = {429, 500, 503}
BODY_METHODS = {"post", "put", "patch"}

# Request bodies as a person would send them (Swagger UI's "Try it out" starts from these).
REQUEST_EXAMPLES = {
    "Ping": {"host": "example.com", "count": 4},
    "Traceroute": {"host": "example.com", "max_hops": 30},
    "Dns": {"domain": "example.com", "record_type": "A"},
    "Whois": {"domain": "example.com"},
    "MeasurementCreate": {"type": "ping", "target": "example.com", "options": {"count": 3},
                          "locations": [{"country": "DE"}], "limit": 2},
}

_RULE_ARG = re.compile(r"<(?:([^<>:]+):)?([^<>]+)>")


def _data_schemas():
    """The top-level keys of each engine's ``data`` (none required: a probe that could not run has fewer)."""
    s, i, n, b = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}

    def null(schema):
        return {**schema, "nullable": True}

    common = {"error": {**s, "description": "Why it failed, when it did"}, "message": s}
    target = {"address": null(s), "host": s, "family": i, "socket": s}
    return {
        "PingData": {"type": "object", "description": "ping's measurement", "properties": {
            **target, "count": i, "interval": n, "timeout": n, "payload_size": i, "identifier": null(i),
            "packets": {"type": "array", "items": {"type": "object", "properties": {
                "seq": i, "ttl": null(i), "rtt_ms": n, "bytes": i, "late": b}}},
            "errors": {"type": "array", "items": {"type": "object"}},
            "stats": {"type": "object", "properties": {
                "transmitted": i, "received": i, "duplicates": i, "late": i, "errors": i, "local_errors": i,
                "loss_percent": n, "time_ms": n, "min_ms": null(n), "avg_ms": null(n), "max_ms": null(n),
                "mdev_ms": null(n)}},
            **common}},
        "TracerouteData": {"type": "object", "description": "traceroute's measurement", "properties": {
            **target, "max_hops": i, "probes_per_hop": i, "timeout": n, "mode": s, "reached": b,
            "hops": {"type": "array", "items": {"type": "object", "properties": {
                "ttl": i, "probes": {"type": "array", "items": {"type": "object", "properties": {
                    "address": null(s), "rtt_ms": n}}}}}},
            **common}},
        "DnsData": {"type": "object", "description": "the DNS answer", "properties": {
            "query": s, "record_type": {**s, "enum": list(RECORD_TYPES)}, "servers": {"type": "array", "items": s},
            "port": i, "reverse_of": s, "rcode": null(s), "flags": {"type": "array", "items": s},
            "answers": {"type": "array", "items": {}}, **common}},
        "WhoisData": {"type": "object", "description": "the WHOIS/RDAP answer", "properties": {
            "query": s, "source": {**s, "enum": ["whois", "rdap"]},
            "server_chain": {"type": "array", "items": {"type": "object"}},
            "authoritative_server": null(s), "rdap_url": s, "notes": {"type": "array", "items": s}, **common}},
    }


DATA_REFS = {name: {"$ref": f"#/components/schemas/{name.capitalize()}Data"} for name in PROBE_TYPES}


def _any_data():
    # OpenAPI 3.0's "nullable" only counts beside a "type": null is the last alternative instead.
    null = {"type": "object", "nullable": True, "enum": [None]}
    return {"anyOf": [DATA_REFS[name] for name in PROBE_TYPES if name in DATA_REFS] + [null],
            "description": "The probe's structured result (its shape follows the probe type; null until it ends)"}


# -- the system endpoints (a plain Flask blueprint) -----------------------------------------------------
def _json(schema, description, example=None):
    content = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def _error_ref(status):
    return {"$ref": f"#/components/responses/Error{status}"}


def _system_operations():
    """path → (method, operation) for every system route, when the app has it."""
    root = _json({"type": "object", "required": ["name", "version", "docs", "endpoints"], "properties": {
        "name": {"type": "string"}, "version": {"type": "string"}, "docs": {"type": "string"},
        "endpoints": {"type": "object"}}}, "Name, version, the docs page and a map of the API",
        {"name": "ProbeOps API", "version": "1.1.0", "docs": "/api/docs", "endpoints": {"health": "/api/health"}})
    health = _json({"type": "object", "required": ["status", "timestamp"], "properties": {
        "status": {"type": "string", "enum": ["ok"]}, "timestamp": {"type": "string", "format": "date-time"}}},
        "The process answers", {"status": "ok", "timestamp": "2026-11-26T12:00:00+00:00"})
    checks = {"type": "object", "additionalProperties": {"type": "string"}}
    ready_ok = _json({"type": "object", "required": ["status", "checks"], "properties": {
        "status": {"type": "string"}, "checks": checks}}, "Ready (a check may say `degraded`)",
        {"status": "ok", "checks": {"database": "ok", "rate_limit_storage": "ok"}})
    not_ready = _json({"allOf": [{"$ref": "#/components/schemas/Error"}, {"type": "object", "properties": {
        "status": {"type": "string"}, "checks": checks}}]}, "Not ready: the failing check is named",
        {"error": "Service Unavailable", "message": "Not ready: database unavailable", "code": "service_unavailable",
         "status": "unavailable", "checks": {"database": "unavailable"}})
    not_ready["headers"] = RETRY_AFTER
    spec = {"description": "The OpenAPI document",
            "content": {"application/json": {"schema": {"type": "object"}}}}
    page = {"description": "Swagger UI, served with its own assets",
            "content": {"text/html": {"schema": {"type": "string"}}}}
    metrics = {"description": "Prometheus text format, counted across all workers",
               "content": {"text/plain": {"schema": {"type": "string"}}}}

    def op(op_id, summary, responses, tag="system", security=()):
        return {"operationId": op_id, "summary": summary, "tags": [tag], "security": list(security),
                "responses": responses}

    return {
        "/": ("root", op("root", "API root: name, version and a map of the API", {"200": root})),
        "/api": ("api_root", op("api_root", "API root: name, version and a map of the API", {"200": root})),
        "/health": ("health", op("health", "Liveness (never touches the database)", {"200": health})),
        "/api/health": ("api_health", op("api_health", "Liveness (never touches the database)", {"200": health})),
        "/api/health/ready": ("ready", op("ready", "Readiness: database and rate-limit storage",
                                          {"200": ready_ok, "503": not_ready})),
        "/api/openapi.json": ("openapi", op("openapi", "This document", {"200": spec})),
        "/api/docs": ("docs", op("docs_page", "This document as a page (Swagger UI)", {"200": page})),
        "/metrics": ("metrics", op("metrics", "Prometheus metrics; `Authorization: Bearer <METRICS_TOKEN>` "
                                              "when METRICS_TOKEN is set",
                                   {"200": metrics, "401": _error_ref(401)}, security=[{}, {"metricsToken": []}])),
    }


# -- traits of a view ------------------------------------------------------------------------------------
def _auth_traits(view):
    """``{"jwt_only", "admin", "scope"}`` from the view's ``auth_required`` wrapper, or None (no auth)."""
    fn = view
    while fn is not None:
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_qualname.startswith("auth_required."):
            found = inspect.getclosurevars(fn).nonlocals
            return {"jwt_only": bool(found.get("jwt_only")), "admin": bool(found.get("admin")),
                    "scope": found.get("scope")}
        fn = getattr(fn, "__wrapped__", None)
    return None


def _routes(app):
    """(OpenAPI path, lower-case method) → (endpoint, {path argument: converter})."""
    out = {}
    for rule in app.url_map.iter_rules():
        converters = {m.group(2): (m.group(1) or "default") for m in _RULE_ARG.finditer(rule.rule)}
        path = _RULE_ARG.sub(lambda m: "{" + m.group(2) + "}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out[(path, method.lower())] = (rule.endpoint, converters)
    return out


def _statuses(endpoint, method, operation, auth, converters):
    statuses = set(ALWAYS) | EXTRA_STATUSES.get(endpoint, set())
    if "requestBody" in operation:
        statuses |= {400, 413, 415}
    if method in BODY_METHODS:  # app.hooks: a body that is not JSON is refused before any view runs
        statuses |= {413, 415}
    if any(p.get("in") == "query" for p in operation.get("parameters", ())):
        statuses.add(400)
    if converters:  # an unknown id is a 404; an id the converter rejects (0, > 2^63) on a write is
        statuses |= {404, 405}  # werkzeug's 405 (the rule does not match, a sibling's method does)
    if auth is not None:
        statuses.add(401)
        if auth["jwt_only"] or auth["admin"] or auth["scope"]:
            statuses.add(403)
    return statuses


def _security(auth):
    if auth is None:
        return []
    if auth["jwt_only"]:
        return [{BEARER: []}]
    return [{BEARER: []}, {API_KEY: []}]


def _describe_auth(auth):
    if auth is None:
        return "No authentication."
    parts = ["JWT only (`Authorization: Bearer`)." if auth["jwt_only"] else "JWT or API key."]
    if auth["admin"]:
        parts.append("Admin role.")
    if auth["scope"]:
        parts.append(f"API key scope `{auth['scope']}`.")
    return " ".join(parts)


# -- finishing the document ------------------------------------------------------------------------------
def _schema(doc, name):
    return doc["components"]["schemas"].get(name, {})


def _registry_bounds(doc, config):
    """Enums and bounds from the probe registry, with the maxima in force in this config."""
    request_schemas = {"ping": "Ping", "traceroute": "Traceroute", "dns": "Dns", "whois": "Whois"}
    for type_name, schema_name in request_schemas.items():
        props = _schema(doc, schema_name).get("properties", {})
        for option in PROBE_TYPES[type_name].options:
            prop = props.get(option.name)
            if prop is None:
                continue
            if option.kind == "int":
                prop.update(minimum=option.minimum, maximum=option.limit(config), default=option.default)
            elif option.kind == "choice":
                prop.update(enum=list(option.choices), default=option.default,
                            description="Case-insensitive")
        if "nameserver" in props:
            props["nameserver"]["description"] = "An IP address; default: the server's configured resolvers"
    for schema_name, example in REQUEST_EXAMPLES.items():
        if schema_name in doc["components"]["schemas"]:
            doc["components"]["schemas"][schema_name]["example"] = example
    create = _schema(doc, "MeasurementCreate").get("properties", {})
    if create:
        create["type"].update(enum=list(PROBE_TYPES), description="The probe type")
        create["limit"].update(minimum=1, maximum=int(config.get("MEASUREMENT_MAX_PROBES", 16)), default=1,
                               description="How many agents run it in all, spread over the filters")
        create["options"]["description"] = "The rest of that probe's body: " + "; ".join(
            f"{name}: " + (", ".join(o.name for o in t.options) or "none") for name, t in PROBE_TYPES.items())
        create["locations"]["description"] = "Filters: each one of name, country, city, asn or tag"
        create["locations"]["items"] = {"type": "object", "properties": {
            "name": {"type": "string"}, "country": {"type": "string", "description": "ISO 3166-1 alpha-2"},
            "city": {"type": "string"}, "asn": {"type": "integer"}, "tag": {"type": "string"}}}
    answer = _schema(doc, "ProbeResponse").get("properties", {})
    if answer:
        answer["probe_type"]["enum"] = list(PROBE_TYPES)
        answer["data"] = _any_data()
    for name in ("JobDetail", "Result"):
        props = _schema(doc, name).get("properties", {})
        if "data" in props:
            props["data"] = _any_data()


def _probe_answer(type_name):
    return {"allOf": [{"$ref": "#/components/schemas/ProbeResponse"},
                      {"type": "object", "properties": {"data": DATA_REFS[type_name]}}]}


def _error_responses():
    out = {}
    for status, description in ERROR_DESCRIPTIONS.items():
        response = _json({"$ref": "#/components/schemas/Error"}, description)
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        out[f"Error{status}"] = response
    return out


def _finish_operation(app, doc_path, method, operation, routes):
    endpoint, converters = routes.get((doc_path, method), (None, {}))
    if endpoint is None:
        return
    view = app.view_functions[endpoint]
    auth = _auth_traits(view)
    operation["operationId"] = endpoint.replace(".", "_")
    operation["security"] = _security(auth)
    summary = operation.get("summary") or ""
    description = operation.get("description") or summary
    operation["description"] = f"{description}\n\n{_describe_auth(auth)}".strip()
    responses = operation.setdefault("responses", {})
    for stale in ("422", "default"):
        responses.pop(stale, None)
    for status in sorted(_statuses(endpoint, method, operation, auth, converters)):
        responses[str(status)] = _error_ref(status)
    for param in operation.get("parameters", ()):
        if param.get("in") == "path" and converters.get(param["name"]) == "id":
            param["schema"] = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    if endpoint.startswith("probes.") and endpoint.split(".")[1] in PROBE_TYPES:
        responses["200"]["content"]["application/json"]["schema"] = _probe_answer(endpoint.split(".")[1])
    if endpoint == "measurements.create_measurement":
        responses["202"]["headers"] = {"Location": {"description": "The measurement's URL",
                                                    "schema": {"type": "string"}}}
    if endpoint == "measurements.get_measurement":
        etag = {"ETag": {"description": "Send it back in If-None-Match", "schema": {"type": "string"}}}
        responses["200"]["headers"] = etag
        responses["304"] = {"description": "Not modified (If-None-Match matched)", "headers": etag}
        operation.setdefault("parameters", []).append(
            {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}})
    if endpoint == "measurements.stream_measurement":
        responses["200"]["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
    operation["responses"] = dict(sorted(responses.items()))


def build(app, base):
    """The finished document from flask-smorest's ``base`` dict (not modified)."""
    doc = copy.deepcopy(base)
    components = doc.setdefault("components", {})
    components["securitySchemes"] = {**SECURITY_SCHEMES, "metricsToken": {
        "type": "http", "scheme": "bearer", "description": "METRICS_TOKEN, for /metrics only"}}
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas.update(_data_schemas())
    components["responses"] = _error_responses()
    routes = _routes(app)
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                _finish_operation(app, path, method, operation, routes)
    _registry_bounds(doc, app.config)
    present = {path for path, _method in routes}
    for path, (_name, operation) in _system_operations().items():
        if path in present:
            doc["paths"][path] = {"get": operation}
    doc["paths"] = dict(sorted(doc["paths"].items()))
    doc["tags"] = doc.get("tags", []) + [{"name": "system", "description": "Root, health, metrics and docs"}]
    doc["info"]["description"] = (
        "ProbeOps: ping, traceroute, DNS and WHOIS probes, synchronous or as measurements from many locations. "
        "Every error has the body `{error, message, code, fields?}`. Authenticate with a JWT "
        "(`Authorization: Bearer`, from POST /api/users/login) or an API key (`X-API-Key`).")
    return doc


def document(app):
    """The document for ``app``, cached per configuration of the bounds it shows."""
    key = tuple(app.config.get(name) for name in ("PING_MAX_COUNT", "TRACEROUTE_MAX_HOPS", "MEASUREMENT_MAX_PROBES"))
    cache = app.extensions.setdefault("probeops_openapi", {})
    if key not in cache:
        from app.extensions import openapi

        with app.test_request_context():
            cache.clear()
            cache[key] = build(app, openapi.spec.to_dict())
    return cache[key]

