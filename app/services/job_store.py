"""The writes that move a probe job along (queued -> running -> completed | failed | timeout).

Each is one short transaction on a connection of its own (not the request's session), so the
embedded executor, the central Celery worker, the background writer and the sweep can call them
in any thread, and a failed attempt leaves nothing to roll back. ``store_outcome`` is the one
function that writes a probe's result, wherever it ran.
"""
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from app import metrics
from app.db import faults
from app.db.models import JOB_ACTIVE, Measurement, ProbeJob
from app.extensions import db
from app.utils.clock import utcnow

OVERDUE_MESSAGE = "The probe did not finish within its deadline"
ENDED = ("completed", "failed", "timeout")
ACTIVE = JOB_ACTIVE

_jobs = ProbeJob.__table__
_measurements = Measurement.__table__


def is_transient(error):
    """True for a database that is away, stopped, locked or read-only: worth writing again later.

    The same judgement as the API's 503s (``app.db.faults``), including the raw DBAPI error a
    worker raises while it fails fast on a known outage.
    """
    if faults.is_failing_fast(error) or faults.database_failure(error) is not None:
        return True
    if isinstance(error, sa_exc.DisconnectionError | sa_exc.InterfaceError):
        return True
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


def _storable(value):
    """Remote servers can put NUL characters in their answers; PostgreSQL text cannot hold them."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


def job_status(outcome):
    """The job row's status for an OUTCOME: completed when the probe ran and succeeded, else failed."""
    return "completed" if outcome.get("status") == "finished" and outcome.get("success") else "failed"


def outcome_values(outcome, location=None, now=None):
    """The row values that record ``outcome`` (as run at ``location``)."""
    now = now or utcnow()
    values = {"status": job_status(outcome), "success": bool(outcome.get("success")),
              "result": _storable(outcome.get("result") or ""), "data": _storable(outcome.get("data") or {}),
              "error_code": outcome.get("code"), "completed_at": now}
    if outcome.get("address"):
        values["address"] = str(outcome["address"])[:64]
    if location:
        values["location"] = str(location)[:64]
    return values


def _endable():
    """Rows a result may still be written on: in flight, or ended by the sweep as overdue.

    Over an overdue row too: the probe did finish (late, e.g. its write queued behind a busy
    database), and its real outcome says more than "did not finish".
    """
    return sa.or_(_jobs.c.status.in_(JOB_ACTIVE), _jobs.c.status == "timeout",
                  sa.and_(_jobs.c.status == "failed", _jobs.c.result == OVERDUE_MESSAGE))


def _lock_measurements(conn, measurement_ids, now):
    """Bump ``updated_at`` first: the row lock it takes serialises the results of one measurement.

    Without it, two last results stored at once (READ COMMITTED) each still see the other in
    flight, and the measurement would stay in-progress for ever. Locked in id order (one
    statement), so locks never cross.
    """
    ids = sorted({m for m in measurement_ids if m})
    if ids:
        ordered = sa.select(_measurements.c.id).where(_measurements.c.id.in_(ids)).order_by(_measurements.c.id)
        conn.execute(sa.update(_measurements).where(_measurements.c.id.in_(ordered.with_for_update().scalar_subquery()))
                     .values(updated_at=now))
    return ids


def _finish_measurements(conn, measurement_ids):
    """``finished`` once none of their jobs is in flight (run after the jobs' update, under the lock)."""
    if not measurement_ids:
        return
    in_flight = sa.exists().where(_jobs.c.measurement_id == _measurements.c.id, _jobs.c.status.in_(JOB_ACTIVE))
    conn.execute(sa.update(_measurements).where(_measurements.c.id.in_(list(measurement_ids)), ~in_flight)
                 .values(status="finished"))


def _write(job_id, values, now):
    with db.engine.begin() as conn:
        job = conn.execute(sa.select(_jobs.c.measurement_id, _jobs.c.probe_type, _jobs.c.status, _jobs.c.location)
                           .where(_jobs.c.id == job_id)).first()
        locked = _lock_measurements(conn, [job.measurement_id] if job is not None else [], now)
        written = conn.execute(sa.update(_jobs).where(_jobs.c.id == job_id, _endable()).values(**values)).rowcount
        if written:
            _finish_measurements(conn, locked)
    if written and job.status in JOB_ACTIVE:  # a late result over a timeout was counted as the timeout
        metrics.probe_ended(job.probe_type, metrics.job_outcome(values), values.get("location") or job.location)
    return written == 1


def store_outcome(job_id, outcome, location=None):
    """Write a probe's OUTCOME (app.probes.execute) on its job row; True if written.

    Also ends the job's measurement when this was its last result in flight.
    """
    now = utcnow()
    values = outcome_values(outcome, location, now)
    values["started_at"] = sa.func.coalesce(_jobs.c.started_at, _jobs.c.created_at)
    return _write(job_id, values, now)


def store_completion(job_id, values):
    """Write already-built row values on the job (the kept results of an outage); True if written."""
    return _write(job_id, values, utcnow())


def store_many(reports):
    """Write a batch of agents' reports in ONE transaction; returns a list of True/False (written).

    Each report is a dict: ``job_id``, ``started_at`` (aware datetime or None), ``location``, and
    ``outcome`` (None for a "started" notice: queued -> running). The central worker drains what
    is queued into one batch, so 500 results in flight cost a few dozen transactions, not 1,000.
    Per job the same rules as ``mark_started`` / ``store_outcome``: a result is written over an
    in-flight or overdue row and keeps the first known start; a notice only moves a queued row.
    A job's notice and result in the same batch give the same row as in either order.
    """
    if not reports:
        return []
    now = utcnow()
    ids = sorted({r["job_id"] for r in reports})
    with db.engine.begin() as conn:
        jobs = {row.id: row for row in conn.execute(
            sa.select(_jobs.c.id, _jobs.c.measurement_id, _jobs.c.probe_type, _jobs.c.status, _jobs.c.location)
            .where(_jobs.c.id.in_(ids)))}
        locked = _lock_measurements(conn, [jobs[r["job_id"]].measurement_id for r in reports
                                           if r.get("outcome") is not None and r["job_id"] in jobs], now)
        if conn.dialect.name == "postgresql":
            written = _apply_postgresql(conn, reports, now)
        else:
            written = [_apply_one(conn, report, now) for report in reports]
        ended = [(jobs[r["job_id"]], outcome_values(r["outcome"], r.get("location"), now))
                 for r, done in zip(reports, written, strict=True)
                 if done and r.get("outcome") is not None and r["job_id"] in jobs]
        if ended:
            _finish_measurements(conn, locked)
    for job, values in ended:
        if job.status in JOB_ACTIVE:  # as in _write: a late result over a timeout was counted as the timeout
            metrics.probe_ended(job.probe_type, metrics.job_outcome(values), values.get("location") or job.location)
    return written


def _location(report):
    return str(report["location"])[:64] if report.get("location") else None


def _apply_one(conn, report, now):
    """One report as its own UPDATE (SQLite, where a statement costs no round trip)."""
    job_id, location = report["job_id"], _location(report)
    if report.get("outcome") is None:
        values = {"status": "running", "started_at": report["started_at"]}
        if location:
            values["location"] = location
        return conn.execute(sa.update(_jobs).where(_jobs.c.id == job_id, _jobs.c.status == "queued")
                            .values(**values)).rowcount == 1
    values = outcome_values(report["outcome"], location, now)
    starts = [_jobs.c.started_at, report["started_at"]] if report.get("started_at") else [_jobs.c.started_at]
    values["started_at"] = sa.func.coalesce(*starts, _jobs.c.created_at)
    return conn.execute(sa.update(_jobs).where(_jobs.c.id == job_id, _endable()).values(**values)).rowcount == 1


_PG_NOTICES = sa.text("""
    UPDATE probe_jobs AS j SET status = 'running', started_at = v.started_at,
           location = COALESCE(v.location, j.location)
      FROM json_to_recordset(CAST(:rows AS json)) AS v(id bigint, started_at timestamptz, location text)
     WHERE j.id = v.id AND j.status = 'queued'
    RETURNING j.id""")
_PG_RESULTS = sa.text("""
    UPDATE probe_jobs AS j SET status = v.status, success = v.success, result = v.result, data = v.data,
           error_code = v.error_code, completed_at = :now, address = COALESCE(v.address, j.address),
           location = COALESCE(v.location, j.location), started_at = COALESCE(j.started_at, v.started_at, j.created_at)
      FROM json_to_recordset(CAST(:rows AS json)) AS v(id bigint, status text, success boolean, result text,
                                                       data json, error_code text, address text, location text,
                                                       started_at timestamptz)
     WHERE j.id = v.id
       AND (j.status IN ('queued', 'running', 'timeout') OR (j.status = 'failed' AND j.result = :overdue))
    RETURNING j.id""")


def _apply_postgresql(conn, reports, now):
    """Every report of the batch in two statements (the notices, then the results), not one each:
    the central worker's writes are round trips to a database on a busy host."""
    import json

    def iso(moment):
        return moment.isoformat() if moment is not None else None

    notices = [{"id": r["job_id"], "started_at": iso(r.get("started_at")), "location": _location(r)}
               for r in reports if r.get("outcome") is None]
    results = []
    for r in reports:
        if r.get("outcome") is not None:
            values = outcome_values(r["outcome"], _location(r), now)
            results.append({"id": r["job_id"], "status": values["status"], "success": values["success"],
                            "result": values["result"], "data": values["data"], "error_code": values["error_code"],
                            "address": values.get("address"), "location": values.get("location"),
                            "started_at": iso(r.get("started_at"))})
    started = ended = set()
    if notices:
        started = set(conn.execute(_PG_NOTICES, {"rows": json.dumps(notices)}).scalars())
    if results:
        ended = set(conn.execute(_PG_RESULTS, {"rows": json.dumps(results), "now": now,
                                               "overdue": OVERDUE_MESSAGE}).scalars())
    return [r["job_id"] in (started if r.get("outcome") is None else ended) for r in reports]


def mark_started(job_id, started_at, location=None):
    """queued -> running, with when (and where) it started; True if the row was queued."""
    values = {"status": "running", "started_at": started_at}
    if location:
        values["location"] = str(location)[:64]
    with db.engine.begin() as conn:
        return conn.execute(sa.update(_jobs).where(_jobs.c.id == job_id, _jobs.c.status == "queued")
                            .values(**values)).rowcount == 1


def delete_job(job_id):
    """Remove a job row (a synchronous probe whose target the executor refused: no job, as the contract says)."""
    from app.db.models import User

    with db.engine.begin() as conn:
        user_id = conn.execute(sa.select(_jobs.c.user_id).where(_jobs.c.id == job_id)).scalar()
        if conn.execute(sa.delete(_jobs).where(_jobs.c.id == job_id)).rowcount and user_id is not None:
            users = User.__table__
            conn.execute(sa.update(users).where(users.c.id == user_id)
                         .values(probe_job_count=users.c.probe_job_count - 1))


def end_overdue_jobs(now):
    """End every queued or running job whose deadline has passed as ``timeout``; returns how many.

    A read first, so that a sweep that finds nothing (nearly always) takes no write lock.
    """
    overdue = sa.and_(_jobs.c.status.in_(JOB_ACTIVE), _jobs.c.deadline_at < now)
    with db.engine.connect() as conn:
        found = conn.execute(sa.select(_jobs.c.id).where(overdue).limit(1)).first()
    if found is None:
        return 0
    with db.engine.begin() as conn:
        jobs = conn.execute(sa.select(_jobs.c.measurement_id, _jobs.c.probe_type, _jobs.c.location)
                            .where(overdue)).all()
        locked = _lock_measurements(conn, [job.measurement_id for job in jobs], now)
        ended = conn.execute(sa.update(_jobs).where(overdue).values(
            status="timeout", success=False, completed_at=now, result=OVERDUE_MESSAGE)).rowcount
        _finish_measurements(conn, locked)
    for job in jobs:
        metrics.probe_ended(job.probe_type, "timeout", job.location)
    return ended


def job_state(job_id):
    """The job's status, or None when the row is gone (one cheap read)."""
    with db.engine.connect() as conn:
        return conn.execute(sa.select(_jobs.c.status).where(_jobs.c.id == job_id)).scalar()
