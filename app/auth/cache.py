"""A per-worker cache of the identifying lookup (API key or JWT session → user), revoked at once.

Two guards:

- **invalidation by message** — when the rate limiter keeps its counters in Redis, every worker
  runs one thread subscribed to the channel ``probeops:auth:changed``. Every commit that changes
  users, api_keys or refresh_tokens (deactivation, key revocation/rotation/expiry change, logout,
  password change) publishes to it after the commit, and each worker's thread empties that
  worker's cache as the message arrives (milliseconds). While the thread is not subscribed (not
  yet started, Redis unreachable, reconnecting) no entry is used: the database is read. A
  request therefore costs no Redis round trip for its identity (the earlier design read an epoch
  from Redis on every request).
- **the age** — an entry is never used once older than ``AUTH_CACHE_SECONDS`` (capped at
  ``MAX_AGE_SECONDS`` = 1 s). That alone bounds revocation to a second when there is no Redis
  (the embedded default, ``memory://``, runs one worker, whose own commit empties its cache),
  when a message is lost, or when another program changes the database behind the API's back.

Every emptying moves a generation number, and an entry is stored under the generation seen
*before* its database read: a row read while a change was being committed is never used.
Only successful lookups are cached; a refused credential is read every time (the key checksum
already turns invented keys away without a round trip). The checks themselves (active, expiry,
grace period, token version, session revoked) run on the cached row at every request.
"""
import logging
import os
import threading
import time

from sqlalchemy import event
from sqlalchemy.orm import Session

MAX_AGE_SECONDS = 1.0
MAX_ENTRIES = 10_000
CHANNEL = "probeops:auth:changed"
RECONNECT_SECONDS = (0.1, 5.0)  # first and longest wait before subscribing again
log = logging.getLogger(__name__)
IDENTITY_TABLES = frozenset({"users", "api_keys", "refresh_tokens"})

_entries = {}
_lock = threading.Lock()
_generation = 0  # moved by every clear()
_listener = None  # this process's subscriber (threads do not survive Gunicorn's fork)


def _redis():
    """The rate limiter's Redis client, or None when its storage is not Redis."""
    from limits.storage import RedisStorage

    from app.extensions import limiter

    try:
        storage = limiter.storage
    except (AssertionError, RuntimeError):
        return None
    return storage.get_connection() if isinstance(storage, RedisStorage) else None


class _Listener(threading.Thread):
    """Empties this process's cache on every message of CHANNEL; ``subscribed`` says whether
    messages can currently arrive."""

    def __init__(self, client):
        super().__init__(name="auth-cache-listener", daemon=True)
        self.client, self.pid = client, os.getpid()
        self.subscribed = self.stopped = False

    def run(self):
        wait = RECONNECT_SECONDS[0]
        while not self.stopped:
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(CHANNEL)
                while not self.stopped:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    clear()
                    if message["type"] == "subscribe":
                        self.subscribed, wait = True, RECONNECT_SECONDS[0]
            except Exception:  # noqa: BLE001 - Redis down or restarted: read the database meanwhile
                if self.subscribed:
                    log.warning("auth cache: lost its Redis subscription; identities are read from the database "
                                "until it is back")
                self.subscribed = False
                clear()
            finally:
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001, S110 - the connection is already gone
                    pass
            time.sleep(wait)
            wait = min(wait * 2, RECONNECT_SECONDS[1])


def generation():
    """The generation a lookup is read and cached under now, or None when the cache must not be
    used (Redis storage, but this process is not subscribed to the invalidation channel)."""
    global _listener
    client = _redis()
    if client is None:
        return _generation  # memory:// runs one worker: its own commits empty its cache
    listener = _listener
    if listener is None or listener.client is not client or listener.pid != os.getpid():
        with _lock:
            if _listener is listener:
                if listener is not None:
                    listener.stopped = True
                _listener = _Listener(client)
                _listener.start()
        return None
    return _generation if listener.subscribed else None


def get(key, generation_now, max_age):
    """The cached value for ``key`` if stored under ``generation_now`` and younger than
    ``max_age`` s, else None."""
    entry = _entries.get(key)
    if entry is None or entry[1] != generation_now or time.monotonic() - entry[0] >= min(max_age, MAX_AGE_SECONDS):
        return None
    return entry[2]


def put(key, value, generation_then, read_at):
    """Remember ``value`` as read under ``generation_then`` at ``read_at`` (both taken before the
    database read, so a change committed during the read is not outlived)."""
    with _lock:
        if generation_then != _generation:
            return
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[key] = (read_at, generation_then, value)


def bump():
    """Empty this worker's cache and tell every other worker to empty its own."""
    clear()
    try:
        client = _redis()
        if client is not None:
            client.publish(CHANNEL, b"1")
    except Exception:  # noqa: BLE001 - the others' subscriptions fail too, or the age bounds them
        log.warning("auth cache: the change could not be announced in Redis; other workers follow within %.1f s",
                    MAX_AGE_SECONDS)


def drop(key):
    """Forget one entry (this worker only)."""
    with _lock:
        _entries.pop(key, None)


def clear():
    """Drop every entry (this worker only) and move the generation."""
    global _generation
    with _lock:
        _entries.clear()
        _generation += 1


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
