"""The life of a ProbeJob: reserve (quota + concurrency, atomically), dispatch, wait, answer.

Reservation inserts the job rows ``queued``, with their deadline, in one locked transaction
(one row for a synchronous probe, one per location for a measurement). The dispatcher runs them
(embedded: this worker's thread pool; Celery: the agents) and ``job_store.store_outcome`` writes
each result. A job nobody completes (a killed worker, a silent agent) is ended as ``timeout``
once its deadline passes, by the sweep of any running worker.
"""
import json
import logging
import threading
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.attributes import set_committed_value

from app.db.models import JOB_ACTIVE, ProbeJob, User
from app.errors import ApiError
from app.extensions import db
from app.probes.execute import outcome as make_outcome
from app.probes.spec import ProbeSpec, bounds_from_config
from app.services import job_store, job_sweeper
from app.services.dispatch import get_dispatcher
from app.services.job_deadlines import job_deadline
from app.services.quotas import usage_for
from app.utils.clock import utcnow

log = logging.getLogger("probeops")

WAIT_MARGIN_SECONDS = 2.0  # the synchronous caller waits for the deadline plus this
RESERVE_LOCK_WAIT_SECONDS = 2.0  # longest wait for the user's row lock (capped below DB_STATEMENT_TIMEOUT)
LOCK_NOT_AVAILABLE = "55P03"     # PostgreSQL's SQLSTATE for lock_timeout
RESERVE_LOCK_CLASS = 0x50524F42  # "PROB": the advisory lock space of reservations, keyed (class, user id)

_slots_lock = threading.Lock()
_slots = {"running": 0}


class _WorkerSlot:
    """A per-process cap on synchronous probes in flight, so one worker never drowns in probes."""

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


def _quota_error(usage, needed=1):
    period = usage.exhausted
    if period is None:  # not exhausted, but too little left for all of them
        day, month = usage.day_remaining, usage.month_remaining
        period = "month" if month is not None and (day is None or month < day) else "day"
    limit = usage.month_limit if period == "month" else usage.day_limit
    reset_epoch = usage.month_reset if period == "month" else usage.day_reset
    retry = max(1, reset_epoch - int(utcnow().timestamp()))
    headers = {**usage.headers(), "Retry-After": str(retry)}
    reset = datetime.fromtimestamp(reset_epoch, UTC).isoformat()
    label = "Daily" if period == "day" else "Monthly"
    if needed > 1:
        left = usage.month_remaining if period == "month" else usage.day_remaining
        return ApiError(429, f"{label} probe quota of {limit} cannot cover {needed} results ({left} left); "
                             f"it resets at {reset}", headers, code="quota_exceeded")
    return ApiError(429, f"{label} probe quota of {limit} reached; it resets at {reset}", headers,
                    code="quota_exceeded")


def _covers(usage, needed):
    return all(left is None or left >= needed for left in (usage.day_remaining, usage.month_remaining))


def _lock_reservations(session, user, now, needed):
    """Take this user's reservation lock; past RESERVE_LOCK_WAIT_SECONDS, 429 (never a 503).

    PostgreSQL: a transaction-scoped advisory lock keyed on the user, waited for under
    ``lock_timeout``. It is ONE lock wait in a first-come queue, so ``lock_timeout`` bounds the
    whole wait (a row lock would not do: each holder's commit starts a new wait on the row's
    next version, and only the statement timeout - a 503 - bounded the sum). The bound stays
    below DB_STATEMENT_TIMEOUT so that it, not the statement timeout, ends a long wait. Then the
    user's row is written (uncontended among reservations); on SQLite that write takes the
    database's write lock, which is the serialisation there.
    """
    if session.get_bind().dialect.name == "postgresql":
        statement = current_app.config["DB_STATEMENT_TIMEOUT"]
        wait = min(RESERVE_LOCK_WAIT_SECONDS, 0.8 * statement) if statement > 0 else RESERVE_LOCK_WAIT_SECONDS
        session.execute(sa.text(f"SET LOCAL lock_timeout = {max(1, int(wait * 1000))}"))
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(RESERVE_LOCK_CLASS, user.id)))
    session.execute(sa.update(User).where(User.id == user.id)
                    .values(last_probe_at=now, probe_job_count=User.probe_job_count + needed))


def _is_lock_wait(exc):
    return getattr(getattr(exc, "orig", None), "pgcode", None) == LOCK_NOT_AVAILABLE


def _busy_error():
    return ApiError(429, "Too many of your probes are being created at this moment; retry in a second",
                    {"Retry-After": "1"}, code="concurrency_limit")


def reserve_jobs(user, probe_type, target, parameters, locations, *, address=None, measurement=None,
                 check_concurrency=True):
    """Check quota (and the per-user cap) and insert one ``queued`` job per location, in one locked transaction.

    ``measurement`` (a new Measurement row) is inserted in the same transaction. Returns
    ``(jobs, usage)`` with usage counted after these jobs; raises ApiError(429) with nothing inserted.

    The rows are inserted first and the user's reservation lock is taken last, so it is held for
    a few short statements (lock, user row, count, commit), not for the inserts: one user's
    parallel creations queue on it briefly, and a wait past its bound is 429 concurrency_limit.
    The count runs after the lock is taken, in a fresh snapshot that sees every reservation
    committed before, plus this one's own rows: exact under concurrency.
    """
    now = utcnow()
    session = db.session
    needed = len(locations)
    try:
        deadline = job_deadline(probe_type, parameters, current_app.config, now)
        if measurement is not None:
            session.add(measurement)
            session.flush()
        encoded = json.dumps(parameters, separators=(",", ":"), sort_keys=True)
        jobs = [ProbeJob(user_id=user.id, probe_type=probe_type, target=target, address=address, parameters=encoded,
                         status="queued", created_at=now, deadline_at=deadline, location=location,
                         measurement_id=measurement.id if measurement is not None else None)
                for location in locations]
        session.add_all(jobs)
        session.flush()
        ids = [job.id for job in jobs]
        _lock_reservations(session, user, now, needed)  # this user's reservations, one at a time
        usage = usage_for(user, now)  # counts this reservation's own rows too
        usage.day_used -= needed
        usage.month_used -= needed
        if usage.exhausted or not _covers(usage, needed):
            raise _quota_error(usage, needed)
        if check_concurrency:
            _check_concurrency(user, now, exclude=ids)
        session.commit()
    except sa_exc.OperationalError as exc:
        session.rollback()
        if _is_lock_wait(exc):
            raise _busy_error() from None
        raise
    except BaseException:
        session.rollback()
        raise
    # Known without asking the database again: completing the job must not need it.
    for job, job_id in zip(jobs, ids, strict=True):
        set_committed_value(job, "id", job_id)
        set_committed_value(job, "deadline_at", deadline)
        set_committed_value(job, "created_at", now)
    usage.day_used += needed
    usage.month_used += needed
    return jobs, usage


def reserve_job(user, probe_type, target, parameters, address=None, location=None):
    """One synchronous job: ``(job, usage)`` (see ``reserve_jobs``)."""
    jobs, usage = reserve_jobs(user, probe_type, target, parameters, [location], address=address)
    return jobs[0], usage


def concurrency_cap(user):
    """How many synchronous probes the user's tier may have running at once."""
    return current_app.config["TIER_CONCURRENT_PROBES"].get(user.subscription_tier, 1)


def running_probes(user, now=None, exclude=()):
    """The user's synchronous probes in flight now, as the per-user cap counts them (not ``exclude``: job ids)."""
    # Overdue rows are not probes in flight (a killed worker's, not yet swept): they don't count;
    # nor do a measurement's results, which queue rather than hold a caller.
    query = (sa.select(sa.func.count()).select_from(ProbeJob)
             .where(ProbeJob.user_id == user.id, ProbeJob.status.in_(JOB_ACTIVE),
                    ProbeJob.deadline_at > (now or utcnow()), ProbeJob.measurement_id.is_(None)))
    if exclude:
        query = query.where(ProbeJob.id.not_in(list(exclude)))
    return db.session.scalar(query)


def _check_concurrency(user, now, exclude=()):
    cap = concurrency_cap(user)
    running = running_probes(user, now, exclude)
    if running >= cap:
        raise ApiError(429, f"You already have {running} probes running, the most your "
                            f"{user.subscription_tier} tier allows at once; retry when one finishes",
                       {"Retry-After": "1"}, code="concurrency_limit")


def spec_for(job, options):
    """The ProbeSpec of a reserved job: its options, the API's engine bounds, its deadline."""
    return ProbeSpec(job.probe_type, job.target, dict(options), bounds_from_config(current_app.config),
                     job.deadline_at.timestamp())


def complete_job(job, result):
    """Store a ProbeResult on the job directly (tests and tools; the probes go through store_outcome)."""
    outcome = make_outcome("finished", result.success, result.text, result.data)
    job_store.store_outcome(job.id, outcome)
    values = job_store.outcome_values(outcome)
    for name in ("status", "success", "result", "data", "completed_at"):
        set_committed_value(job, name, values[name])


def _kept_error(job_id):
    retry = max(1, int(current_app.config["PROBE_RESULT_WAIT_SECONDS"]))
    return ApiError(503, f"The probe finished but the database is unavailable; its result is kept and "
                         f"will be stored in job {job_id} when the database is back "
                         f"(GET /api/probes/history/{job_id})",
                    {"Retry-After": str(retry)}, code="service_unavailable")


def _read_job(job_id):
    """The job row as it is now (a fresh read, outside the request's session)."""
    db.session.expire_all()
    return db.session.get(ProbeJob, job_id)


def _outcome_of(dispatcher, job):
    """The job's outcome after waiting: this worker's own record, else the row."""
    finished = dispatcher.finished(job.id) if hasattr(dispatcher, "finished") else None
    if finished is not None:
        if not finished.stored:
            raise _kept_error(job.id)
        return finished.outcome
    row = _read_job(job.id)
    if row is None:
        raise ApiError(500, "The probe's job disappeared", code="internal_error")
    if row.status in JOB_ACTIVE:
        return make_outcome("failed", False, job_store.OVERDUE_MESSAGE)
    code = row.error_code
    return {"status": "failed" if code else "finished", "success": bool(row.success), "result": row.result or "",
            "data": row.data or {}, "code": code, "address": row.address}


def run_probe(user, probe_type, target, options, address=None):
    """Reserve a job, dispatch it to the default location, wait for it; ``(job, result, usage)``.

    ``result`` is a ProbeResult-like view of the outcome. A target the executor refused after
    resolving it is a 403 and no job; an engine crash a 500 with the job stored as failed.
    """
    from app.probes.results import ProbeResult

    job_sweeper.ensure_started(current_app._get_current_object())
    dispatcher = get_dispatcher()
    with _WorkerSlot():
        location = dispatcher.default_location()
        if location is None:
            raise ApiError(503, "No probe agent is online; try again shortly", {"Retry-After": "5"},
                           code="service_unavailable")
        job, usage = reserve_job(user, probe_type, target, options, address, location["name"])
        try:
            dispatcher.submit(job.id, spec_for(job, options), location["name"])
        except BaseException:
            job_store.delete_job(job.id)  # nothing started: no job, no quota used
            raise
        wait = (job.deadline_at - utcnow()).total_seconds() + WAIT_MARGIN_SECONDS
        dispatcher.wait(job.id, max(0.0, wait))
        outcome = _outcome_of(dispatcher, job)
    if outcome.get("code") in ("target_refused", "invalid_target"):
        job_store.delete_job(job.id)
        status, code = (403, "target_refused") if outcome["code"] == "target_refused" else (400, "validation_error")
        raise ApiError(status, outcome["result"], code=code)
    if outcome.get("code") == "internal_error":
        raise ApiError(500, "The probe failed with an internal error", code="internal_error")
    row = _read_job(job.id)
    if row is not None:
        job = row
    else:
        set_committed_value(job, "completed_at", utcnow())
    return job, ProbeResult(bool(outcome["success"]), outcome["result"], outcome.get("data") or {}), usage


def mark_stale_jobs():
    """End queued or running jobs past their deadline as timeout (start.sh; safe while other instances run)."""
    return job_store.end_overdue_jobs(utcnow())
