"""The two writes that end a probe job, each one short transaction of its own.

They run on a connection of their own (not the request's session), so the background writer
and the sweep can call them in any thread, and a failed attempt leaves nothing to roll back.
"""
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from app.db import faults
from app.db.models import ProbeJob
from app.extensions import db

OVERDUE_MESSAGE = "The probe did not finish within its deadline"

_jobs = ProbeJob.__table__


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


def store_completion(job_id, values):
    """Write a finished probe's outcome on its row; True if written.

    Also over a row the sweep ended as overdue: the probe did finish (late, e.g. its write queued
    behind a busy database), and its real outcome says more than "did not finish".
    """
    endable = sa.or_(_jobs.c.status == "running",
                     sa.and_(_jobs.c.status == "failed", _jobs.c.result == OVERDUE_MESSAGE))
    with db.engine.begin() as conn:
        written = conn.execute(sa.update(_jobs).where(_jobs.c.id == job_id, endable).values(**values)).rowcount
    return written == 1


def end_overdue_jobs(now):
    """End every running job whose deadline has passed as failed; returns how many.

    A read first, so that a sweep that finds nothing (nearly always) takes no write lock.
    """
    overdue = sa.and_(_jobs.c.status == "running", _jobs.c.deadline_at < now)
    with db.engine.connect() as conn:
        found = conn.execute(sa.select(_jobs.c.id).where(overdue).limit(1)).first()
    if found is None:
        return 0
    with db.engine.begin() as conn:
        return conn.execute(sa.update(_jobs).where(overdue).values(
            status="failed", success=False, completed_at=now, result=OVERDUE_MESSAGE)).rowcount
