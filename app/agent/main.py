"""The agent's entry: its Celery app and the probe task; `python -m app.agent` runs it.

Imports the probe engines, Celery and the agent's settings, and nothing from Flask or the
database: the agent needs the broker URL only.
"""
import logging
import os
import sys
import threading
import time

from celery import signals

from app.agent import protocol
from app.agent.celery_app import make_celery
from app.agent.heartbeat import Heartbeat
from app.agent.settings import AgentConfigError, from_environ
from app.logging_setup import configure_from_env
from app.probes.execute import run_spec
from app.probes.spec import LocalPolicy, ProbeSpec
from app.utils.cpu_priority import lower_cpu_priority, use_idle_policy
from app.utils.group_commit import GroupWriter

log = logging.getLogger("probeops.agent")

# Results and "started" notices wait this long for a broker that is away before they are dropped
# (the central sweep then ends the job as timeout).
STARTED_NOTICE_SECONDS = 0.2  # a probe running longer than this is reported `running` before it ends
REPORT_RETRY = {"max_retries": 30, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}
REPORTS_PER_MESSAGE = 64      # at most this many reports in one probeops.store_reports message
# While other probes still run here, at most one report message per this many seconds: the
# results of a burst (50 pings ending within a second) travel a few dozen at a time, which is what
# the central worker's cost follows (one message, one transaction). A result with nothing else
# running here leaves at once.
REPORTS_MIN_INTERVAL = 0.05


class RunningProbes:
    """The probes running here, and their "started" notices: one thread, every half
    STARTED_NOTICE_SECONDS, hands in the notices of the probes that have run that long, as one
    batch (a probe that ends sooner needs none; its result carries when it started)."""

    def __init__(self):
        self.sender = None  # the GroupWriter the notices go to (set once built)
        self.lock = threading.Lock()
        self.running = {}  # job_id -> [started (epoch seconds), noticed]
        self.thread = None

    def started(self, job_id, started):
        with self.lock:
            self.running[job_id] = [started, False]
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="probeops-notices", daemon=True)
                self.thread.start()

    def ended(self, job_id):
        with self.lock:
            self.running.pop(job_id, None)

    def report_interval(self):
        """REPORTS_MIN_INTERVAL while probes still run here, else 0 (send at once)."""
        return REPORTS_MIN_INTERVAL if self.running else 0.0

    def _run(self):
        while True:
            time.sleep(STARTED_NOTICE_SECONDS / 2)
            due = time.time() - STARTED_NOTICE_SECONDS
            with self.lock:
                notices = []
                for job_id, state in self.running.items():
                    if not state[1] and state[0] <= due:
                        state[1] = True
                        notices.append({"job_id": job_id, "outcome": None, "started": state[0]})
            if notices:
                try:
                    self.sender.write(notices, wait=False)
                except Exception:  # noqa: BLE001 - the thread must go on; a lost notice only delays "running"
                    log.exception("started notices of %d probes not handed in", len(notices))


def build(settings):
    """The agent's Celery app with its one task, `probeops.run_probe(job_id, spec_dict)`."""
    # At most once: a message is acknowledged as its probe starts, and in the agent's memory (no
    # kombu ack emulation). kombu gives back to the queue what a closing channel holds
    # unacknowledged (a broker reconnect), so a probe still unacknowledged while it ran would run
    # again. One lost with its agent ends as `timeout` at its deadline, long before Redis would have
    # restored an emulated ack. No emulation also saves two Redis round trips a message and keeps
    # the agent away from the broker-wide `unacked` keys (docs/agents.md, "Failure behaviour").
    celery = make_celery(f"probeops-agent-{settings.name}", settings.broker_url,
                         concurrency=settings.concurrency, ack_emulation=False)
    policy = LocalPolicy.from_config(settings.policy_config)

    def send(reports):
        """One `probeops.store_reports` message for every report waiting (results and notices)."""
        celery.send_task(protocol.STORE_REPORTS, args=[settings.name, reports], queue=protocol.CENTRAL_QUEUE,
                         declare=protocol.NO_DECLARE, retry=True, retry_policy=REPORT_RETRY,
                         argsrepr=f"({settings.name!r}, {len(reports)} reports)")
        return [True] * len(reports)

    running = RunningProbes()
    sender = GroupWriter(send, max_batch=REPORTS_PER_MESSAGE, min_interval=running.report_interval,
                         name="probeops-reports")
    running.sender = sender

    @celery.task(name=protocol.RUN_PROBE, acks_late=False)
    def run_probe(job_id, spec_dict):
        """Run one probe from here and send its outcome to the central worker."""
        spec = ProbeSpec.from_dict(spec_dict)
        if spec.deadline <= time.time():
            log.warning("job %s: its deadline passed before it reached this agent; not run", job_id)
            return
        started = time.time()
        running.started(job_id, started)
        try:
            outcome = run_spec(spec, policy)
        finally:
            running.ended(job_id)
        # returns once the message carrying it is published: the task's thread, which
        # AGENT_CONCURRENCY counts, is held until the result is on its way
        sender.write([{"job_id": job_id, "outcome": outcome, "started": started}])

    return celery


def worker_argv(settings, loglevel):
    """`celery worker` arguments: this location's queue only, threads, no gossip between agents."""
    return ["worker", "-Q", protocol.location_queue(settings.name), "-P", "threads",
            "-c", str(settings.concurrency), "-n", f"agent-{settings.name}@%h", "-l", loglevel,
            "--without-gossip", "--without-mingle", "--without-heartbeat"]


def main():
    """Read the settings from the environment, announce, consume this location's queue."""
    configure_from_env()  # LOG_FORMAT: one JSON object a line in production, like the API
    try:
        settings = from_environ()
    except AgentConfigError as exc:
        sys.exit(f"[agent] {exc}")
    lower_cpu_priority(settings.nice)
    if settings.cpu_policy == "idle":
        use_idle_policy()
    celery = build(settings)
    heartbeat = Heartbeat(settings)
    signals.worker_ready.connect(lambda **_: heartbeat.start(), weak=False)
    signals.worker_shutting_down.connect(lambda **_: heartbeat.stop(), weak=False)
    log.info("agent %s: queue %s, concurrency %d", settings.name,
             protocol.location_queue(settings.name), settings.concurrency)
    celery.worker_main(worker_argv(settings, os.environ.get("LOG_LEVEL", "info").upper()))
