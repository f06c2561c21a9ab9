"""User accounts: registration, login, admin changes."""
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.auth.passwords import dummy_hash, hash_password, verify_password
from app.auth.rate_key import client_address
from app.db.models import ApiKey, ProbeJob, User
from app.errors import ApiError
from app.extensions import db
from app.services import audit, login_throttle, sessions


def _duplicate_field(username, email):
    """Which unique field clashes: 'username' (compared case-folded) or 'email' (None if neither)."""
    row = db.session.execute(
        sa.select(User.username, User.email).where(
            sa.or_(sa.func.lower(User.username) == username.lower(), User.email == email))
    ).first()
    if row is None:
        return None
    return "username" if row.username.lower() == username.lower() else "email"


def _conflict(field):
    return ApiError(409, f"{field}: already registered", code="conflict", fields={field: ["Already registered."]})


def register(username, email, password, role="user", tier="Free"):
    """Create a user; 409 naming the field when the username (in any case) or email is taken."""
    email = email.strip().lower()
    clash = _duplicate_field(username, email)
    if clash:
        raise _conflict(clash)
    user = User(username=username, email=email, role=role, subscription_tier=tier,
                password_hash=hash_password(password, current_app.config["BCRYPT_ROUNDS"]))
    db.session.add(user)
    try:
        db.session.flush()  # the new id, for the audit event committed with the row
        audit.record("user.register", user.id, "user", user.id, {"role": role, "tier": tier})
        db.session.commit()
    except IntegrityError:  # a concurrent registration won the race; the unique indexes decided
        db.session.rollback()
        raise _conflict(_duplicate_field(username, email) or "username") from None
    return user


def _find_login_user(email, username):
    if email:
        query = sa.select(User).where(User.email == email.strip().lower())
    else:
        query = sa.select(User).where(sa.func.lower(User.username) == username.strip().lower())
    user = db.session.scalars(query).first()
    db.session.commit()
    return user


def _throttle_subject(user, email, username, address):
    """Who the back-off counts against: the account (at this address, if known to it), or the
    name tried when no account has it."""
    if user is not None:
        return login_throttle.account_subject(user.id, address)
    return f"email:{email.strip().lower()}" if email else f"username:{username.strip().lower()}"


def login(password, email=None, username=None):
    """Return ``(user, session)`` (session: token, expires_in, refresh_token); the same 401 for an
    unknown account and a wrong password."""
    user = _find_login_user(email, username)
    address = client_address()
    subject = _throttle_subject(user, email, username, address)
    login_throttle.begin_attempt(subject)
    rounds = current_app.config["BCRYPT_ROUNDS"]
    matches, legacy = verify_password(password, user.password_hash if user else dummy_hash(rounds))
    if not matches or user is None:
        _audit_login_failure(user, "invalid_credentials")
        raise ApiError(401, "Invalid email/username or password", code="invalid_credentials")
    login_throttle.succeeded(subject, user.id, address)
    if not user.is_active:
        _audit_login_failure(user, "account_disabled")
        raise ApiError(403, "This account is deactivated", code="account_disabled")
    if legacy:  # hashed before passwords were normalised: store the NFKC form's hash
        user.password_hash = hash_password(password, rounds)
    audit.record("login.success", user.id, "user", user.id)
    session = sessions.start(user)
    db.session.commit()
    return user, session


def _audit_login_failure(user, reason):
    """A failed login: the account tried when it exists (never the name or password typed)."""
    target = user.id if user is not None else None
    audit.record("login.failure", None, "user" if target else None, target, {"reason": reason})
    db.session.commit()


def get_user(user_id):
    """The user with ``user_id`` or 404."""
    user = db.session.get(User, user_id)
    if user is None:
        raise ApiError(404, f"User {user_id} not found")
    return user


def _checked_password(user_id, password):
    """The user's row (locked until commit where the database can) when ``password`` is theirs; else 401."""
    user = db.session.get(User, user_id, with_for_update=True, populate_existing=True)
    if user is None or not verify_password(password, user.password_hash)[0]:
        db.session.rollback()
        raise ApiError(401, "current_password: wrong password", code="invalid_credentials",
                       fields={"current_password": ["Wrong password."]})
    return user


def change_password(user_id, session_id, current_password, new_password):
    """Set a new password; every other session and access token stops working, API keys keep working.

    The token_version bump ends every access token (the one of this call too); the answer's new
    token continues this session, whose refresh token stays valid (a call without a session gets
    a new one)."""
    db.session.commit()
    user = _checked_password(user_id, current_password)
    user.password_hash = hash_password(new_password, current_app.config["BCRYPT_ROUNDS"])
    user.token_version += 1
    sessions.revoke_others(user.id, session_id)
    audit.record("user.password", user.id, "user", user.id)
    if session_id is None:
        answer = sessions.start(user)
    else:
        answer = {"token": sessions.access_token(user, session_id), "expires_in": sessions.expires_in()}
    db.session.commit()
    return answer


def update_profile(user_id, current_password, username=None, email=None):
    """Change the caller's username and/or email (password required); 409 naming the field on a clash."""
    db.session.commit()
    user = _checked_password(user_id, current_password)
    email = email.strip().lower() if email is not None else None
    for field, value, taken in (
            ("username", username, lambda: sa.func.lower(User.username) == username.lower()),
            ("email", email, lambda: User.email == email)):
        if value is None:
            continue
        if db.session.scalar(sa.select(User.id).where(taken(), User.id != user.id)) is not None:
            db.session.rollback()
            raise _conflict(field)
        setattr(user, field, value)
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent registration or change took it meanwhile
        db.session.rollback()
        raise _conflict("username" if username is not None else "email") from None
    return user


ACTIVE_ADMIN = sa.and_(User.role == "admin", User.is_active.is_(True))


def _lock_active_admins():
    """Start a transaction that holds the active admins still, and return their ids.

    PostgreSQL: their rows are locked (FOR UPDATE, in id order so two admins cannot deadlock),
    and a row another transaction just demoted no longer matches once its lock is released.
    SQLite: a no-op UPDATE takes the database write lock first, so the count is read after any
    concurrent change has committed and none can start before this one commits.
    """
    db.session.commit()  # end any earlier read, so the lock is this transaction's first statement
    if db.session.get_bind().dialect.name == "postgresql":
        return set(db.session.scalars(sa.select(User.id).where(ACTIVE_ADMIN).order_by(User.id).with_for_update()))
    db.session.execute(sa.update(User).where(ACTIVE_ADMIN).values(role=User.role)
                       .execution_options(synchronize_session=False))
    return set(db.session.scalars(sa.select(User.id).where(ACTIVE_ADMIN)))


def _locked_user(user_id):
    """``user_id``'s row as it is now (after the lock), or 404."""
    user = db.session.get(User, user_id, populate_existing=True)
    if user is None:
        db.session.rollback()
        raise ApiError(404, f"User {user_id} not found")
    return user


def _refuse_last_admin(admins, user, field):
    if user.id in admins and len(admins) <= 1:
        db.session.rollback()
        raise ApiError(409, f"{field}: {user.username!r} is the last active admin; make another user an "
                            "admin first", code="conflict", fields={field: ["The last active admin must stay."]})


def set_role(admin, user_id, role):
    """Change a user's role; the last active admin is never demoted."""
    if user_id == admin.id and role != "admin":
        raise ApiError(400, "role: you cannot remove your own admin role", fields={"role": ["Not your own."]})
    admins = _lock_active_admins()
    user = _locked_user(user_id)
    if role != "admin":
        _refuse_last_admin(admins, user, "role")
    audit.record("user.role", admin.id, "user", user.id, {"from": user.role, "to": role})
    user.role = role
    db.session.commit()
    return user


def set_tier(admin, user_id, tier):
    """Move a user to another tier (``admin`` is who did it, for the audit trail)."""
    user = get_user(user_id)
    audit.record("user.tier", admin.id, "user", user.id, {"from": user.subscription_tier, "to": tier})
    user.subscription_tier = tier
    db.session.commit()
    return user


def set_active(admin, user_id, is_active):
    """Activate or deactivate; deactivation revokes every token at once (token_version bump).

    The last active admin is never deactivated."""
    if user_id == admin.id and not is_active:
        raise ApiError(400, "is_active: you cannot deactivate your own account",
                       fields={"is_active": ["Not your own."]})
    admins = _lock_active_admins()
    user = _locked_user(user_id)
    if not is_active:
        _refuse_last_admin(admins, user, "is_active")
    if user.is_active and not is_active:
        user.token_version += 1
    audit.record("user.active", admin.id, "user", user.id, {"from": user.is_active, "to": is_active})
    user.is_active = is_active
    db.session.commit()
    return user


def ensure_admin(username, email, password):
    """Create the configured admin when no user has that username (in any case) or email; True if created."""
    if _duplicate_field(username, email.strip().lower()):
        return False
    try:
        register(username, email, password, role="admin", tier="Enterprise")
    except ApiError as exc:  # another worker or start created it meanwhile
        if exc.status == 409:
            return False
        raise
    return True


def count_rows():
    """(users, api keys, probe jobs)."""
    return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(model))
                 for model in (User, ApiKey, ProbeJob))
