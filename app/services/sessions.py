"""Sessions: an access JWT plus an opaque refresh token, rotated on every use.

A login starts a family (the session, ``sid`` in its access tokens). Each refresh spends the
presented token with a conditional UPDATE (only one of two parallel refreshes can win) and adds
the next token to the family. Presenting a spent token is reuse — someone holds a copy — so the
whole family is revoked, and with it every access token of that session.
"""
import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from app.auth.tokens import issue_token
from app.db.models import RefreshToken, User
from app.errors import ApiError
from app.extensions import db
from app.utils.clock import utcnow

REFRESH_PREFIX = "probeops_rt_"


def _hash(token):
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def expires_in():
    """An access token's lifetime in seconds."""
    return current_app.config["JWT_EXPIRES_MINUTES"] * 60


def access_token(user, session_id):
    """A signed access JWT for ``user`` in session ``session_id``."""
    return issue_token(user, current_app.config["JWT_SECRET_KEY"], current_app.config["JWT_EXPIRES_MINUTES"],
                       utcnow(), session_id=session_id)


def _add_refresh_token(user_id, family_id, now):
    """Add the family's next refresh token to the session (the caller commits); return it in clear."""
    token = REFRESH_PREFIX + secrets.token_urlsafe(32)
    db.session.add(RefreshToken(user_id=user_id, family_id=family_id, token_hash=_hash(token), created_at=now,
                                expires_at=now + timedelta(days=current_app.config["REFRESH_TOKEN_DAYS"])))
    return token


def start(user):
    """A new session for ``user`` (the caller commits): ``{"token", "expires_in", "refresh_token"}``.

    The user's expired refresh tokens go at the same time, so the table holds live sessions only."""
    family_id, now = secrets.token_hex(16), utcnow()
    db.session.execute(sa.delete(RefreshToken).where(RefreshToken.user_id == user.id, RefreshToken.expires_at <= now)
                       .execution_options(synchronize_session=False))
    refresh_token = _add_refresh_token(user.id, family_id, now)
    return {"token": access_token(user, family_id), "expires_in": expires_in(), "refresh_token": refresh_token}


def _revoke_family(family_id, now):
    db.session.execute(sa.update(RefreshToken)
                       .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
                       .values(revoked_at=now).execution_options(synchronize_session=False))


def _refused(code, message):
    return ApiError(401, message, code=code, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def refresh(token):
    """Spend ``token`` and return a new pair; a spent token revokes its family (401 token_revoked)."""
    digest, now = _hash(token), utcnow()
    db.session.commit()  # the conditional update below is this transaction's first statement
    spent = db.session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.token_hash == digest, RefreshToken.used_at.is_(None),
               RefreshToken.revoked_at.is_(None), RefreshToken.expires_at > now)
        .values(used_at=now).execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:
        raise _refusal(digest, now)
    row = db.session.execute(sa.select(RefreshToken.user_id, RefreshToken.family_id)
                             .where(RefreshToken.token_hash == digest)).one()
    user = db.session.get(User, row.user_id)
    if not user.is_active:
        db.session.rollback()
        raise _refused("account_disabled", "This account is deactivated")
    new_token = _add_refresh_token(user.id, row.family_id, now)
    db.session.commit()
    return {"token": access_token(user, row.family_id), "expires_in": expires_in(), "refresh_token": new_token}


def _refusal(digest, now):
    """Why the token could not be spent; reuse of a spent token revokes its family (committed)."""
    row = db.session.execute(sa.select(RefreshToken.family_id, RefreshToken.used_at, RefreshToken.revoked_at,
                                       RefreshToken.expires_at).where(RefreshToken.token_hash == digest)).first()
    if row is None:
        db.session.rollback()
        return _refused("invalid_credentials", "Invalid refresh token")
    if row.used_at is not None or row.revoked_at is not None:
        _revoke_family(row.family_id, now)
        db.session.commit()
        return _refused("token_revoked", "The refresh token has been revoked: log in again")
    db.session.rollback()
    return _refused("token_expired", "The refresh token has expired: log in again")


def end(user_id, session_id, refresh_token=None):
    """Logout: revoke the current session and, if given, the session of ``refresh_token`` (the user's)."""
    now = utcnow()
    if session_id is not None:
        _revoke_family(session_id, now)
    if refresh_token:
        family_id = db.session.scalar(sa.select(RefreshToken.family_id).where(
            RefreshToken.token_hash == _hash(refresh_token), RefreshToken.user_id == user_id))
        if family_id is not None:
            _revoke_family(family_id, now)
    db.session.commit()


def revoke_others(user_id, keep_session_id):
    """Revoke every session of the user but ``keep_session_id`` (the caller commits)."""
    query = sa.update(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
    if keep_session_id is not None:
        query = query.where(RefreshToken.family_id != keep_session_id)
    db.session.execute(query.values(revoked_at=utcnow()).execution_options(synchronize_session=False))
