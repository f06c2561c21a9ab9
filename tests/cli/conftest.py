"""Shared by the CLI tests: the `probeops` script of a real `pip install .`, and running it."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
# The API under test: probes to loopback only, fast pings, a rate limit the suite does not reach.
SERVER_ENV = {"PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "PING_INTERVAL": "0.2", "DNS_TIMEOUT": "1",
              "RATELIMIT_DEFAULT": "1000 per minute", "LOG_FORMAT": "text"}


@pytest.fixture(scope="session")
def probeops(tmp_path_factory):
    """The `probeops` script of `pip install .` (a copy of the repo's packaging files) in a new venv."""
    work = tmp_path_factory.mktemp("cli-install")
    source = work / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source / "pyproject.toml")
    shutil.copytree(ROOT / "probeops_cli", source / "probeops_cli",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = work / "venv"
    base_python = getattr(sys, "_base_executable", None) or shutil.which("python3")
    subprocess.run([base_python, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "."],
                               cwd=source, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    script = venv / "bin" / "probeops"
    assert script.exists()
    return script


def run(script, *args, config, env=None, timeout=120):
    """The script in a clean environment: only PATH, HOME and the config path, plus ``env``."""
    environ = {"PATH": os.environ["PATH"], "HOME": str(Path(config).parent), "LANG": "C.UTF-8",
               "PROBEOPS_CONFIG": str(config), **(env or {})}
    done = subprocess.run([str(script), *args], env=environ, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return done
