"""The audit trail: who changed what, when and from where; and the admin's view of it.

``record`` adds the event to the current session, so it commits (or rolls back) with the change it
describes; the caller commits. An event never holds a secret: ``details`` carries names of fields,
old and new roles/tiers/states, reasons — never a password, hash, token or key.
"""
import sqlalchemy as sa
from flask import current_app, g, has_request_context, url_for

from app.db.models import AUDIT_ACTIONS, AuditEvent
from app.extensions import db
from app.utils.clock import utcnow

SECRET_WORDS = ("password", "hash", "token", "secret", "key")


def _request_source():
    """(client address, request id) of the current request, or (None, None) outside one (CLI)."""
    if not has_request_context():
        return None, None
    from flask_limiter.util import get_remote_address

    return get_remote_address(), g.get("request_id")


def _check_details(details):
    """Refuse a details key that names a secret: a programming error, caught by the tests."""
    for name in details or {}:
        if any(word in name.lower() for word in SECRET_WORDS):
            raise ValueError(f"audit details must not carry {name!r}")


def record(action, actor_id, target_type, target_id, details=None):
    """Add one event to the session (committed with the caller's change); returns it."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    _check_details(details)
    ip, request_id = _request_source()
    event = AuditEvent(time=utcnow(), action=action, actor_id=actor_id, target_type=target_type,
                       target_id=target_id, ip=ip, request_id=request_id, details=details or None)
    db.session.add(event)
    return event


def page(limit, offset, action=None, actor_id=None, since=None, until=None):
    """One page of events, newest first, with the pagination block of the history."""
    filters = []
    if action is not None:
        filters.append(AuditEvent.action == action)
    if actor_id is not None:
        filters.append(AuditEvent.actor_id == actor_id)
    if since is not None:
        filters.append(AuditEvent.time >= since)
    if until is not None:
        filters.append(AuditEvent.time < until)
    events = db.session.scalars(
        sa.select(AuditEvent).where(*filters).order_by(AuditEvent.time.desc(), AuditEvent.id.desc())
        .limit(limit).offset(offset)).all()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(*filters))
    query = {"action": action, "actor_id": actor_id, "since": _iso(since), "until": _iso(until)}
    nxt = offset + limit if offset + limit < total else None
    prev = max(0, offset - limit) if offset > 0 else None
    return {"events": events, "pagination": {
        "total": total, "limit": limit, "offset": offset,
        "next": _link(limit, nxt, query) if nxt is not None else None,
        "previous": _link(limit, prev, query) if prev is not None else None,
    }}


def _iso(moment):
    return moment.isoformat() if moment is not None else None


def _link(limit, offset, query):
    """PUBLIC_BASE_URL + path with the same filters, or the path alone (never from the request's Host)."""
    kept = {name: value for name, value in query.items() if value is not None}
    path = url_for("admin.list_audit", limit=limit, offset=offset, **kept)
    return current_app.config["PUBLIC_BASE_URL"] + path
