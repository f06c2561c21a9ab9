"""User accounts: registration, login, admin changes."""
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.auth.passwords import check_password, dummy_hash, hash_password
from app.auth.tokens import issue_token
from app.db.models import ApiKey, ProbeJob, User
from app.errors import ApiError
from app.extensions import db
from app.utils.clock import utcnow


def _duplicate_field(username, email):
    """Which unique field clashes: 'username' or 'email' (None if neither)."""
    row = db.session.execute(
        sa.select(User.username, User.email).where(
            sa.or_(sa.func.lower(User.username) == username.lower(), User.email == email))
    ).first()
    if row is None:
        return None
    return "username" if row.username.lower() == username.lower() else "email"


def register(username, email, password, role="user", tier="Free"):
    """Create a user; 409 naming the field when the username or email is taken."""
    email = email.strip().lower()
    clash = _duplicate_field(username, email)
    if clash:
        raise ApiError(409, f"{clash}: already registered")
    user = User(username=username, email=email, role=role, subscription_tier=tier,
                password_hash=hash_password(password, current_app.config["BCRYPT_ROUNDS"]))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError as exc:  # a concurrent registration won the race
        db.session.rollback()
        raise ApiError(409, "username or email: already registered") from exc
    return user


def login(password, email=None, username=None):
    """Return ``(user, token)``; the same 401 for an unknown account and a wrong password."""
    query = sa.select(User).where(User.email == email.strip().lower()) if email \
        else sa.select(User).where(sa.func.lower(User.username) == username.strip().lower())
    user = db.session.scalars(query).first()
    db.session.commit()
    rounds = current_app.config["BCRYPT_ROUNDS"]
    if not check_password(password, user.password_hash if user else dummy_hash(rounds)) or user is None:
        raise ApiError(401, "Invalid email/username or password", code="invalid_credentials")
    if not user.is_active:
        raise ApiError(403, "This account is deactivated", code="account_disabled")
    token = issue_token(user, current_app.config["JWT_SECRET_KEY"],
                        current_app.config["JWT_EXPIRES_MINUTES"], utcnow())
    return user, token


def get_user(user_id):
    """The user with ``user_id`` or 404."""
    user = db.session.get(User, user_id)
    if user is None:
        raise ApiError(404, f"User {user_id} not found")
    return user


def list_users_with_counts():
    """Every user with api_key_count and probe_job_count, in two queries."""
    users = db.session.scalars(sa.select(User).order_by(User.id)).all()
    key_counts = dict(db.session.execute(
        sa.select(ApiKey.user_id, sa.func.count()).group_by(ApiKey.user_id)).all())
    for user in users:
        user.api_key_count = key_counts.get(user.id, 0)
    return users


def set_role(admin, user_id, role):
    user = get_user(user_id)
    if user.id == admin.id and role != "admin":
        raise ApiError(400, "role: you cannot remove your own admin role")
    user.role = role
    db.session.commit()
    return user


def set_tier(user_id, tier):
    user = get_user(user_id)
    user.subscription_tier = tier
    db.session.commit()
    return user


def set_active(admin, user_id, is_active):
    """Activate or deactivate; deactivation revokes every token at once (token_version bump)."""
    user = get_user(user_id)
    if user.id == admin.id and not is_active:
        raise ApiError(400, "is_active: you cannot deactivate your own account")
    if user.is_active and not is_active:
        user.token_version += 1
    user.is_active = is_active
    db.session.commit()
    return user


def ensure_admin(username, email, password):
    """Create the configured admin when no user has that username or email; True if created."""
    if _duplicate_field(username, email.strip().lower()):
        return False
    register(username, email, password, role="admin", tier="Enterprise")
    return True


def count_rows():
    """(users, api keys, probe jobs)."""
    return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(model))
                 for model in (User, ApiKey, ProbeJob))
