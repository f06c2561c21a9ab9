"""The agent process itself: what its entry module imports, its settings, start.sh's roles."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.agent.settings import AgentConfigError, from_environ
from tests.agents.conftest import nice_of

ROOT = Path(__file__).resolve().parents[2]


def test_the_agent_entry_module_imports_no_flask_and_no_database():
    code = ("import sys, app.agent.main, app.agent.heartbeat, app.probes.execute; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('flask', 'flask_sqlalchemy', 'sqlalchemy', 'psycopg2', 'werkzeug', 'gunicorn') "
            "or m in ('app.factory', 'app.extensions', 'app.db.models')); "
            "assert not bad, bad; assert 'celery' in sys.modules; print('clean')")
    env = {"PATH": os.environ["PATH"], "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "clean", p.stderr


def test_settings_from_the_environment():
    s = from_environ({"CELERY_BROKER_URL": "rediss://agent:pw@broker.example.net:6380/1", "AGENT_NAME": "fra-1",
                      "AGENT_COUNTRY": "de", "AGENT_CITY": "Frankfurt", "AGENT_ASN": "64500",
                      "AGENT_NETWORK": "Example GmbH", "AGENT_LATITUDE": "50.11", "AGENT_LONGITUDE": "8.68",
                      "AGENT_TAGS": "eu, datacenter,,", "AGENT_OFFLINE_SECONDS": "12",
                      "PROBE_ALLOWED_NETWORKS": "10.0.0.0/8", "DNS_NAMESERVERS": "10.0.0.53, 10.0.0.54"})
    assert s.location("1.1.0", "now") == {
        "name": "fra-1", "country": "DE", "city": "Frankfurt", "asn": 64500, "network": "Example GmbH",
        "latitude": 50.11, "longitude": 8.68, "tags": ["eu", "datacenter"], "version": "1.1.0", "last_seen": "now"}
    assert s.offline_seconds == 12 and s.heartbeat_seconds == 4
    assert s.policy_config["PROBE_ALLOWED_NETWORKS"] == "10.0.0.0/8"
    assert s.policy_config["DNS_NAMESERVERS"] == ["10.0.0.53", "10.0.0.54"]
    assert s.policy_config["WHOIS_ROOT_SERVER"] == "whois.iana.org"
    from app.probes.spec import LocalPolicy

    assert LocalPolicy.from_config(s.policy_config).nameservers == ("10.0.0.53", "10.0.0.54")


@pytest.mark.parametrize("env, key", [
    ({}, "CELERY_BROKER_URL"),
    ({"AGENT_NAME": "has space"}, "AGENT_NAME"),
    ({"AGENT_NAME": "a/b"}, "AGENT_NAME"),
    ({"AGENT_COUNTRY": "DEU"}, "AGENT_COUNTRY"),
    ({"AGENT_ASN": "AS64500"}, "AGENT_ASN"),
    ({"AGENT_LATITUDE": "91"}, "AGENT_LATITUDE"),
    ({"AGENT_OFFLINE_SECONDS": "0"}, "AGENT_OFFLINE_SECONDS"),
    ({"AGENT_NICE": "20"}, "AGENT_NICE"),
    ({"AGENT_NICE": "-5"}, "AGENT_NICE"),
    ({"AGENT_CPU_POLICY": "realtime"}, "AGENT_CPU_POLICY"),
])
def test_bad_settings_name_the_key(env, key):
    base = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/1", "AGENT_NAME": "a1"} if key != "CELERY_BROKER_URL" else {}
    with pytest.raises(AgentConfigError, match=key):
        from_environ({**base, **env})


@pytest.mark.parametrize("role", ["agent", "worker"])
def test_start_sh_roles_need_the_broker_url(role, tmp_path):
    env = {"PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "PROBEOPS_SKIP_DOTENV": "1"}
    p = subprocess.run([str(ROOT / "start.sh"), role], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "CELERY_BROKER_URL" in p.stderr, p.stderr


LOWER = ("import os; from app.utils.cpu_priority import lower_cpu_priority; lower_cpu_priority(7); "
         "shown = open('/proc/self/autogroup').read().split(); "
         "print(os.getpriority(os.PRIO_PROCESS, 0), shown[-1] if shown else None)")


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no kernel autogroup here")
def test_lower_cpu_priority_sets_the_autogroup_only_of_a_session_of_its_own():
    """In a session of its own (a supervisor's setsid) the session's autogroup goes to 7 too; in the
    caller's session (a terminal) only the process: the caller's session keeps its priority (or
    keeps none of its own, in the boot session)."""
    alone = subprocess.run([sys.executable, "-c", LOWER], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           start_new_session=True)
    assert alone.stdout.split() == ["7", "7"], alone.stderr
    before = str(nice_of(os.getpid())[1])
    shared = subprocess.run([sys.executable, "-c", LOWER], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shared.stdout.split() == ["7", before], shared.stderr
    assert str(nice_of(os.getpid())[1]) == before


IDLE = ("import os, threading; from app.utils.cpu_priority import use_idle_policy; use_idle_policy(); "
        "later = []; thread = threading.Thread(target=lambda: later.append(os.sched_getscheduler(0))); "
        "thread.start(); thread.join(); print(os.sched_getscheduler(0) == os.SCHED_IDLE, later == [os.SCHED_IDLE])")


def test_the_idle_policy_covers_the_process_and_the_threads_it_starts_later():
    idle = subprocess.run([sys.executable, "-c", IDLE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert idle.stdout.split() == ["True", "True"], idle.stderr
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller keeps its own


def test_the_agents_cpu_policy_is_normal_unless_asked():
    base = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/1", "AGENT_NAME": "a1"}
    assert from_environ(base).cpu_policy == "normal"
    assert from_environ({**base, "AGENT_CPU_POLICY": "IDLE"}).cpu_policy == "idle"


def test_the_central_worker_refuses_a_worker_nice_out_of_range(tmp_path):
    env = {"PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "PROBEOPS_SKIP_DOTENV": "1", "PROBEOPS_INSTANCE_PATH": str(tmp_path), "APP_ENV": "development",
           "CELERY_BROKER_URL": "redis://127.0.0.1:1/0", "WORKER_NICE": "20"}
    p = subprocess.run([sys.executable, "-m", "app.worker"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and "WORKER_NICE: nice must be between 0 and 19, not 20" in p.stderr, p.stderr
