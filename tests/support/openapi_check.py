"""Pytest plugin: every response a test receives through Flask's test client is checked against the
app's own OpenAPI document (openapi-core): the status must be documented for the operation, and
the content type, body and documented headers must match.

``OPENAPI_CHECK=enforce`` (the default) fails the test on a mismatch; ``report`` only lists the
mismatches at the end of the run; ``off`` disables the check. Requests to URLs or methods the
document does not describe (unknown paths, 405s, OPTIONS) are not operations and are skipped.
"""
import os
from collections import Counter

import pytest
from flask.testing import FlaskClient
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound, ServerNotFound

MODE = os.environ.get("OPENAPI_CHECK", "enforce")
_validators = {}      # id(document) -> OpenAPI
_found = []           # mismatches of the running test
_all = Counter()      # (method path status, error) -> count, for the report
_checked = Counter()  # "checked" / "not an operation"


class _RequestLine(WerkzeugOpenAPIRequest):
    """The request as openapi-core needs it to find the operation: its body, already read by the
    app, is not needed to check the response."""

    @property
    def body(self):
        return None


def _validator(app):
    from app.openapi import document

    doc = document(app)
    key = id(doc)
    if key not in _validators:
        _validators.clear()
        _validators[key] = (doc, OpenAPI.from_dict(doc))
    return _validators[key]


def _template(doc, path):
    """The document's path template matching ``path`` (for the report), else the path."""
    parts = path.rstrip("/").split("/") or [""]
    for template in doc["paths"]:
        t = template.rstrip("/").split("/")
        if len(t) == len(parts) and all(a == b or a.startswith("{") for a, b in zip(t, parts, strict=True)):
            return template
    return path


def _stream_errors(doc, request, response):
    """An event stream is not read here (the test reads it): only its status and content type."""
    template = _template(doc, request.path)
    operation = doc["paths"].get(template, {}).get(request.method.lower())
    if operation is None:
        return None
    documented = operation["responses"].get(str(response.status_code))
    if documented is None:
        return [f"status {response.status_code} not documented"]
    content = documented.get("content") or {}
    if "$ref" not in documented and response.mimetype not in content:
        return [f"content type {response.mimetype} not documented"]
    return []


def check(app, response):
    """The mismatches of ``response`` (a list, empty when it conforms), or None when not an operation."""
    request = response.request
    doc, openapi = _validator(app)
    if response.is_streamed and response.mimetype == "text/event-stream":
        return _stream_errors(doc, request, response)
    try:
        openapi.validate_response(_RequestLine(request), WerkzeugOpenAPIResponse(response))
    except (PathNotFound, OperationNotFound, ServerNotFound):
        return None
    except Exception as exc:  # noqa: BLE001 - every validation error is a finding
        causes = [str(exc)]
        inner = getattr(exc, "__cause__", None)
        for error in getattr(inner, "schema_errors", None) or ([inner] if inner else []):
            causes.append(str(getattr(error, "message", error))[:300])
        return causes
    return []


_original_open = FlaskClient.open


def _checked_open(self, *args, **kwargs):
    response = _original_open(self, *args, **kwargs)
    if MODE != "off" and getattr(response, "request", None) is not None:
        errors = check(self.application, response)
        if errors is None:
            _checked["not an operation"] += 1
        else:
            _checked["checked"] += 1
            if errors:
                where = f"{response.request.method} {response.request.path} -> {response.status_code}"
                _found.append(f"{where}: " + " | ".join(errors))
                _all[(where.split(" -> ")[0].split(" ")[0] + " "
                      + _template(_validator(self.application)[0], response.request.path)
                      + f" {response.status_code}", errors[-1][:200])] += 1
    return response


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    _found.clear()
    result = yield
    if _found and MODE == "enforce":
        found = list(_found)
        _found.clear()
        pytest.fail("responses that contradict the OpenAPI document:\n  " + "\n  ".join(found), pytrace=False)
    return result


def pytest_configure(config):
    if MODE != "off":
        FlaskClient.open = _checked_open


def pytest_unconfigure(config):
    FlaskClient.open = _original_open


def pytest_terminal_summary(terminalreporter):
    if MODE == "off" or not (_checked or _all):
        return
    terminalreporter.write_sep("-", f"OpenAPI check ({MODE}): {_checked['checked']} responses checked, "
                                    f"{_checked['not an operation']} not operations, "
                                    f"{sum(_all.values())} mismatches")
    for (where, error), count in sorted(_all.items()):
        terminalreporter.write_line(f"{count:4d}  {where}: {error}")
