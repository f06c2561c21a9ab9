"""Database models: User, ApiKey, ProbeJob, Measurement, AuditEvent and the cross-worker request counters."""
from datetime import UTC

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.utils.clock import utcnow

ROLES = ("user", "admin")
TIERS = ("Free", "Standard", "Enterprise")
PROBE_TYPES = ("ping", "traceroute", "dns", "whois")
JOB_STATUSES = ("queued", "running", "completed", "failed", "timeout")
JOB_ACTIVE = ("queued", "running")  # not ended yet
MEASUREMENT_STATUSES = ("in-progress", "finished")


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite forgets the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use app.utils.clock.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class User(db.Model):
    """A registered user; ``token_version`` bumps revoke every JWT issued before."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(sa.String(128))
    role: Mapped[str] = mapped_column(sa.String(16), default="user")
    subscription_tier: Mapped[str] = mapped_column(sa.String(16), default="Free")
    is_active: Mapped[bool] = mapped_column(default=True)
    token_version: Mapped[int] = mapped_column(default=0)
    # Every probe reservation updates this row first: the update is the lock that makes
    # quota checks atomic across workers (row lock on PostgreSQL, write lock on SQLite).
    probe_job_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_probe_at: Mapped[object] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)

    api_keys = relationship("ApiKey", back_populates="user", cascade="all, delete-orphan", lazy="raise")

    __table_args__ = (
        sa.CheckConstraint(sa.text("role IN ('user', 'admin')"), name="role"),
        sa.CheckConstraint(sa.text("subscription_tier IN ('Free', 'Standard', 'Enterprise')"), name="tier"),
    )


# Usernames are unique whatever their case, decided by the database (migration 0002), so that
# parallel registrations of "Dupe" and "dupe" cannot both commit.
sa.Index("uq_users_username_lower", sa.func.lower(User.username), unique=True)


class ApiKey(db.Model):
    """An API key: only the SHA-256 of the secret and a short display prefix are kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(32))
    description: Mapped[str] = mapped_column(sa.String(255), default="")
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[object] = mapped_column(UTCDateTime, nullable=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    expires_at: Mapped[object] = mapped_column(UTCDateTime, nullable=True)
    # Space-separated scopes; NULL = every scope (keys made before scopes existed).
    scopes: Mapped[str] = mapped_column(sa.String(255), nullable=True)
    # After a rotation the old secret's hash works until previous_expires_at (the grace period).
    previous_key_hash: Mapped[str] = mapped_column(sa.String(64), nullable=True)
    previous_expires_at: Mapped[object] = mapped_column(UTCDateTime, nullable=True)

    user = relationship("User", back_populates="api_keys", lazy="raise")


# A unique index, not a constraint, so that migration 0006 adds it without rebuilding the table.
sa.Index("ix_api_keys_previous_key_hash", ApiKey.previous_key_hash, unique=True)


class RefreshToken(db.Model):
    """One refresh token (only its SHA-256 kept); a login starts a family, each refresh adds the next.

    ``used_at`` marks a spent token; ``revoked_at`` on every row of a family ends that session
    (logout, reuse of a spent token, password change). Access tokens carry the family as ``sid``.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(sa.String(32), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[object] = mapped_column(UTCDateTime)
    used_at: Mapped[object] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[object] = mapped_column(UTCDateTime, nullable=True)


ACTIVE_SQL = sa.text("status IN ('queued', 'running')")


class ProbeJob(db.Model):
    """One probe (a synchronous one, or one result of a measurement): queued, running, then ended.

    Ended is ``completed`` | ``failed`` | ``timeout``; ``error_code`` names why it could not run
    (``target_refused`` jobs do not count against the quota).
    """

    __tablename__ = "probe_jobs"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    probe_type: Mapped[str] = mapped_column(sa.String(16))
    target: Mapped[str] = mapped_column(sa.String(255))
    address: Mapped[str] = mapped_column(sa.String(64), nullable=True)
    parameters: Mapped[str] = mapped_column(sa.Text, default="{}")
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")
    success: Mapped[bool] = mapped_column(nullable=True)
    result: Mapped[str] = mapped_column(sa.Text, nullable=True)
    data: Mapped[dict] = mapped_column(sa.JSON, nullable=True)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[object] = mapped_column(UTCDateTime, nullable=True)
    # When a queued or running job is overdue and gets ended as timeout (its probe's bound plus
    # a margin). NULL only on rows that had already ended before migration 0003.
    deadline_at: Mapped[object] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[object] = mapped_column(UTCDateTime, nullable=True)
    location: Mapped[str] = mapped_column(sa.String(64), nullable=True)
    measurement_id: Mapped[str] = mapped_column(sa.ForeignKey("measurements.id", ondelete="CASCADE"), nullable=True)
    error_code: Mapped[str] = mapped_column(sa.String(32), nullable=True)

    __table_args__ = (
        # History (newest first) and quota counts (since midnight / the 1st) both walk this.
        sa.Index("ix_probe_jobs_user_id_created_at", "user_id", "created_at"),
        sa.Index("ix_probe_jobs_status_running", "status", postgresql_where=ACTIVE_SQL, sqlite_where=ACTIVE_SQL),
        # The per-user cap counts only a user's queued or running, not overdue, jobs.
        sa.Index("ix_probe_jobs_running_user_deadline", "user_id", "deadline_at",
                 postgresql_where=ACTIVE_SQL, sqlite_where=ACTIVE_SQL),
        sa.Index("ix_probe_jobs_measurement_id", "measurement_id"),
    )


class Measurement(db.Model):
    """One probe type against one target from one or more locations; its results are ProbeJob rows."""

    __tablename__ = "measurements"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)  # random, URL-safe, not guessable
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(sa.String(16))
    target: Mapped[str] = mapped_column(sa.String(255))
    options: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    locations: Mapped[list] = mapped_column(sa.JSON, default=list)
    limit: Mapped[int] = mapped_column("limit", sa.Integer, default=1)
    probes_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    status: Mapped[str] = mapped_column(sa.String(16), default="in-progress")
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.Index("ix_measurements_user_id_created_at", "user_id", "created_at"),
    )


class RequestStat(db.Model):
    """Requests served per UTC day, summed across every worker (workers flush into it)."""

    __tablename__ = "request_stats"

    day: Mapped[object] = mapped_column(sa.Date, primary_key=True)
    count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    total_ms: Mapped[float] = mapped_column(sa.Float, default=0.0)


AUDIT_ACTIONS = ("login.success", "login.failure", "user.register", "user.password", "user.role", "user.tier",
                 "user.active", "apikey.create", "apikey.update", "apikey.delete")


class AuditEvent(db.Model):
    """Who changed what, when, from where (app/services/audit.py); never holds a secret.

    No foreign keys: the trail outlives the users and keys it names."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    time: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(sa.String(32))
    actor_id: Mapped[int] = mapped_column(sa.Integer, nullable=True)
    target_type: Mapped[str] = mapped_column(sa.String(16), nullable=True)
    target_id: Mapped[int] = mapped_column(sa.Integer, nullable=True)
    ip: Mapped[str] = mapped_column(sa.String(64), nullable=True)
    request_id: Mapped[str] = mapped_column(sa.String(64), nullable=True)
    details: Mapped[dict] = mapped_column(sa.JSON, nullable=True)

    __table_args__ = (
        # Newest first, whole trail or by action or by actor.
        sa.Index("ix_audit_events_time", "time", "id"),
        sa.Index("ix_audit_events_action_time", "action", "time"),
        sa.Index("ix_audit_events_actor_id_time", "actor_id", "time"),
    )
