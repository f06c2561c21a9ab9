"""Who is calling: resolve the JWT or API key once per request, before rate limiting.

Runs as a ``before_request`` hook so that the rate limiter can key on the user. It never
rejects a request by itself: a bad credential is remembered in ``g.auth_error`` and turned
into a 401 by the ``auth_required`` decorator, so public endpoints stay public.

This is the hot path of every authenticated request, so it is one indexed query on an
autocommit connection (no ORM unit of work, no transaction to end) and it yields a small
read-only ``Caller`` instead of an ORM object. That query's row is kept per worker while the
auth epoch in Redis is unchanged and for at most ``AUTH_CACHE_SECONDS`` (≤ 1 s,
``app/auth/cache.py``): a revocation reaches every worker on its next request (within a second
without Redis), while the checks themselves (active, expiry, grace period, token version,
session) run on every request.
"""
import hmac
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app, g, request

from app.auth import api_keys, cache
from app.auth.tokens import TokenExpired, TokenInvalid, decode_token
from app.db.models import ApiKey, RefreshToken, User
from app.extensions import db
from app.utils.clock import utcnow

API_KEY_HEADERS = ("X-API-Key", "ApiKey", "Api-Key")
USER_COLUMNS = (User.id, User.username, User.email, User.is_active, User.role, User.subscription_tier,
                User.created_at, User.token_version)


@dataclass(frozen=True)
class Caller:
    """The authenticated user, as read at the start of this request."""

    id: int
    username: str
    email: str
    is_active: bool
    role: str
    subscription_tier: str
    created_at: datetime
    token_version: int


# Built once: constructing a select costs more than running it on the hot path.
# A JWT's session (refresh-token family, the ``sid`` claim) is checked in the same statement.
SESSION_REVOKED = (
    sa.select(RefreshToken.id)
    .where(RefreshToken.family_id == sa.bindparam("sid"), RefreshToken.revoked_at.is_not(None))
    .exists()
)
USER_BY_ID = sa.select(*USER_COLUMNS, SESSION_REVOKED.label("session_revoked")).where(
    User.id == sa.bindparam("user_id"))
# The current secret, or the previous one during its rotation grace period.
USER_BY_KEY_HASH = (
    sa.select(*USER_COLUMNS, ApiKey.id.label("key_id"), ApiKey.key_hash, ApiKey.is_active.label("key_active"),
              ApiKey.last_used_at, ApiKey.expires_at, ApiKey.scopes, ApiKey.previous_key_hash,
              ApiKey.previous_expires_at)
    .join(ApiKey, ApiKey.user_id == User.id)
    .where(sa.or_(ApiKey.key_hash == sa.bindparam("digest"), ApiKey.previous_key_hash == sa.bindparam("digest")))
)


def _credentials():
    """Return ``("jwt"|"api_key"|"invalid", value)`` or ``(None, None)`` from the request headers."""
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


def _caller(row):
    return Caller(*row[:8])


def _user_from_jwt(token):
    try:
        user_id, version, session_id = decode_token(token, current_app.config["JWT_SECRET_KEY"])
    except TokenExpired:
        return None, ("token_expired", "The token has expired: refresh it or log in again")
    except TokenInvalid:
        return None, ("invalid_credentials", "Invalid token")
    row = _cached_read(("jwt", user_id, session_id), USER_BY_ID, {"user_id": user_id, "sid": session_id})
    if row is None or row.token_version != version or row.session_revoked:
        return None, ("token_revoked", "The token has been revoked: log in again")
    if not row.is_active:
        return None, ("account_disabled", "This account is deactivated")
    g.session_id = session_id
    return _caller(row), None


# A wrong, revoked, expired or deactivated account's key all get this same answer: the caller
# learns nothing about which keys exist or whose account was disabled.
BAD_KEY = ("invalid_credentials", "Invalid API key")


def _key_secret_valid(row, digest, now):
    """The current secret, unexpired; or the previous one within its grace period."""
    if row.expires_at is not None and row.expires_at <= now:
        return False
    if hmac.compare_digest(row.key_hash, digest):
        return True
    return (row.previous_key_hash is not None and hmac.compare_digest(row.previous_key_hash, digest)
            and row.previous_expires_at is not None and row.previous_expires_at > now)


def _user_from_api_key(value):
    if not api_keys.looks_like_key(value):  # a mistyped or invented key: no database round trip
        return None, None, BAD_KEY
    digest = api_keys.hash_key(value)
    row = _cached_read(("key", digest), USER_BY_KEY_HASH, {"digest": digest})
    now = utcnow()
    if row is None or not row.key_active or not row.is_active or not _key_secret_valid(row, digest, now):
        return None, None, BAD_KEY
    if _touch(row.key_id, row.last_used_at, now):
        cache.drop(("key", digest))  # the cached row's last_used_at is behind: read it again
    g.api_key_scopes = None if row.scopes is None else frozenset(row.scopes.split())
    return _caller(row), row.key_id, None


def _touch(key_id, last_used_at, now):
    """Move ``last_used_at`` at most once per API_KEY_TOUCH_SECONDS, so reads stay reads; True
    when it was moved."""
    every = timedelta(seconds=current_app.config["API_KEY_TOUCH_SECONDS"])
    if last_used_at is not None and now - last_used_at < every:
        return False
    with db.engines["autocommit"].connect() as conn:
        conn.execute(
            sa.update(ApiKey)
            .where(ApiKey.id == key_id, sa.or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - every))
            .values(last_used_at=now)
        )
    return True


def _cached_read(cache_key, statement, params):
    """The identifying row: from this worker's cache when stored under the current generation and
    younger than AUTH_CACHE_SECONDS, else one statement on an autocommit connection (then
    cached). None when nothing matches."""
    max_age = current_app.config["AUTH_CACHE_SECONDS"]
    generation = cache.generation() if max_age > 0 else None
    row = cache.get(cache_key, generation, max_age) if generation is not None else None
    if row is not None:
        return row
    read_at = time.monotonic()
    with db.engines["autocommit"].connect() as conn:
        row = conn.execute(statement, params).first()
    if row is not None and generation is not None:
        cache.put(cache_key, row, generation, read_at)
    return row


def identify_request():
    """``before_request``: set ``g.current_user``, ``g.api_key_id``, ``g.auth_method``,
    ``g.api_key_scopes`` (None = all), ``g.session_id`` (a JWT's session) and ``g.auth_error`` as
    ``(code, message)`` when the credential is bad."""
    g.current_user = g.api_key_id = g.auth_error = g.api_key_scopes = g.session_id = None
    method, value = _credentials()
    g.auth_method = method
    if method is None:
        return
    if method == "invalid":
        g.auth_error = ("invalid_credentials", "Authorization header must be 'Bearer <token>'")
        return
    if method == "jwt":
        g.current_user, g.auth_error = _user_from_jwt(value)
    else:
        g.current_user, g.api_key_id, g.auth_error = _user_from_api_key(value)
