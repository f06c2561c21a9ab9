"""JSON logs: one object a line with the request's context, access lines written by the app, Gunicorn's
error log in the same format under ./start.sh, and no secret in any line."""
import json
import re
import socket
import sqlite3

import pytest
import requests

from tests.conftest import PASSWORD, build_app
from tests.support.gunicorn import ROOT, StartedServer

KEYS = {"time", "level", "logger", "message", "request_id", "user_id", "auth_method", "route", "status",
        "duration_ms"}
ACCESS_KEYS = KEYS | {"method", "path"}


def json_lines(text):
    """Every non-empty line parsed; fails naming the first line that is not a JSON object."""
    lines = []
    for line in text.splitlines():
        if line.strip():
            try:
                parsed = json.loads(line)
            except ValueError:
                pytest.fail(f"not a JSON line: {line!r}")
            assert isinstance(parsed, dict), line
            lines.append(parsed)
    return lines


def access_lines(lines):
    found = [line for line in lines if line["logger"] == "probeops.access"]
    for line in found:
        assert ACCESS_KEYS <= set(line), line
    return found


@pytest.fixture
def app_overrides():
    return {"LOG_FORMAT": "json"}


def test_access_line_has_the_request_context(client, user, auth_headers, capsys):
    response = client.get("/api/probes/history/42", headers={**auth_headers(user), "X-Request-ID": "trace-1"})
    assert response.status_code == 404 and response.headers["X-Request-ID"] == "trace-1"
    anonymous = client.get("/api/users/me")
    out = capsys.readouterr()
    lines = json_lines(out.out)
    (line,) = [a for a in access_lines(lines) if a["request_id"] == "trace-1"]
    assert line["route"] == "/api/probes/history/<id:job_id>" and line["path"] == "/api/probes/history/42"
    assert (line["method"], line["status"], line["user_id"], line["auth_method"]) == ("GET", 404, user.id, "jwt")
    assert line["level"] == "INFO" and line["duration_ms"] >= 0
    (other,) = [a for a in access_lines(lines) if a["request_id"] == anonymous.headers["X-Request-ID"]]
    assert other["user_id"] is None and other["status"] == 401 and other["route"] == "/api/users/me"


def test_app_lines_carry_the_request_id(app, client, capsys):
    import logging

    @app.get("/log-something")
    def log_something():
        logging.getLogger("probeops").warning("inside %s", "a request")
        return {}

    client.get("/log-something", headers={"X-Request-ID": "trace-2"})
    logging.getLogger("probeops").warning("outside")
    lines = json_lines(capsys.readouterr().err)
    inside = next(line for line in lines if line["message"] == "inside a request")
    assert KEYS <= set(inside) and inside["request_id"] == "trace-2" and inside["route"] == "/log-something"
    outside = next(line for line in lines if line["message"] == "outside")
    assert KEYS <= set(outside) and outside["request_id"] is None


@pytest.mark.parametrize("app_overrides", [{"LOG_FORMAT": "text"}])
def test_text_format_for_people(client, capsys):
    client.get("/api/users/me", headers={"X-Request-ID": "trace-3"})
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "trace-3" in line]
    assert "probeops.access [trace-3] GET /api/users/me 401" in line


def test_format_follows_the_environment(database_url):
    from app.config import ConfigError
    from app.logging_setup import resolve_format

    assert resolve_format(None, "production") == "json"
    assert resolve_format("", "development") == "text"
    assert resolve_format(" TEXT ", "production") == "text"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        build_app(database_url, LOG_FORMAT="yaml")


def scan_for(text, secrets):
    for name, secret in secrets.items():
        assert secret not in text, f"the {name} appears in the log"


@pytest.mark.slow
def test_start_sh_writes_json_lines_without_secrets(tmp_path):
    """The real server: every line Gunicorn and the app write is JSON with the keys; each answer's
    request id is on its access line; no password, hash, token, key or body in any line."""
    srv = StartedServer({"LOG_FORMAT": "json", "PROBE_ALLOWED_NETWORKS": "127.0.0.1/32",
                         "DNS_NAMESERVERS": "127.0.0.1", "PING_TIMEOUT": "1"}, tmp_path).start()
    try:
        base = srv.url
        register_body = {"username": "loggy", "email": "loggy@example.com", "password": PASSWORD}
        answers = [requests.post(f"{base}/api/users/register", json=register_body, timeout=10)]
        answers.append(requests.post(f"{base}/api/users/login", json={"username": "loggy", "password": PASSWORD},
                                     timeout=10))
        token = answers[-1].json()["token"]
        answers.append(requests.post(f"{base}/api/users/login",
                                     json={"username": "loggy", "password": PASSWORD + " wrong"}, timeout=10))
        bearer = {"Authorization": f"Bearer {token}"}
        answers.append(requests.post(f"{base}/api/apikeys", headers=bearer, json={"description": "logs"},
                                     timeout=10))
        assert answers[-1].status_code == 201, answers[-1].text
        key = answers[-1].json()["api_key"]["key"]
        answers.append(requests.post(f"{base}/api/probes/ping", headers={"X-API-Key": key},
                                     json={"host": "127.0.0.1", "count": 1}, timeout=30))
        assert answers[-1].status_code == 200, answers[-1].text
        answers.append(requests.get(f"{base}/api/probes/history?limit=1&offset=0", headers={"X-API-Key": key},
                                    timeout=10))
        answers.append(requests.get(f"{base}/nowhere", headers={"X-Request-ID": "caller-chosen"}, timeout=10))
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:  # the server layer's 431
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
            assert b" 431 " in sock.recv(200)
    finally:
        srv.stop()

    output = srv.output()
    gunicorn_part = output[output.index("[start.sh] gunicorn:"):].split("\n", 1)[1]
    lines = json_lines(gunicorn_part)
    for line in lines:
        assert KEYS <= set(line), line
    access = access_lines(lines)
    by_id = {line["request_id"]: line for line in access}
    for answer in answers:
        line = by_id[answer.headers["X-Request-ID"]]
        assert line["status"] == answer.status_code and line["path"] in answer.url
    assert by_id["caller-chosen"]["route"] is None and by_id["caller-chosen"]["status"] == 404
    user_id = answers[0].json()["user"]["id"]
    probe = by_id[answers[4].headers["X-Request-ID"]]
    assert (probe["route"], probe["user_id"], probe["auth_method"]) == ("/api/probes/ping", user_id, "api_key")
    assert probe["duration_ms"] > 0
    refused = [line for line in lines if line["logger"] == "gunicorn.error" and line["status"] == 431]
    assert refused and refused[0]["level"] == "WARNING"

    with sqlite3.connect(tmp_path / "instance" / "probeops.db") as db:
        password_hash = db.execute("SELECT password_hash FROM users").fetchone()[0]
        key_hash = db.execute("SELECT key_hash FROM api_keys").fetchone()[0]
    scan_for(output, {"password": PASSWORD, "password hash": password_hash, "token": token, "API key": key,
                      "key hash": key_hash, "register body": json.dumps(register_body),
                      "token signature": token.rsplit(".", 1)[1]})


@pytest.mark.slow
def test_start_sh_text_lines_have_no_logging_errors(tmp_path):
    """The development default (text): Gunicorn's own lines keep their process id, and no record
    fails to format (each had printed a "--- Logging error ---" traceback)."""
    srv = StartedServer({"PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "DNS_NAMESERVERS": "127.0.0.1"}, tmp_path).start()
    try:
        assert requests.get(f"{srv.url}/api/health", timeout=10).status_code == 200
    finally:
        srv.stop()
    output = srv.output()
    assert "Logging error" not in output and "Traceback" not in output, output[-3000:]
    assert re.search(r"\[\d+\] \[INFO\] Booting worker with pid: \d+", output), output[-3000:]


def test_processes_without_flask_log_json_too():
    """The agent and the central worker can use the same lines: configure_from_env needs no Flask."""
    import subprocess
    import sys

    code = ("import logging, sys; import app.logging_setup as logging_setup; logging_setup.configure_from_env();"
            "logging.getLogger('probeops.agent').warning('up', extra={'location': 'lab-1'});"
            "assert 'flask' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    (line,) = json_lines(done.stderr)
    assert KEYS <= set(line) and line["message"] == "up" and line["location"] == "lab-1"
