"""The general request budget (``RATELIMIT_DEFAULT``): one fixed window per caller — per user, or
per client address when anonymous — shared by every endpoint that is not exempt.

A ``before_request`` hook (after identity) counts the request and reads its window in one call
to the rate-limit storage: one Lua script on Redis (``app.services.rate_storage``), a dict in
memory otherwise. flask-limiter keeps the tighter per-route limits (login, register), the
storage itself and its in-memory fallback; this module only does what flask-limiter's own
per-request machinery did for the general budget, at about a tenth of its CPU (docs/benchmarks.md).

Storage unreachable: with ``RATELIMIT_IN_MEMORY_FALLBACK_ENABLED`` the process counts in
memory (flask-limiter's fallback, one outage state and one log line for both), and goes back to
Redis once it answers again (checked at most once a second); without it the error reaches
``app.db.faults`` (503 + Retry-After).
"""
import functools
import logging
import time
from dataclasses import dataclass

from flask import current_app, g, request
from limits import parse

from app.auth.rate_key import rate_limit_key

SCOPE = "general"
RECOVERY_CHECK_SECONDS = 1.0
log = logging.getLogger("flask-limiter")  # flask-limiter's own logger: one story of the storage


@dataclass(frozen=True)
class Window:
    """Where a caller stands in the current window."""

    limit: int
    used: int
    reset_at: float  # epoch seconds
    description: str

    @property
    def remaining(self):
        return max(0, self.limit - self.used)

    @property
    def exceeded(self):
        return self.used > self.limit


class BudgetExceeded(Exception):
    """The caller has spent the general budget of this window (``app.errors`` answers 429)."""

    def __init__(self, window):
        super().__init__(window.description)
        self.window = window


@functools.lru_cache(maxsize=16)
def _item(limit_string):
    return parse(limit_string)


@functools.lru_cache(maxsize=512)
def _exempt(app, endpoint, blueprint):
    """Endpoints marked ``@limiter.exempt`` (health, metrics, docs) spend no budget."""
    from flask_limiter import ExemptionScope

    from app.extensions import limiter

    return bool(limiter.limit_manager.exemption_scope(app, endpoint, blueprint) & ExemptionScope.APPLICATION)


def count_request():
    """``before_request``: count this request against its caller's window; 429 once it is spent."""
    config = current_app.config
    endpoint = request.endpoint
    if (not config["RATELIMIT_ENABLED"] or endpoint is None or request.method == "OPTIONS"
            or _exempt(current_app._get_current_object(), endpoint, request.blueprint)):
        return
    item = _item(config["RATELIMIT_DEFAULT"])
    key = item.key_for(SCOPE, rate_limit_key())
    g.rate_window = window = _hit(item, key)
    if window.exceeded:
        raise BudgetExceeded(window)


def _hit(item, key):
    from app.db import faults
    from app.services.rate_storage import WindowedRedisStorage

    storage = faults.active_rate_limit_storage()
    try:
        if isinstance(storage, WindowedRedisStorage):
            used, reset_at = storage.hit(key, item.get_expiry())
        else:
            used = storage.incr(key, item.get_expiry())
            reset_at = storage.get_expiry(key)
    except Exception as exc:  # noqa: BLE001 - re-raised unless the in-memory fallback takes over
        if not _fall_back(exc):
            raise
        return _hit(item, key)
    _check_recovery()
    return Window(item.amount, used, reset_at, str(item))


def _fall_back(exc):
    """Switch the limiter to its in-memory fallback (True) if it has one and is not there yet."""
    from app.extensions import limiter

    if not limiter._in_memory_fallback_enabled or limiter._storage_dead:
        return False
    log.warning("Rate limit storage unreachable - falling back to in-memory storage (%s)", type(exc).__name__)
    limiter._storage_dead = True
    _last_check[0] = time.monotonic()
    return True


_last_check = [0.0]


def _check_recovery():
    """While on the fallback, ask the real storage at most once a second whether it is back."""
    from app.extensions import limiter

    if not limiter._storage_dead or time.monotonic() - _last_check[0] < RECOVERY_CHECK_SECONDS:
        return
    _last_check[0] = time.monotonic()
    try:
        back = limiter.storage.check()
    except Exception:  # noqa: BLE001 - still down
        back = False
    if back:
        log.info("Rate limit storage recovered")
        limiter._storage_dead = False


def current_window():
    """The window this request counted in (None when it was not counted)."""
    return g.get("rate_window")
