"""The life of a ProbeJob: reserve (quota + concurrency, atomically), run, complete.

The row is committed as ``running``, with its deadline, before the probe starts and completed
after. A result the database cannot take right now is kept by the worker and stored when the
database is back (``job_sweeper``); a job nobody completes (a killed worker) is ended as failed
once its deadline passes, by the sweep of any running worker.
"""
import json
import logging
import threading
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm.attributes import set_committed_value

from app.db.models import ProbeJob, User
from app.errors import ApiError
from app.extensions import db
from app.probes.results import ProbeResult
from app.services import job_store, job_sweeper
from app.services.job_deadlines import job_deadline
from app.services.quotas import usage_for
from app.utils.clock import utcnow

log = logging.getLogger("probeops")

_slots_lock = threading.Lock()
_slots = {"running": 0}


class _WorkerSlot:
    """A per-process cap on probes in flight, so one worker never drowns in probes."""

    def __enter__(self):
        limit = current_app.config["PROBE_MAX_CONCURRENT_PER_WORKER"]
        with _slots_lock:
            if _slots["running"] >= limit:
                raise ApiError(503, "The server is running as many probes as it can; retry shortly",
                               {"Retry-After": "5"}, code="server_busy")
            _slots["running"] += 1
        return self

    def __exit__(self, *exc):
        with _slots_lock:
            _slots["running"] -= 1


def _quota_error(usage):
    period = usage.exhausted
    limit = usage.month_limit if period == "month" else usage.day_limit
    retry = max(1, usage.reset - int(utcnow().timestamp()))
    headers = {**usage.headers(), "Retry-After": str(retry)}
    reset = datetime.fromtimestamp(usage.reset, UTC).isoformat()
    label = "Daily" if period == "day" else "Monthly"
    return ApiError(429, f"{label} probe quota of {limit} reached; it resets at {reset}", headers,
                    code="quota_exceeded")


def reserve_job(user, probe_type, target, parameters, address=None):
    """Check quota and concurrency and insert the ``running`` job, in one locked transaction.

    Returns ``(job, usage)`` with usage counted after this job; raises ApiError(429).
    """
    now = utcnow()
    session = db.session
    try:
        # The lock: a write to the user's row serialises this user's reservations.
        session.execute(sa.update(User).where(User.id == user.id)
                        .values(last_probe_at=now, probe_job_count=User.probe_job_count + 1))
        usage = usage_for(user, now)
        if usage.exhausted:
            raise _quota_error(usage)
        _check_concurrency(user, now)
        deadline = job_deadline(probe_type, parameters, current_app.config, now)
        job = ProbeJob(user_id=user.id, probe_type=probe_type, target=target, address=address,
                       parameters=json.dumps(parameters, separators=(",", ":"), sort_keys=True),
                       status="running", created_at=now, deadline_at=deadline)
        session.add(job)
        session.flush()
        job_id = job.id
        session.commit()
    except BaseException:
        session.rollback()
        raise
    # Known without asking the database again: completing the job must not need it.
    set_committed_value(job, "id", job_id)
    set_committed_value(job, "deadline_at", deadline)
    usage.day_used += 1
    usage.month_used += 1
    return job, usage


def _check_concurrency(user, now):
    cap = current_app.config["TIER_CONCURRENT_PROBES"].get(user.subscription_tier, 1)
    # Overdue rows are not probes in flight (a killed worker's, not yet swept): they don't count.
    running = db.session.scalar(
        sa.select(sa.func.count()).select_from(ProbeJob)
        .where(ProbeJob.user_id == user.id, ProbeJob.status == "running", ProbeJob.deadline_at > now)
    )
    if running >= cap:
        raise ApiError(429, f"You already have {running} probes running, the most your "
                            f"{user.subscription_tier} tier allows at once; retry when one finishes",
                       {"Retry-After": "1"}, code="concurrency_limit")


def _storable(value):
    """Remote servers can put NUL characters in their answers; PostgreSQL text cannot hold them."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


def _completion(result):
    return {"status": "completed" if result.success else "failed", "success": result.success,
            "result": _storable(result.text), "data": _storable(result.data), "completed_at": utcnow()}


def complete_job(job, result):
    """Store the probe's outcome on the job, retrying for a short while if the database is away.

    If it is still away after ``PROBE_RESULT_WAIT_SECONDS`` (or the deadline), this worker keeps
    the outcome and stores it when the database is back, and the caller gets 503 with
    Retry-After. A write that fails for any other reason still closes the job (as failed).
    """
    job_id, deadline = job.id, job.deadline_at
    values = _completion(result)
    config = current_app.config
    wait = min(config["PROBE_RESULT_WAIT_SECONDS"], (deadline - utcnow()).total_seconds())
    give_up = time.monotonic() + wait
    pause = 0.05
    while True:
        try:
            job_store.store_completion(job_id, values)
            break
        except Exception as error:
            if not job_store.is_transient(error):
                _store_as_failed(job_id, error)
                raise
            if time.monotonic() + pause >= give_up:
                job_sweeper.keep_result(current_app._get_current_object(), job_id, values, deadline)
                retry = max(1, int(config["PROBE_RESULT_WAIT_SECONDS"]))
                raise ApiError(503, f"The probe finished but the database is unavailable; its result is kept and "
                                    f"will be stored in job {job_id} when the database is back "
                                    f"(GET /api/probes/history/{job_id})",
                               {"Retry-After": str(retry)}, code="service_unavailable") from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
    for name, value in values.items():
        set_committed_value(job, name, value)


def _store_as_failed(job_id, error):
    log.error("could not store the result of job %s (%s)", job_id, type(error).__name__)
    job_store.store_completion(job_id, {"status": "failed", "success": False, "completed_at": utcnow(),
                                        "result": "The probe ran but its result could not be stored"})


def run_probe(user, probe_type, target, parameters, engine, address=None):
    """Reserve a job, run ``engine()`` (returns a ProbeResult), store the outcome.

    A crash inside the engine stores the job as failed before the 500 goes out.
    """
    job_sweeper.ensure_started(current_app._get_current_object())
    with _WorkerSlot():
        job, usage = reserve_job(user, probe_type, target, parameters, address)
        try:
            result = engine()
        except Exception:
            log.exception("probe %s job %s crashed", probe_type, job.id)
            complete_job(job, ProbeResult(False, "The probe failed with an internal error", {}))
            raise
    complete_job(job, result)
    return job, result, usage


def mark_stale_jobs():
    """End running jobs past their deadline as failed (start.sh; safe while other instances run)."""
    return job_store.end_overdue_jobs(utcnow())
