"""Outages of the database and of the rate-limit storage: 503 with Retry-After, logged once.

A dependency that is down, stopped, refusing, locked or read-only is not a bug of this API: the
caller gets ``503 service_unavailable`` with ``Retry-After``, and the log gets one warning when
the outage starts and one when it ends, not a traceback per request.

While a PostgreSQL outage lasts, callers fail fast instead of each waiting out the connect or
statement bound: one caller per ``TRIAL_SECONDS`` tries the server, the others are refused at
once (``fail_fast``), until a statement succeeds again.
"""
import logging
import sqlite3
import threading
import time

import psycopg2
import sqlalchemy.exc as sa_exc
from flask import g

log = logging.getLogger("probeops")

RETRY_AFTER_SECONDS = 5
TRIAL_SECONDS = 1.0   # while failing fast, how often one caller may try the database again
QUIET_SECONDS = 2.0   # an outage ends with a success this long after its last failure
FAILING_FAST = "database unavailable (failing fast until a trial connection succeeds)"
# SQLite errors that say the file cannot be written or read now, not that the SQL is wrong.
SQLITE_UNAVAILABLE = ("database is locked", "attempt to write a readonly database", "disk i/o error",
                      "unable to open database file", "database or disk is full", "database table is locked")
# SQLite errors after which a pooled connection may stay broken (opened read-only during the fault).
SQLITE_REOPEN = ("attempt to write a readonly database", "disk i/o error", "unable to open database file")
PG_PROGRAM_LIMIT = "54"  # SQLSTATE class of OperationalErrors that are about the data, not the server
PG_LOCK_NOT_AVAILABLE = "55P03"  # a lock_timeout: contention on a row (the caller decides), not an outage


class Outage:
    """One dependency's state in this process: failing or not, since when, and the fail-fast window."""

    def __init__(self, name):
        self.name = name
        self._lock = threading.Lock()
        self.active = False
        self.started = self.last_failure = self.open_until = 0.0
        self.failures = 0
        self._trial = None

    def failed(self, reason, trip=False):
        """Record a failure; the first of an outage is logged. ``trip`` starts failing fast."""
        now = time.monotonic()
        with self._lock:
            self.failures += 1
            self.last_failure = now
            if trip:
                self.open_until = now + TRIAL_SECONDS
            if self.active:
                return
            self.active, self.started, self.failures = True, now, 1
        log.warning("%s unavailable (%s): answering 503 with Retry-After until it is back "
                    "(further failures of this outage are not logged)", self.name, reason)

    def rejected(self):
        """Count a caller refused while failing fast (not a new failure of the dependency)."""
        self.failures += 1

    def succeeded(self):
        """Record a success: stop failing fast; log the end of an outage once it has been quiet."""
        if not self.active and not self.open_until:
            return  # the hot path: nothing is wrong
        now = time.monotonic()
        with self._lock:
            self.open_until = 0.0
            if not self.active or now - self.last_failure < QUIET_SECONDS:
                return
            self.active = False
            duration, failures = now - self.started, self.failures
        log.warning("%s is back after %.1f s (%d failed operations during the outage)", self.name, duration, failures)

    def fail_fast(self):
        """True when this caller must not wait on the dependency now; lets one trial through per window."""
        if not self.open_until:
            return False
        now = time.monotonic()
        me = threading.get_ident()
        with self._lock:
            if not self.open_until:
                return False
            if now < self.open_until:
                return me != self._trial  # the trial itself passes each check (connect, then checkout)
            self.open_until = now + TRIAL_SECONDS  # this caller is the trial; the others fail fast
            self._trial = me
            return False


DATABASE = Outage("database")
RATE_LIMIT_STORAGE = Outage("rate-limit storage (Redis)")


def _first_line(exc):
    return str(exc).strip().partition("\n")[0][:200]


def database_failure(exc):
    """A short reason when ``exc`` (SQLAlchemy or DBAPI) means the database is unavailable, else None.

    Reasons name the failure only (never statement parameters or values).
    """
    if isinstance(exc, sa_exc.TimeoutError):
        return "no pooled connection free within DB_POOL_TIMEOUT"
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return "connection lost"
        exc = exc.orig
    if isinstance(exc, psycopg2.InterfaceError):
        return "connection closed"
    if isinstance(exc, psycopg2.OperationalError):
        if (exc.pgcode or "").startswith(PG_PROGRAM_LIMIT) or exc.pgcode == PG_LOCK_NOT_AVAILABLE:
            return None
        diag = getattr(exc, "diag", None)
        return (diag.message_primary if diag is not None and diag.message_primary else _first_line(exc))[:200]
    if isinstance(exc, sqlite3.OperationalError):
        text = _first_line(exc).lower()
        return text if any(text.startswith(m) for m in SQLITE_UNAVAILABLE) else None
    return None


def sqlite_connection_needs_reopen(exc):
    """True when a SQLite connection may stay unable to write after this error (reopen it)."""
    return isinstance(exc, sqlite3.OperationalError) and _first_line(exc).lower().startswith(SQLITE_REOPEN)


def is_failing_fast(exc):
    """True for the refusal raised while failing fast (not a new failure of the server)."""
    exc = getattr(exc, "orig", exc)
    return isinstance(exc, psycopg2.OperationalError) and str(exc) == FAILING_FAST


def refuse_if_failing_fast():
    """Raise (as psycopg2 would) instead of waiting on a database that is known to be away."""
    if DATABASE.fail_fast():
        DATABASE.rejected()
        raise psycopg2.OperationalError(FAILING_FAST)


def _redis_errors():
    import redis.exceptions
    from limits.errors import StorageError

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, StorageError)


def unavailable_response(what):
    from app.errors import error_response

    return error_response(503, f"The {what} is temporarily unavailable; retry in {RETRY_AFTER_SECONDS} seconds",
                          {"Retry-After": str(RETRY_AFTER_SECONDS)}, code="service_unavailable")


def _rollback():
    from app.extensions import db

    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection may be gone; the session is discarded at teardown
        db.session.close()


def handle_database_error(exc):
    """503 + Retry-After for an unavailable database; any other database error is a logged 500
    (the log carries no statement parameters or values: see app.db.log_safety)."""
    from app.errors import error_response

    _rollback()
    if database_failure(exc) is not None:
        return unavailable_response("database")
    request_id = g.get("request_id", "-")
    log.error("database error (request %s)", request_id, exc_info=exc)
    return error_response(500, f"An internal error occurred (request id {request_id})")


def handle_storage_error(exc):
    """503 + Retry-After when the rate-limit storage is down and the in-memory fallback is off."""
    RATE_LIMIT_STORAGE.failed(type(exc).__name__)
    return unavailable_response("rate-limit storage")


def note_storage_recovery(response):
    """After a rate-limit storage outage, end it when the storage answers again (checked once a second)."""
    outage = RATE_LIMIT_STORAGE
    if outage.active and time.monotonic() - outage.last_failure >= QUIET_SECONDS:
        from app.extensions import limiter

        outage.last_failure = time.monotonic()  # at most one check per quiet period
        if limiter.storage is not None and limiter.storage.check():
            outage.last_failure -= QUIET_SECONDS
            outage.succeeded()
    return response


def active_rate_limit_storage():
    """The storage rate-limit counters go to now: Redis, or each process's memory while the
    limiter has fallen back (code that counts in the limiter's storage itself must use this)."""
    from app.extensions import limiter

    if getattr(limiter, "_storage_dead", False) and getattr(limiter, "_fallback_storage", None) is not None:
        return limiter._fallback_storage
    return limiter.storage


def _reset_limiter_fallback(config):
    """The limiter is one object per process: a new app starts from its own fallback setting,
    with the storage presumed alive (flask-limiter only ever turns the fallback on)."""
    from app.extensions import limiter

    if not config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"]:
        limiter._in_memory_fallback_enabled = False
    limiter._storage_dead = False


def init_app(app):
    """Map database and Redis outages to 503 (registered by app.errors.init_app)."""
    DATABASE.__init__(DATABASE.name)  # a new app in this process starts with no outage on record
    RATE_LIMIT_STORAGE.__init__(RATE_LIMIT_STORAGE.name)
    _reset_limiter_fallback(app.config)
    for error in (sa_exc.DBAPIError, sa_exc.TimeoutError):
        app.register_error_handler(error, handle_database_error)
    for error in _redis_errors():
        app.register_error_handler(error, handle_storage_error)
    app.after_request(note_storage_recovery)


def storage_options(config):
    """Redis client options for the rate-limit storage: bounded connect and command waits."""
    if not str(config.get("RATELIMIT_STORAGE_URI", "")).startswith(("redis", "rediss", "redis+")):
        return {}
    seconds = config["REDIS_TIMEOUT"]
    return {"socket_connect_timeout": seconds, "socket_timeout": seconds}
