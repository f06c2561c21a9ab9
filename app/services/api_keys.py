"""API key management for the key's owner."""
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from app.auth.api_keys import generate_key, scopes_text
from app.db.models import ApiKey
from app.errors import ApiError
from app.extensions import db
from app.services import audit
from app.utils.clock import utcnow


def create_key(user, description, name="", expires_at=None, scopes=None):
    """Create a key (``scopes`` None = all); the returned row carries ``full_key``, shown this once only."""
    if expires_at is not None and expires_at <= utcnow():
        raise ApiError(400, "expires_at: must be in the future", fields={"expires_at": ["Must be in the future."]})
    full_key, key_hash, prefix = generate_key()
    key = ApiKey(user_id=user.id, key_hash=key_hash, prefix=prefix, description=description, name=name,
                 expires_at=expires_at, scopes=scopes_text(scopes))
    db.session.add(key)
    db.session.flush()  # the new id, for the audit event committed with the key
    audit.record("apikey.create", user.id, "apikey", key.id, {"description": description})
    db.session.commit()
    key.full_key = full_key
    return key


def list_keys(user):
    return db.session.scalars(sa.select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id)).all()


def get_key(user, key_id):
    """The caller's key ``key_id``; another user's key is a 404 like a missing one."""
    key = db.session.scalars(sa.select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user.id)).first()
    if key is None:
        raise ApiError(404, f"API key {key_id} not found")
    return key


def update_key(user, key_id, changes):
    key = get_key(user, key_id)
    changed = [name for name in ("description", "is_active") if name in changes]
    for name in changed:
        setattr(key, name, changes[name])
    details = {"fields": changed, **({"is_active": changes["is_active"]} if "is_active" in changes else {})}
    audit.record("apikey.update", user.id, "apikey", key.id, details)
    db.session.commit()
    return key


def rotate_key(user, key_id):
    """A new secret for the key; the old one keeps working for API_KEY_ROTATION_GRACE_SECONDS only.

    A second rotation within the grace period ends the first old secret at once: only the
    secret just replaced gets a grace period."""
    db.session.commit()
    key = db.session.scalars(sa.select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user.id)
                             .with_for_update()).first()
    if key is None:
        raise ApiError(404, f"API key {key_id} not found")
    full_key, key_hash, prefix = generate_key()
    key.previous_key_hash, key.key_hash, key.prefix = key.key_hash, key_hash, prefix
    key.previous_expires_at = utcnow() + timedelta(seconds=current_app.config["API_KEY_ROTATION_GRACE_SECONDS"])
    audit.record("apikey.update", user.id, "apikey", key.id, {"fields": ["secret"]})
    db.session.commit()
    key.full_key = full_key
    return key


def delete_key(user, key_id):
    key = get_key(user, key_id)
    audit.record("apikey.delete", user.id, "apikey", key.id)
    db.session.delete(key)
    db.session.commit()
