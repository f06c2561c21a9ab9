"""The life of a ProbeJob: reserve (quota + concurrency, atomically), run, complete.

The row is committed as ``running`` before the probe starts and completed after, so a
crash loses nothing; ``mark_stale_jobs`` (run by start.sh before the workers start) marks
the rows a crash left running as failed.
"""
import json
import logging
import threading
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from app.db.models import ProbeJob, User
from app.errors import ApiError
from app.extensions import db
from app.probes.results import ProbeResult
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
        job = ProbeJob(user_id=user.id, probe_type=probe_type, target=target, address=address,
                       parameters=json.dumps(parameters, separators=(",", ":"), sort_keys=True),
                       status="running", created_at=now)
        session.add(job)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    usage.day_used += 1
    usage.month_used += 1
    return job, usage


def _check_concurrency(user, now):
    cap = current_app.config["TIER_CONCURRENT_PROBES"].get(user.subscription_tier, 1)
    fresh = now - timedelta(seconds=current_app.config["PROBE_STALE_SECONDS"])
    running = db.session.scalar(
        sa.select(sa.func.count()).select_from(ProbeJob)
        .where(ProbeJob.user_id == user.id, ProbeJob.status == "running", ProbeJob.created_at >= fresh)
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


def complete_job(job, result):
    """Store the probe's outcome on the job and commit.

    If that fails, the job is still closed (as failed), so no row stays ``running``.
    """
    job.status = "completed" if result.success else "failed"
    job.success = result.success
    job.result = _storable(result.text)
    job.data = _storable(result.data)
    job.completed_at = utcnow()
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("could not store the result of job %s", job.id)
        db.session.execute(sa.update(ProbeJob).where(ProbeJob.id == job.id).values(
            status="failed", success=False, completed_at=utcnow(),
            result="The probe ran but its result could not be stored"))
        db.session.commit()
        raise


def run_probe(user, probe_type, target, parameters, engine, address=None):
    """Reserve a job, run ``engine()`` (returns a ProbeResult), store the outcome.

    A crash inside the engine stores the job as failed before the 500 goes out.
    """
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
    """Mark every job still ``running`` as failed (call only when no worker is running)."""
    count = db.session.execute(
        sa.update(ProbeJob).where(ProbeJob.status == "running").values(
            status="failed", success=False, completed_at=utcnow(),
            result="The server stopped before this probe finished")
    ).rowcount
    db.session.commit()
    return count
