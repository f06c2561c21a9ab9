"""Who is calling: resolve the JWT or API key once per request, before rate limiting.

Runs as a ``before_request`` hook so that the rate limiter can key on the user. It never
rejects a request by itself: a bad credential is remembered in ``g.auth_error`` and turned
into a 401 by the ``auth_required`` decorator, so public endpoints stay public.
"""
import hmac
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app, g, request
from flask_limiter.util import get_remote_address

from app.auth import api_keys
from app.auth.tokens import TokenInvalid, decode_token
from app.utils.clock import utcnow

API_KEY_HEADERS = ("X-API-Key", "ApiKey", "Api-Key")


def _credentials():
    """Return ``("jwt"|"api_key", value)`` or ``(None, None)`` from the request headers."""
    authorization = request.headers.get("Authorization", "")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return "jwt", value.strip()
        return "invalid", None
    for header in API_KEY_HEADERS:
        value = request.headers.get(header)
        if value:
            return "api_key", value.strip()
    return None, None


def _user_from_jwt(token):
    from app.db.models import User

    try:
        user_id, version = decode_token(token, current_app.config["JWT_SECRET_KEY"])
    except TokenInvalid:
        return None, "Invalid or expired token"
    user = _db().session.get(User, user_id)
    if user is None or user.token_version != version:
        return None, "Token has been revoked"
    if not user.is_active:
        return None, "Account is deactivated"
    return user, None


def _user_from_api_key(value):
    from app.db.models import ApiKey, User

    if not api_keys.looks_like_key(value):
        return None, None, "Invalid API key"
    digest = api_keys.hash_key(value)
    row = _db().session.execute(
        sa.select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.key_hash == digest)
    ).first()
    if row is None or not hmac.compare_digest(row.ApiKey.key_hash, digest):
        return None, None, "Invalid API key"
    key, user = row
    if not key.is_active:
        return None, None, "API key is deactivated"
    if not user.is_active:
        return None, None, "Account is deactivated"
    _touch(key)
    return user, key, None


def _touch(key):
    """Move ``last_used_at`` at most once per API_KEY_TOUCH_SECONDS, so reads stay reads."""
    from app.db.models import ApiKey

    now = utcnow()
    every = timedelta(seconds=current_app.config["API_KEY_TOUCH_SECONDS"])
    if key.last_used_at is not None and now - key.last_used_at < every:
        return
    _db().session.execute(
        sa.update(ApiKey)
        .where(ApiKey.id == key.id, sa.or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - every))
        .values(last_used_at=now)
    )
    key.last_used_at = now


def _db():
    from app.extensions import db

    return db


def identify_request():
    """``before_request``: set ``g.current_user``, ``g.api_key``, ``g.auth_method``, ``g.auth_error``."""
    g.current_user = g.api_key = g.auth_error = None
    method, value = _credentials()
    g.auth_method = method
    if method is None:
        return
    if method == "invalid":
        g.auth_error = "Authorization header must be 'Bearer <token>'"
        return
    if method == "jwt":
        g.current_user, g.auth_error = _user_from_jwt(value)
    else:
        g.current_user, g.api_key, g.auth_error = _user_from_api_key(value)
    # End the read transaction now: no connection stays checked out while the view runs.
    _db().session.commit()


def rate_limit_key():
    """flask-limiter key: the user when authenticated, else the client address."""
    user = getattr(g, "current_user", None)
    return f"user:{user.id}" if user is not None else f"ip:{get_remote_address()}"
