"""A user's probe history, newest first, with filters and pagination links."""
import sqlalchemy as sa
from flask import current_app, url_for

from app.db.models import ProbeJob, User
from app.errors import ApiError
from app.extensions import db

FILTERS = ("type", "target", "success", "since", "until", "measurement_id")


def _conditions(user_id, filters):
    """The WHERE clause: the user (the (user_id, created_at) index's prefix) and the filters given."""
    conditions = [ProbeJob.user_id == user_id]
    if filters.get("type") is not None:
        conditions.append(ProbeJob.probe_type == filters["type"])
    if filters.get("target") is not None:
        conditions.append(ProbeJob.target == filters["target"])
    if filters.get("success") is not None:
        conditions.append(ProbeJob.success.is_(filters["success"]))
    if filters.get("since") is not None:
        conditions.append(ProbeJob.created_at >= filters["since"])
    if filters.get("until") is not None:
        conditions.append(ProbeJob.created_at < filters["until"])
    if filters.get("measurement_id") is not None:
        conditions.append(ProbeJob.measurement_id == filters["measurement_id"])
    return conditions


def page_query(user_id, filters, limit, offset):
    """The SELECT of one page: newest first, walking the (user_id, created_at) index backwards."""
    return (sa.select(ProbeJob).where(*_conditions(user_id, filters))
            .order_by(ProbeJob.created_at.desc(), ProbeJob.id.desc()).limit(limit).offset(offset))


def page(user, limit, offset, filters=None, endpoint="probes.list_history", **url_values):
    """One page of ``user``'s jobs plus the contract's pagination block (links to ``endpoint``).

    Without filters ``total`` comes from the user row's job counter (kept in the same transaction
    as each job insert), so a user with a million jobs costs one index range scan, not a count;
    with filters it is a count over the user's range of the (user_id, created_at) index.
    """
    filters = {name: value for name, value in (filters or {}).items() if value is not None}
    conditions = _conditions(user.id, filters)
    jobs = db.session.scalars(page_query(user.id, filters, limit, offset)).all()
    if filters:
        total = db.session.scalar(sa.select(sa.func.count()).select_from(ProbeJob).where(*conditions))
    else:
        total = db.session.scalar(sa.select(User.probe_job_count).where(User.id == user.id)) or 0
    kept = {**url_values, **{name: _query_value(value) for name, value in filters.items()}}
    nxt = offset + limit if offset + limit < total else None
    prev = max(0, offset - limit) if offset > 0 else None
    return {"jobs": jobs, "pagination": {
        "total": total, "limit": limit, "offset": offset,
        "next": _link(endpoint, limit, nxt, kept) if nxt is not None else None,
        "previous": _link(endpoint, limit, prev, kept) if prev is not None else None,
    }}


def _query_value(value):
    """A filter as it is written in a query string (booleans lower-case, times ISO 8601)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.isoformat() if hasattr(value, "isoformat") else value


def _link(endpoint, limit, offset, kept):
    """PUBLIC_BASE_URL + path with the same filters, or the path alone: never the client's Host or X-Forwarded-*."""
    path = url_for(endpoint, limit=limit, offset=offset, **kept)
    return current_app.config["PUBLIC_BASE_URL"] + path


def get_job(user, job_id):
    """The caller's job or 404 (another user's job is a 404 too)."""
    job = db.session.scalars(sa.select(ProbeJob).where(ProbeJob.id == job_id, ProbeJob.user_id == user.id)).first()
    if job is None:
        raise ApiError(404, f"Probe job {job_id} not found")
    return job
