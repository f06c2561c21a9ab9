"""What an admin does to users: search them, read one, change one, see their jobs and keys, revoke a key."""
import sqlalchemy as sa
from flask import current_app, url_for

from app.db.models import ApiKey, User
from app.errors import ApiError
from app.extensions import db
from app.services import api_keys, audit, history, users

# PATCH applies the fields in this order, each through the same function as its POST endpoint.
CHANGES = (("role", users.set_role), ("is_active", users.set_active), ("subscription_tier", users.set_tier))


def _search_conditions(q=None, tier=None, role=None, is_active=None):
    conditions = []
    if q:
        needle = q.lower()
        conditions.append(sa.or_(sa.func.lower(User.username).contains(needle, autoescape=True),
                                 sa.func.lower(User.email).contains(needle, autoescape=True)))
    if tier is not None:
        conditions.append(User.subscription_tier == tier)
    if role is not None:
        conditions.append(User.role == role)
    if is_active is not None:
        conditions.append(User.is_active.is_(is_active))
    return conditions


def _with_key_counts(rows):
    """Set ``api_key_count`` on each user, in one query for the whole page."""
    ids = [user.id for user in rows]
    counts = dict(db.session.execute(
        sa.select(ApiKey.user_id, sa.func.count()).where(ApiKey.user_id.in_(ids)).group_by(ApiKey.user_id)).all()) \
        if ids else {}
    for user in rows:
        user.api_key_count = counts.get(user.id, 0)
    return rows


def search(limit, offset, endpoint="admin.list_users", **filters):
    """One page of users (oldest first) matching ``q`` (username or email, any case), tier, role, is_active."""
    filters = {name: value for name, value in filters.items() if value is not None}
    conditions = _search_conditions(**filters)
    rows = db.session.scalars(sa.select(User).where(*conditions).order_by(User.id).limit(limit).offset(offset)).all()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(User).where(*conditions))
    kept = {name: ("true" if value else "false") if isinstance(value, bool) else value
            for name, value in filters.items()}
    nxt = offset + limit if offset + limit < total else None
    prev = max(0, offset - limit) if offset > 0 else None
    return {"users": _with_key_counts(rows), "pagination": {
        "total": total, "limit": limit, "offset": offset,
        "next": _link(endpoint, limit, nxt, kept) if nxt is not None else None,
        "previous": _link(endpoint, limit, prev, kept) if prev is not None else None,
    }}


def _link(endpoint, limit, offset, kept):
    """PUBLIC_BASE_URL + path with the same filters (never the request's Host)."""
    return current_app.config["PUBLIC_BASE_URL"] + url_for(endpoint, limit=limit, offset=offset, **kept)


def detail(user_id):
    """The user with ``api_key_count`` and ``probe_job_count``, or 404."""
    return _with_key_counts([users.get_user(user_id)])[0]


def update(admin, user_id, changes):
    """Apply ``role``, ``is_active`` and ``subscription_tier`` as the POST endpoints do (same rules, same
    audit events), after checking every refusal that does not depend on other rows."""
    users.get_user(user_id)  # 404 before anything changes
    if user_id == admin.id and changes.get("role", "admin") != "admin":
        raise ApiError(400, "role: you cannot remove your own admin role", fields={"role": ["Not your own."]})
    if user_id == admin.id and changes.get("is_active", True) is False:
        raise ApiError(400, "is_active: you cannot deactivate your own account",
                       fields={"is_active": ["Not your own."]})
    for field, apply in CHANGES:
        if field in changes:
            apply(admin, user_id, changes[field])
    return detail(user_id)


def jobs_page(user_id, limit, offset, filters):
    """One page of the user's jobs, like their own history."""
    return history.page(users.get_user(user_id), limit, offset, filters, endpoint="admin.list_user_jobs",
                        user_id=user_id)


def keys_of(user_id):
    """The user's API keys (masked when serialised)."""
    return api_keys.list_keys(users.get_user(user_id))


def _any_key(key_id):
    key = db.session.get(ApiKey, key_id)
    if key is None:
        raise ApiError(404, f"API key {key_id} not found")
    return key


def revoke_key(admin, key_id):
    """Deactivate any user's key (kept, listed as inactive); audit ``apikey.update`` with the admin as actor."""
    key = _any_key(key_id)
    key.is_active = False
    audit.record("apikey.update", admin.id, "apikey", key.id,
                 {"fields": ["is_active"], "is_active": False, "owner_id": key.user_id})
    db.session.commit()
    return key


def delete_key(admin, key_id):
    """Delete any user's key; audit ``apikey.delete`` with the admin as actor."""
    key = _any_key(key_id)
    audit.record("apikey.delete", admin.id, "apikey", key.id, {"owner_id": key.user_id})
    db.session.delete(key)
    db.session.commit()
