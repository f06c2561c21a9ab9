"""A bounded schemathesis run against the WSGI app, on SQLite and PostgreSQL: generated requests to
every documented operation, authenticated with a real API key, must never get a server error, and
every answer's status, content type and body must be the document's.

Network safety: probes may only reach 127.0.0.1 (PROBE_ALLOWED_NETWORKS), names are resolved by
127.0.0.1 only (DNS_NAMESERVERS; dnspython, never the system resolver), WHOIS starts at 127.0.0.1
and RDAP is off — every other generated target is refused by the guard before a packet leaves.
"""
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
LOOPBACK_ONLY = {"PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "DNS_NAMESERVERS": ["127.0.0.1"],
                 "WHOIS_ROOT_SERVER": "127.0.0.1", "RDAP_BOOTSTRAP_URL": "", "RATELIMIT_DEFAULT": "100000 per hour",
                 "PING_INTERVAL": 0.01, "PING_TIMEOUT": 0.3, "DNS_TIMEOUT": 0.3, "WHOIS_TIMEOUT": 0.5,
                 "TRACEROUTE_HOP_TIMEOUT": 0.2, "TRACEROUTE_TOTAL_TIMEOUT": 2.0}


@pytest.fixture
def app_overrides():
    return dict(LOOPBACK_ONLY)


@pytest.fixture
def api_key(app, make_user):
    from app.services import api_keys

    owner = make_user("fuzzer", tier="Enterprise")
    return api_keys.create_key(owner, "schemathesis").full_key


def _document():
    """The document of an app configured like the tested ones (the document needs no database)."""
    import tempfile

    from app.openapi import document
    from tests.conftest import build_app

    with tempfile.TemporaryDirectory() as folder:
        return document(build_app(f"sqlite:///{folder}/unused.db", **LOOPBACK_ONLY))


# Examples and fuzzing (positive and negative data) within max_examples; the coverage phase, which
# max_examples does not bound, is off to keep the run well under a minute.
CONFIG = schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}},
                                        "generation": {"mode": "all"}})
schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)


@schema.parametrize()
@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_api_does_what_its_document_says(case, app, api_key):
    case.call_and_validate(app=app, headers={"X-API-Key": api_key}, checks=CHECKS)
