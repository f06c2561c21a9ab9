"""Where probes run: ``get_dispatcher()`` picks embedded (no broker) or Celery (CELERY_BROKER_URL set).

The interface both implement: ``submit(job_id, spec, location)``, ``submit_all([(job_id, spec,
location), ...])`` (all of them or none), ``locations()``, ``default_location()`` and
``wait(job_id, timeout)``.

The ``EmbeddedDispatcher`` runs probes in a bounded thread pool inside each Gunicorn worker, as
the single location ``local``: ``run_spec`` then ``store_outcome`` (with the outage handling of
the synchronous probes: a result the database cannot take is kept and written later). ``wait``
wakes on an in-process event for this worker's jobs and polls the row otherwise, so a job
created in one worker can be waited for in another.
"""
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app

from app import metrics
from app.errors import ApiError
from app.probes.execute import outcome as make_outcome
from app.probes.execute import run_spec
from app.probes.spec import LocalPolicy
from app.services import job_store, job_sweeper
from app.utils.clock import utcnow

log = logging.getLogger("probeops")

LOCAL = "local"
POLL_SECONDS = 0.02
FINISHED_KEEP_SECONDS = 120.0  # a Finished record nobody asked for is dropped after this
STORE_FIRST_PAUSE = 0.05


@dataclass
class Finished:
    """What this worker knows of a job it ran: its outcome, and whether the row holds it yet."""

    outcome: dict
    stored: bool
    at: float = 0.0  # time.monotonic() when it ended


class EmbeddedDispatcher:
    """Probes run here, in a per-process thread pool (see the module docstring)."""

    name = "embedded"

    def __init__(self, app):
        self.app = app
        self.size = max(1, int(app.config["PROBE_MAX_CONCURRENT_PER_WORKER"]))
        self._pid = None
        self._lock = threading.Lock()

    # -- per-process state (a forked worker must not share its parent's threads)
    def _state(self):
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._pool = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="probeops-probe")
                    self._events = {}
                    self._finished = {}
                    self._in_flight = 0
                    self._pid = os.getpid()
        return self

    def capacity(self):
        """How many more probes this worker takes now."""
        self._state()
        with self._lock:
            return self.size - self._in_flight

    # -- the interface
    def submit(self, job_id, spec, location=LOCAL):
        """Run ``spec`` for job ``job_id`` in this worker's pool (see ``submit_all``)."""
        self.submit_all([(job_id, spec, location)])

    def submit_all(self, jobs):
        """Run each ``(job_id, spec, location)`` in this worker's pool: all of them, or 503
        server_busy and none when the pool has not room for all."""
        self._state()
        with self._lock:
            if self._in_flight + len(jobs) > self.size:
                raise ApiError(503, "The server is running as many probes as it can; retry shortly",
                               {"Retry-After": "5"}, code="server_busy")
            self._in_flight += len(jobs)
            for job_id, _spec, _location in jobs:
                self._events[job_id] = threading.Event()
        for job_id, spec, _location in jobs:
            self._pool.submit(self._run, job_id, spec)

    def locations(self):
        """The one LOCATION of the embedded mode."""
        cfg = self.app.config
        tags = cfg.get("AGENT_TAGS") or []
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",") if t.strip()]
        return [{"name": LOCAL, "country": cfg.get("AGENT_COUNTRY") or None, "city": cfg.get("AGENT_CITY") or None,
                 "asn": cfg.get("AGENT_ASN") or None, "network": cfg.get("AGENT_NETWORK") or None,
                 "latitude": cfg.get("AGENT_LATITUDE"), "longitude": cfg.get("AGENT_LONGITUDE"),
                 "tags": list(tags), "version": cfg.get("VERSION"),
                 "last_seen": utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")}]

    def default_location(self):
        """``local``: always online while the API is."""
        return self.locations()[0]

    def wait(self, job_id, timeout):
        """Return once the job has ended (stored or kept by this worker, or its row ended), or after ``timeout``."""
        self._state()
        deadline = time.monotonic() + timeout
        with self._lock:
            event = self._events.get(job_id)
            if job_id in self._finished:
                return
        if event is not None:
            event.wait(max(0.0, timeout))
            return
        while time.monotonic() < deadline:
            try:
                if job_store.job_state(job_id) not in job_store.ACTIVE:
                    return
            except Exception as error:  # noqa: BLE001 - a database that is away: keep polling
                if not job_store.is_transient(error):
                    raise
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def finished(self, job_id):
        """This worker's Finished record of ``job_id`` (taken: asked once), or None."""
        self._state()
        with self._lock:
            return self._finished.pop(job_id, None)

    # -- the executor
    def _run(self, job_id, spec):
        try:
            with self.app.app_context():
                self._execute(job_id, spec)
        except Exception:  # noqa: BLE001 - a pool thread must never die silently
            log.exception("embedded probe job %s failed", job_id)
        finally:
            with self._lock:
                self._in_flight -= 1
                event = self._events.pop(job_id, None)
            if event is not None:
                event.set()

    def _execute(self, job_id, spec):
        if spec.deadline and time.time() >= spec.deadline:
            log.warning("job %s: its deadline passed before it started; the sweep ends it", job_id)
            return
        try:
            job_store.mark_started(job_id, utcnow(), LOCAL)
        except Exception as error:  # noqa: BLE001 - the probe still runs; its result is what matters
            log.warning("job %s: could not mark it started (%s)", job_id, type(error).__name__)
        with metrics.probe_in_flight(spec.type):
            outcome = run_spec(spec, LocalPolicy.from_config(self.app.config))
        stored = self._store(job_id, outcome, spec.deadline)
        self._remember(job_id, Finished(outcome, stored))

    def _remember(self, job_id, finished):
        """Keep the outcome for a caller of ``finished()`` (the synchronous path), for a while."""
        now = finished.at = time.monotonic()
        with self._lock:
            for stale in [j for j, f in self._finished.items() if now - f.at > FINISHED_KEEP_SECONDS]:
                del self._finished[stale]
            self._finished[job_id] = finished

    def _store(self, job_id, outcome, deadline_epoch):
        """store_outcome, retried for PROBE_RESULT_WAIT_SECONDS; then kept by the sweeper. True if stored."""
        config = self.app.config
        wait = min(config["PROBE_RESULT_WAIT_SECONDS"], deadline_epoch - time.time()) if deadline_epoch else \
            config["PROBE_RESULT_WAIT_SECONDS"]
        give_up = time.monotonic() + wait
        pause = STORE_FIRST_PAUSE
        while True:
            try:
                job_store.store_outcome(job_id, outcome, LOCAL)
                return True
            except Exception as error:  # noqa: BLE001
                if not job_store.is_transient(error):
                    log.error("could not store the result of job %s (%s)", job_id, type(error).__name__)
                    self._store_as_failed(job_id)
                    return True
                if time.monotonic() + pause >= give_up:
                    values = job_store.outcome_values(outcome, LOCAL)
                    until = datetime.fromtimestamp(deadline_epoch, UTC) if deadline_epoch else utcnow()
                    job_sweeper.keep_result(self.app, job_id, values, until)
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def _store_as_failed(self, job_id):
        try:
            job_store.store_outcome(job_id, make_outcome("failed", False, "The probe ran but its result could not "
                                                         "be stored", code="internal_error"), LOCAL)
        except Exception:  # noqa: BLE001 - the sweep ends it as timeout
            log.exception("job %s: could not store it as failed either", job_id)


_dispatchers_lock = threading.Lock()


def get_dispatcher(app=None):
    """The app's dispatcher: Celery when CELERY_BROKER_URL is set, else embedded (one per app)."""
    app = app or current_app._get_current_object()
    dispatcher = app.extensions.get("probeops_dispatcher")
    if dispatcher is None:
        with _dispatchers_lock:
            dispatcher = app.extensions.get("probeops_dispatcher")
            if dispatcher is None:
                if app.config.get("CELERY_BROKER_URL"):
                    from app.services.celery_dispatch import CeleryDispatcher

                    dispatcher = CeleryDispatcher(app.config)
                else:
                    dispatcher = EmbeddedDispatcher(app)
                app.extensions["probeops_dispatcher"] = dispatcher
    return dispatcher
