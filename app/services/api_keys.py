"""API key management for the key's owner."""
import sqlalchemy as sa

from app.auth.api_keys import generate_key
from app.db.models import ApiKey
from app.errors import ApiError
from app.extensions import db


def create_key(user, description):
    """Create a key; the returned row carries ``full_key``, shown this once only."""
    full_key, key_hash, prefix = generate_key()
    key = ApiKey(user_id=user.id, key_hash=key_hash, prefix=prefix, description=description)
    db.session.add(key)
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
    for name in ("description", "is_active"):
        if name in changes:
            setattr(key, name, changes[name])
    db.session.commit()
    return key


def delete_key(user, key_id):
    db.session.delete(get_key(user, key_id))
    db.session.commit()
