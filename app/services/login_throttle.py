"""Per-account login throttling: exponential back-off after repeated wrong passwords.

Counters live in the rate limiter's storage (Redis when RATELIMIT_STORAGE_URI is redis://), so
they hold across workers. After LOGIN_FREE_FAILURES consecutive failures, every further attempt
must wait LOGIN_BACKOFF_BASE_SECONDS * 2**k seconds (capped at LOGIN_BACKOFF_MAX_SECONDS)
since the previous one; attempts inside the wait get 429 without the password being checked,
so they neither test a guess nor lengthen the wait. A success resets the count; failures are
forgotten LOGIN_FAILURE_WINDOW_SECONDS after the first.

So that a stranger who keeps guessing cannot keep the owner out, an address (IPv4, or IPv6 /64)
the account has logged in from within LOGIN_KNOWN_ADDRESS_DAYS has a back-off of its own for
that account: the owner logging in from a known address is not held by the strangers' back-off.

Two keys per subject: ``fails`` counts attempts not (yet) followed by a success; ``gate`` exists
while the back-off runs. The attempt that creates the gate is the only one let through, which
also holds for parallel requests (the storage's increment is atomic).
"""
import math
import time

from flask import current_app

from app.db.faults import active_rate_limit_storage
from app.errors import ApiError

DAY_SECONDS = 86400


def _keys(subject):
    return f"login-fails/{subject}", f"login-gate/{subject}"


def _known_key(user_id, address):
    return f"login-known/{user_id}/{address}"


def _enabled():
    return current_app.config.get("RATELIMIT_ENABLED", True) and current_app.config["LOGIN_FREE_FAILURES"] >= 0


def _delay(attempt):
    """The back-off (seconds) that attempt number ``attempt`` opens."""
    cfg = current_app.config
    extra = attempt - cfg["LOGIN_FREE_FAILURES"]
    return 0 if extra <= 0 else min(cfg["LOGIN_BACKOFF_BASE_SECONDS"] * 2 ** min(extra - 1, 30),
                                    cfg["LOGIN_BACKOFF_MAX_SECONDS"])


def _too_many(storage, gate_key):
    retry = max(1, math.ceil(storage.get_expiry(gate_key) - time.time()))
    raise ApiError(429, f"Too many failed logins for this account: try again in {retry} seconds",
                   headers={"Retry-After": str(retry)}, code="rate_limited")


def account_subject(user_id, address):
    """The subject an attempt on account ``user_id`` from ``address`` counts against: the account,
    or the account at this address when it has logged in from there before."""
    if _enabled() and active_rate_limit_storage().get(_known_key(user_id, address)) > 0:
        return f"user:{user_id}@{address}"
    return f"user:{user_id}"


def begin_attempt(subject):
    """Count one login attempt for ``subject``; 429 with Retry-After while its back-off runs."""
    if not _enabled():
        return
    storage = active_rate_limit_storage()  # memory per process while Redis is down (docs/faults.md)
    fails_key, gate_key = _keys(subject)
    if storage.get(gate_key) > 0:
        _too_many(storage, gate_key)
    attempt = storage.incr(fails_key, current_app.config["LOGIN_FAILURE_WINDOW_SECONDS"])
    delay = _delay(attempt)
    if delay and storage.incr(gate_key, int(math.ceil(delay))) > 1:  # a parallel attempt took this slot
        _too_many(storage, gate_key)


def succeeded(subject, user_id, address):
    """The right password: forget ``subject``'s failures and remember ``address`` for the account."""
    if not _enabled():
        return
    storage = active_rate_limit_storage()  # memory per process while Redis is down (docs/faults.md)
    for key in _keys(subject):
        storage.clear(key)
    known = _known_key(user_id, address)
    storage.clear(known)  # restart its lifetime
    storage.incr(known, current_app.config["LOGIN_KNOWN_ADDRESS_DAYS"] * DAY_SECONDS)
