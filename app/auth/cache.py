r"""A per-worker cache of the identifying lookup (API key or JWT session → user), revoked at once.

Two guards, both on every request:

- **the auth epoch** — when the rate limiter keeps its counters in Redis, a counter
  ``probeops:auth:epoch`` there is read (one ``GET`` on the limiter's connection pool) and an
  entry is used only if it was read under the same epoch. Every commit that changes users,
  api_keys or refresh_tokens (deactivation, key revocation/rotation/expiry change, logout,
  password change) ``INCR``\ s it after the commit, so every worker drops its cache on its next
  request. Redis unreachable: no entry is used (the database is read).
- **the age** — an entry is never used once older than ``AUTH_CACHE_SECONDS`` (capped at
  ``MAX_AGE_SECONDS`` = 1 s). That alone bounds revocation to a second when there is no Redis
  (the embedded default, ``memory://``), when an ``INCR`` is lost, or when another program changes
  the database behind the API's back.

The worker that commits the change also drops its own cache at once. Only successful lookups are
cached; a refused credential is read every time (the key checksum already turns invented keys
away without a round trip). The checks themselves (active, expiry, grace period, token version,
session revoked) run on the cached row at every request.
"""
import logging
import threading
import time

from sqlalchemy import event
from sqlalchemy.orm import Session

MAX_AGE_SECONDS = 1.0
MAX_ENTRIES = 10_000
EPOCH_KEY = "probeops:auth:epoch"
LOCAL = b"local"  # the epoch without Redis: only the age guards
log = logging.getLogger(__name__)
IDENTITY_TABLES = frozenset({"users", "api_keys", "refresh_tokens"})

_entries = {}
_lock = threading.Lock()


def _redis():
    """The rate limiter's Redis client, or None when its storage is not Redis."""
    from limits.storage import RedisStorage

    from app.extensions import limiter

    try:
        storage = limiter.storage
    except (AssertionError, RuntimeError):
        return None
    return storage.get_connection() if isinstance(storage, RedisStorage) else None


def current_epoch():
    """This request's auth epoch (``LOCAL`` without Redis), or None when Redis cannot say."""
    client = _redis()
    if client is None:
        return LOCAL
    try:
        return client.get(EPOCH_KEY) or b"0"
    except Exception:  # noqa: BLE001 - Redis down: read the database, as without a cache
        return None


def get(key, epoch, max_age):
    """The cached value for ``key`` if read under ``epoch`` and younger than ``max_age`` s, else None."""
    entry = _entries.get(key)
    if entry is None or entry[1] != epoch or time.monotonic() - entry[0] >= min(max_age, MAX_AGE_SECONDS):
        return None
    return entry[2]


def put(key, value, epoch, read_at):
    """Remember ``value`` as read under ``epoch`` at ``read_at`` (``time.monotonic()`` and the epoch
    both taken before the read, so a change committed during the read is not outlived)."""
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[key] = (read_at, epoch, value)


def bump():
    """Drop this worker's cache and move the epoch so every other worker drops its own."""
    clear()
    try:
        client = _redis()
        if client is not None:
            client.incr(EPOCH_KEY)
    except Exception:  # noqa: BLE001 - the age still bounds the other workers to a second
        log.warning("auth cache: the epoch could not be moved in Redis; other workers follow within %.1f s",
                    MAX_AGE_SECONDS)


def drop(key):
    """Forget one entry (this worker only)."""
    with _lock:
        _entries.pop(key, None)


def clear():
    """Drop every entry (this worker only)."""
    with _lock:
        _entries.clear()


def _touches_identity(objects):
    return any(getattr(getattr(obj, "__table__", None), "name", None) in IDENTITY_TABLES for obj in objects)


@event.listens_for(Session, "after_flush")
def _note_flush(session, _context):
    if _touches_identity(session.new) or _touches_identity(session.dirty) or _touches_identity(session.deleted):
        session.info["identity_changed"] = True


# Bulk updates of these columns only do not change who a caller is (a probe reservation bumps
# the user's counters; a key's last_used_at moves).
BOOKKEEPING_COLUMNS = frozenset({"last_probe_at", "probe_job_count", "last_used_at"})


@event.listens_for(Session, "do_orm_execute")
def _note_bulk(state):
    if not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) not in IDENTITY_TABLES:
        return
    values = getattr(state.statement, "_values", None) or {}
    columns = {getattr(column, "key", str(column)) for column in values}
    if state.is_delete or not columns or not columns <= BOOKKEEPING_COLUMNS:
        state.session.info["identity_changed"] = True


@event.listens_for(Session, "after_commit")
def _clear_on_commit(session):
    if session.info.pop("identity_changed", False):
        bump()


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session):
    session.info.pop("identity_changed", None)
