"""One daemon thread per worker process: stores results kept during an outage, ends overdue jobs.

- Results: a probe that finished while the database was away hands its outcome here; the
  thread writes it as soon as the database answers again, until the job's deadline.
- Sweep: every ``JOB_SWEEP_SECONDS`` it ends queued or running jobs past their deadline as
  ``timeout`` (a worker killed mid-probe, an agent that never answered, a result that could not be
  written in time). Every worker sweeps;
  the sweep is one indexed read that finds nothing nearly always, and an idempotent update.
- Memory: every ``MEMORY_TRIM_SECONDS`` it hands freed heap pages back to the OS (memory_trim).

Started lazily (first probe, or Gunicorn's post_fork) and again in a forked child, whose
parent's threads do not exist in it.
"""
import logging
import os
import threading
import time
from dataclasses import dataclass

from app.db import faults
from app.services import job_store, memory_trim
from app.utils.clock import utcnow

log = logging.getLogger("probeops")

RETRY_SECONDS = 0.5  # between two attempts to store a kept result


@dataclass
class KeptResult:
    values: dict
    deadline: object  # aware UTC datetime


class _Sweeper:
    def __init__(self, app):
        self.app = app
        self.period = float(app.config["JOB_SWEEP_SECONDS"])
        self.trim_period = float(app.config["MEMORY_TRIM_SECONDS"])
        self.kept = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread = None
        self.failing = False

    def ensure_running(self):
        with self.lock:
            self._start_locked()

    def keep(self, job_id, values, deadline):
        with self.lock:
            self.kept[job_id] = KeptResult(values, deadline)
            self._start_locked()
        self.wake.set()

    def _start_locked(self):
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="probeops-job-sweeper", daemon=True)
            self.thread.start()

    def _run(self):
        next_sweep = time.monotonic()
        next_trim = time.monotonic() + self.trim_period
        while True:
            with self.app.app_context():
                if self.kept:
                    self._store_kept()
                if self.period > 0 and time.monotonic() >= next_sweep:
                    self._sweep()
                    next_sweep = time.monotonic() + self.period
            if self.trim_period > 0 and time.monotonic() >= next_trim:
                memory_trim.trim()
                next_trim = time.monotonic() + self.trim_period
            with self.lock:
                if not self.kept and self.period <= 0:
                    self.thread = None  # nothing to do: a later keep() starts a new thread
                    return
                due = min(next_sweep, next_trim) if self.trim_period > 0 else next_sweep
                wait = RETRY_SECONDS if self.kept else max(0.0, due - time.monotonic())
            self.wake.wait(wait)
            self.wake.clear()

    def _store_kept(self):
        with self.lock:
            items = list(self.kept.items())
        for job_id, kept in items:
            if utcnow() >= kept.deadline:
                log.warning("job %s: the database was away until its deadline; its result was not stored", job_id)
                self._forget(job_id)
                continue
            try:
                job_store.store_completion(job_id, kept.values)
            except Exception as error:  # noqa: BLE001 - any failure: keep it and try again
                self._outage(error)
                return
            self._recovered()
            log.info("job %s: result stored after the database came back", job_id)
            self._forget(job_id)

    def _sweep(self):
        try:
            ended = job_store.end_overdue_jobs(utcnow())
        except Exception as error:  # noqa: BLE001 - the next sweep tries again
            self._outage(error)
            return
        self._recovered()
        if ended:
            log.warning("%d job(s) past their deadline ended as timeout", ended)

    def _forget(self, job_id):
        with self.lock:
            self.kept.pop(job_id, None)

    def _outage(self, error):
        # The process's one outage record (app.db.faults): the outage is logged once, whether the
        # requests or the sweep met it first, and without SQL parameters.
        faults.DATABASE.failed(faults.database_failure(error) or type(error).__name__)
        self.failing = True

    def _recovered(self):
        if self.failing:
            faults.DATABASE.succeeded()
        self.failing = False


_registry_lock = threading.Lock()
_sweepers = {}


def _reset_after_fork():
    global _registry_lock, _sweepers
    _registry_lock = threading.Lock()
    _sweepers = {}


os.register_at_fork(after_in_child=_reset_after_fork)


def _sweeper_for(app):
    sweeper = _sweepers.get(id(app))
    if sweeper is None or sweeper.app is not app:
        with _registry_lock:
            sweeper = _sweepers.get(id(app))
            if sweeper is None or sweeper.app is not app:
                sweeper = _sweepers[id(app)] = _Sweeper(app)
    return sweeper


def ensure_started(app):
    """Start this process's sweep for ``app`` unless it runs (or JOB_SWEEP_SECONDS is 0)."""
    if app.config["JOB_SWEEP_SECONDS"] > 0:
        sweeper = _sweeper_for(app)
        if sweeper.thread is None:
            sweeper.ensure_running()


def keep_result(app, job_id, values, deadline):
    """Hold a finished job's outcome in this process and store it when the database is back."""
    _sweeper_for(app).keep(job_id, values, deadline)


def kept_count(app):
    """How many results this process holds for ``app`` (status figures, tests)."""
    sweeper = _sweepers.get(id(app))
    return len(sweeper.kept) if sweeper is not None and sweeper.app is app else 0
