"""The compose files' buffering reverse proxy (deploy/nginx): what it must enforce, checked in its
configuration (no Docker here); ``nginx -t`` too when an nginx binary is installed."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app.config import Config

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nginx" / "nginx.conf"


def directives():
    """``{name: [value, ...]}`` of the configuration's simple directives."""
    found = {}
    for name, value in re.findall(r"^\s*([a-z_]+)\s+([^;{]*);", CONF.read_text(), re.MULTILINE):
        found.setdefault(name, []).append(value.strip())
    return found


def seconds(value):
    return int(value.rstrip("s"))


def test_the_proxy_buffers_requests_and_bounds_slow_clients():
    found = directives()
    assert found["proxy_request_buffering"] == ["on"] and found["proxy_buffering"] == ["on"]
    assert seconds(found["client_header_timeout"][0]) <= Config.SERVER_HEADER_TIMEOUT
    assert seconds(found["client_body_timeout"][0]) <= Config.SERVER_BODY_TIMEOUT
    assert found["client_max_body_size"] == [f"{Config.MAX_CONTENT_LENGTH // 1024}k"]
    assert found["proxy_pass"] == ["http://probeops_api"] and found["server"] == ["api:5000"]
    assert "limit_conn" in found


def test_the_proxy_answers_its_own_errors_in_the_contract_format():
    text = CONF.read_text()
    for status in ("400", "408", "413", "429", "502 503 504"):
        assert re.search(rf"error_page {status} = @\w+;", text), status
    for body in re.findall(r"return \d+ '(\{.*\})';", text):
        assert set(re.findall(r'"(\w+)":', body)) == {"error", "message", "code"}


def test_both_compose_files_run_the_proxy_in_front_of_the_api():
    for name in ("docker-compose.yml", "docker-compose.backend.yml"):
        text = (ROOT / name).read_text()
        assert re.search(r"\n  proxy:\n    build: \./deploy/nginx\n", text), name
    assert "COPY nginx.conf /etc/nginx/nginx.conf" in (ROOT / "deploy" / "nginx" / "Dockerfile").read_text()


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed")
def test_nginx_accepts_the_configuration(tmp_path):
    conf = CONF.read_text().replace("server api:5000;", "server 127.0.0.1:5000;").replace("/tmp/", f"{tmp_path}/")
    (tmp_path / "nginx.conf").write_text(conf)
    (tmp_path / "logs").mkdir()
    command = ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "/dev/stderr"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
