"""The caller's probe history, newest first."""
import sqlalchemy as sa
from flask import current_app, url_for

from app.db.models import ProbeJob, User
from app.errors import ApiError
from app.extensions import db


def page(user, limit, offset):
    """One page of jobs plus the contract's pagination block.

    ``total`` comes from the user row's job counter (kept in the same transaction as each
    job insert), so a user with a million jobs costs one index range scan, not a count.
    """
    jobs = db.session.scalars(
        sa.select(ProbeJob).where(ProbeJob.user_id == user.id)
        .order_by(ProbeJob.created_at.desc(), ProbeJob.id.desc()).limit(limit).offset(offset)
    ).all()
    total = db.session.scalar(sa.select(User.probe_job_count).where(User.id == user.id)) or 0
    nxt = offset + limit if offset + limit < total else None
    prev = max(0, offset - limit) if offset > 0 else None
    return {"jobs": jobs, "pagination": {
        "total": total, "limit": limit, "offset": offset,
        "next": _link(limit, nxt) if nxt is not None else None,
        "previous": _link(limit, prev) if prev is not None else None,
    }}


def _link(limit, offset):
    """PUBLIC_BASE_URL + path, or the path alone: never the client's Host or X-Forwarded-*."""
    path = url_for("probes.list_history", limit=limit, offset=offset)
    return current_app.config["PUBLIC_BASE_URL"] + path


def get_job(user, job_id):
    """The caller's job or 404 (another user's job is a 404 too)."""
    job = db.session.scalars(sa.select(ProbeJob).where(ProbeJob.id == job_id, ProbeJob.user_id == user.id)).first()
    if job is None:
        raise ApiError(404, f"Probe job {job_id} not found")
    return job
