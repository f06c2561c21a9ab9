"""Run ./start.sh as a real server process for end-to-end tests."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
STRONG_SECRET = "e2e-" + "Zq8vL3xN5pR7tW9yB2dF4hJ6kM1nQ0sU" * 2


class StartedServer:
    """``./start.sh`` with the given environment (and nothing else from ours but PATH)."""

    def __init__(self, env, tmp_path):
        self.port = free_port()
        self.log_path = tmp_path / f"server-{self.port}.log"
        bin_dir = os.path.dirname(sys.executable)
        self.env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "API_PORT": str(self.port),
                    "PROBEOPS_INSTANCE_PATH": str(tmp_path / "instance"), "PROBEOPS_SKIP_DOTENV": "1",
                    "BIND_ADDRESS": "127.0.0.1", "LANG": "C.UTF-8", **env}
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=60):
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(ROOT / "start.sh")], cwd=ROOT, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"start.sh exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"no /health after {timeout}s:\n{self.output()}")

    def output(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


def started_servers(tmp_path):
    """Body of a fixture that yields ``start(**env)`` and stops every server it started."""
    started = []

    def start(**env):
        srv = StartedServer(env, tmp_path).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
