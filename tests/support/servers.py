"""Throwaway PostgreSQL and Redis servers for the test session (real processes, temp dirs)."""
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def free_port():
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, seconds=30.0, host="127.0.0.1"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {seconds}s")


def _pg_bin(name):
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (run ./run_tests.sh, which installs it)")
    return found


class PostgresServer:
    """initdb into a temp dir and run postgres on a free loopback port.

    initdb refuses to run as root, so as root everything runs as the ``postgres`` user.
    """

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="probeops-pg-")
        self.data = os.path.join(self.dir, "data")
        self.proc = None

    def _as_owner(self, argv):
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def start(self):
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        subprocess.run(self._as_owner([_pg_bin("initdb"), "-D", self.data, "-U", "postgres", "-A", "trust",
                                       "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
        return self._run()

    def _run(self):
        self.proc = subprocess.Popen(
            self._as_owner([_pg_bin("postgres"), "-D", self.data, "-p", str(self.port), "-h", "127.0.0.1",
                            "-k", self.dir, "-c", "fsync=off", "-c", "synchronous_commit=off",
                            "-c", "full_page_writes=off", "-c", "max_connections=300"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        self._wait_ready()
        return self

    def _wait_ready(self):
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg2.connect(self.url("postgres")).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def url(self, database="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name):
        import psycopg2

        conn = psycopg2.connect(self.url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)

    def processes(self):
        """The postmaster and every backend (what a hung server means: all of them stopped)."""
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return []
        # As root the child is runuser; postgres runs below it.
        return [psutil.Process(self.proc.pid)] + psutil.Process(self.proc.pid).children(recursive=True)

    def _signal_all(self, signum):
        import psutil

        for process in self.processes():
            try:
                process.send_signal(signum)
            except psutil.NoSuchProcess:
                pass  # a backend that ended meanwhile

    def pause(self):
        """SIGSTOP every server process: connections stay open, nothing answers. The postmaster
        first, so that it forks no backend the listing below would miss."""
        self._postmaster().send_signal(signal.SIGSTOP)
        self._signal_all(signal.SIGSTOP)

    def resume(self):
        self._signal_all(signal.SIGCONT)

    def halt(self):
        """Stop the server (fast shutdown: sessions are closed); the data directory stays."""
        if self.proc and self.proc.poll() is None:
            self.resume()
            self._postmaster().send_signal(signal.SIGINT)
            self.proc.wait(30)

    def _postmaster(self):
        import psutil

        top = psutil.Process(self.proc.pid)
        if top.name() == "postgres":
            return top
        return next(child for child in top.children() if child.name() == "postgres")

    def restart(self):
        """Stop, then start again on the same port and data."""
        self.halt()
        self._run()
        return self

    def stop(self):
        """Fast shutdown (SIGINT to the postmaster: open sessions are closed), else SIGKILL to
        every server process; always waited for. SIGTERM was a smart shutdown, which waits for
        every client to leave: with a test app's pooled connections still open it never ended,
        and the Popen was dropped still running (a ResourceWarning when collected)."""
        import psutil

        if self.proc and self.proc.poll() is None:
            try:
                self.resume()
                self._postmaster().send_signal(signal.SIGINT)
                self.proc.wait(15)
            except (psutil.Error, StopIteration, subprocess.TimeoutExpired):
                self._signal_all(signal.SIGKILL)
                self.proc.wait(15)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """redis-server on a free loopback port, no persistence."""

    def __init__(self):
        self.port = free_port()
        self.proc = None

    def start(self):
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed (run ./run_tests.sh, which installs it)")
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--protected-mode", "yes"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def pause(self):
        """SIGSTOP: connections stay open, nothing answers."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def halt(self):
        """Stop the server; ``start()`` brings it back on the same port."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def stop(self):
        if self.proc:
            if self.proc.poll() is None:
                self.resume()
            self.proc.terminate()
            self.proc.wait(10)
